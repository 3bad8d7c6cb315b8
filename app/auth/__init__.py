from app.auth.exceptions import (
    InvalidCredentialsException,
    RefreshTokenReusedException,
    TooManyLoginAttemptsException,
)
from app.auth.models import AuthSession
from app.auth.schemas import LoginRequest, RefreshRequest, TokenPair
from app.auth.service import AuthService, auth_service, load_auth_state
from app.auth.throttle import LoginThrottle, login_throttle

__all__ = [
    "AuthService",
    "AuthSession",
    "InvalidCredentialsException",
    "LoginRequest",
    "LoginThrottle",
    "RefreshRequest",
    "RefreshTokenReusedException",
    "TokenPair",
    "TooManyLoginAttemptsException",
    "auth_service",
    "load_auth_state",
    "login_throttle",
]
