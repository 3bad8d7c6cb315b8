"""JSON Web Tokens: access and refresh tokens, signed with the configured HMAC key."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt

from core.config import config
from core.exceptions import UnauthorizedException

TokenType = Literal["access", "refresh"]
REQUIRED_CLAIMS = ["sub", "type", "jti", "iat", "exp", "sid", "ver"]


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
    minutes = (
        config.ACCESS_TOKEN_EXPIRE_MINUTES
        if token_type == "access"
        else config.REFRESH_TOKEN_EXPIRE_MINUTES
    )
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
    token = jwt.encode(payload, config.JWT_SECRET_KEY, algorithm=config.JWT_ALGORITHM)
    return token, claims


class VerifiedTokens:
    """Access tokens already verified by this process, by their exact text.

    Clients send the same access token with every request until it expires, and verifying one
    (PyJWT checks every character of it in Python) costs more than a bare FastAPI request. A
    token found here was verified with the same key; only its expiry is checked again.
    Revocation is not a property of the token text: it is checked per request elsewhere.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._signing: tuple[str, str] = ("", "")
        self._claims: dict[str, tuple[TokenClaims, float]] = {}

    def get(self, token: str, signing: tuple[str, str]) -> TokenClaims | None:
        """The claims of a token verified before with `signing` (key, algorithm), or None."""
        if signing != self._signing:
            self._claims.clear()
            self._signing = signing
            return None
        found = self._claims.get(token)
        if found is None:
            return None
        claims, expires = found
        if time.time() >= expires:
            self._claims.pop(token, None)
            raise TokenExpiredException()
        return claims

    def add(self, token: str, signing: tuple[str, str], claims: TokenClaims) -> None:
        if signing != self._signing:
            return
        if len(self._claims) >= self.max_entries:
            # The oldest entry goes: dicts keep insertion order.
            self._claims.pop(next(iter(self._claims)), None)
        self._claims[token] = (claims, claims.expires_at.timestamp())


verified_access_tokens = VerifiedTokens()


def decode_token(token: str, expected_type: TokenType) -> TokenClaims:
    """Verify signature, algorithm, expiry and shape; raise a 401 exception that says which."""
    signing = (config.JWT_SECRET_KEY, config.JWT_ALGORITHM)
    if expected_type == "access":
        known = verified_access_tokens.get(token, signing)
        if known is not None:
            return known
    claims = _verify(token, signing, expected_type)
    if expected_type == "access":
        verified_access_tokens.add(token, signing, claims)
    return claims


def _verify(token: str, signing: tuple[str, str], expected_type: TokenType) -> TokenClaims:
    secret, algorithm = signing
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            secret,
            # Pinned: the token's own header never chooses the algorithm (no "none", no swaps).
            algorithms=[algorithm],
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as error:
        raise TokenExpiredException() from error
    except jwt.PyJWTError as error:
        raise InvalidTokenException() from error
    if payload["type"] != expected_type:
        article = "An" if expected_type == "access" else "A"
        raise InvalidTokenException(f"{article} {expected_type} token is required here.")
    try:
        return TokenClaims(
            user_id=int(payload["sub"]),
            type=expected_type,
            jti=str(payload["jti"]),
            session_id=str(payload["sid"]),
            token_version=int(payload["ver"]),
            expires_at=datetime.fromtimestamp(payload["exp"], UTC),
        )
    except (TypeError, ValueError) as error:
        raise InvalidTokenException() from error
