from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.security.tokens import (
    TokenClaims,
    TokenExpiredException,
    VerifiedTokens,
)

SIGNING = ("key-one-that-is-long-enough-for-hs256-0123456789", "HS256")


def claims(expires_in: timedelta = timedelta(minutes=5)) -> TokenClaims:
    return TokenClaims(
        user_id=1,
        type="access",
        jti="j",
        session_id="s",
        token_version=0,
        expires_at=datetime.now(UTC) + expires_in,
    )


def test_a_verified_token_is_known_only_under_the_key_it_was_verified_with() -> None:
    verified = VerifiedTokens()
    assert verified.get("token", SIGNING) is None
    known = claims()
    verified.add("token", SIGNING, known)

    assert verified.get("token", SIGNING) == known
    assert verified.get("other-token", SIGNING) is None
    # A new key (rotation) forgets everything verified with the old one.
    assert verified.get("token", ("another-key-that-is-long-enough-for-hs256-0", "HS256")) is None
    assert verified.get("token", SIGNING) is None


def test_an_expired_token_is_refused_even_when_known() -> None:
    verified = VerifiedTokens()
    verified.get("token", SIGNING)
    verified.add("token", SIGNING, claims(expires_in=timedelta(seconds=-1)))

    with pytest.raises(TokenExpiredException):
        verified.get("token", SIGNING)
    assert verified.get("token", SIGNING) is None


def test_the_oldest_entries_make_room() -> None:
    verified = VerifiedTokens(max_entries=2)
    verified.get("a", SIGNING)
    for token in ("a", "b", "c"):
        verified.add(token, SIGNING, claims())

    assert verified.get("a", SIGNING) is None
    assert verified.get("b", SIGNING) is not None
    assert verified.get("c", SIGNING) is not None
