"""JSON Web Tokens: access and refresh tokens, signed with the configured HMAC key."""

from __future__ import annotations

import functools
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt

from core.config import config
from core.exceptions import UnauthorizedException

TokenType = Literal["access", "refresh"]
REQUIRED_CLAIMS = ["sub", "type", "jti", "iat", "exp", "sid", "ver"]
# The ranges of the columns claims are compared with: BIGINT ids, INTEGER token versions.
MAX_ID = 2**63 - 1
MAX_TOKEN_VERSION = 2**31 - 1
# ASCII digits only: int() also accepts "+1", " 1", "1_0" and other scripts' digits.
_USER_ID = re.compile(r"[1-9][0-9]{0,18}")
_TOKEN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Tokens whose signature and shape were verified, per key: a client sends the same access token
# with every request for its lifetime, and verifying one costs more than the rest of a cached read.
VERIFIED_TOKENS = 4096


class InvalidTokenException(UnauthorizedException):
    error_code = "INVALID_TOKEN"
    detail = "The token is not valid."

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, token_sent=True)


class TokenExpiredException(InvalidTokenException):
    error_code = "TOKEN_EXPIRED"
    detail = "The token has expired; refresh it or log in again."


class TokenRevokedException(InvalidTokenException):
    error_code = "TOKEN_REVOKED"
    detail = "The token has been revoked; log in again."


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    type: TokenType
    jti: str
    session_id: str
    token_version: int
    expires_at: datetime


def new_token_id() -> str:
    return uuid.uuid4().hex


def encode_token(
    *,
    user_id: int,
    token_type: TokenType,
    session_id: str,
    token_version: int,
    jti: str | None = None,
    now: datetime | None = None,
) -> tuple[str, TokenClaims]:
    issued_at = now or datetime.now(UTC)
    access = token_type == "access"
    minutes = config.ACCESS_TOKEN_EXPIRE_MINUTES if access else config.REFRESH_TOKEN_EXPIRE_MINUTES
    claims = TokenClaims(
        user_id=user_id,
        type=token_type,
        jti=jti or new_token_id(),
        session_id=session_id,
        token_version=token_version,
        expires_at=issued_at + timedelta(minutes=minutes),
    )
    payload = {
        "sub": str(user_id),
        "type": token_type,
        "jti": claims.jti,
        "sid": session_id,
        "ver": token_version,
        "iat": issued_at,
        "exp": claims.expires_at,
    }
    return jwt.encode(payload, config.JWT_SECRET_KEY, algorithm=config.JWT_ALGORITHM), claims


def decode_token(token: str, expected_type: TokenType) -> TokenClaims:
    """Verify signature, algorithm, expiry and shape; raise a 401 exception that says which."""
    claims = _verified(token, config.JWT_SECRET_KEY, config.JWT_ALGORITHM)
    if claims.expires_at <= datetime.now(UTC):
        raise TokenExpiredException()
    if claims.type != expected_type:
        article = "An" if expected_type == "access" else "A"
        raise InvalidTokenException(f"{article} {expected_type} token is required here.")
    return claims


@functools.lru_cache(maxsize=VERIFIED_TOKENS)
def _verified(token: str, key: str, algorithm: str) -> TokenClaims:
    """Everything but expiry, which changes with time. Its result depends only on its arguments
    and refusals are not kept, so remembering results never lets through what it would refuse."""
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            key,
            # Pinned: the token's own header never chooses the algorithm (no "none", no swaps).
            algorithms=[algorithm],
            # `iat` is not checked: a token from a host whose clock is a little ahead is refused
            # by that check, and nothing here depends on when a token was issued.
            options={"require": REQUIRED_CLAIMS, "verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError as error:
        raise InvalidTokenException() from error
    token_type = payload["type"]
    # A valid signature does not make the claims fit the columns they are looked up in.
    subject, version = payload["sub"], payload["ver"]
    jti, session_id = payload["jti"], payload["sid"]
    if (
        not (isinstance(subject, str) and _USER_ID.fullmatch(subject) and int(subject) <= MAX_ID)
        or token_type not in ("access", "refresh")
        or type(version) is not int
        or not 0 <= version <= MAX_TOKEN_VERSION
        or not all(
            isinstance(value, str) and _TOKEN_ID.fullmatch(value) for value in (jti, session_id)
        )
    ):
        raise InvalidTokenException()
    try:
        expires_at = datetime.fromtimestamp(payload["exp"], UTC)
    except (TypeError, ValueError, OverflowError, OSError) as error:
        raise InvalidTokenException() from error
    return TokenClaims(
        user_id=int(subject),
        type=token_type,
        jti=jti,
        session_id=session_id,
        token_version=version,
        expires_at=expires_at,
    )
