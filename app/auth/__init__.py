from app.auth.exceptions import (
    CsrfException,
    InvalidCredentialsException,
    RefreshTokenReusedException,
    SessionNotFoundException,
    TooManyLoginAttemptsException,
)
from app.auth.models import AuthSession
from app.auth.repository import SESSION_LIST
from app.auth.schemas import (
    Accepted,
    EmailTokenRequest,
    ForgotPasswordRequest,
    LoginRequest,
    PasswordRequest,
    QueuedTask,
    RefreshRequest,
    ResetPasswordRequest,
    SessionRead,
    TokenPair,
)
from app.auth.service import AuthService, auth_service, load_auth_state
from app.auth.throttle import LoginThrottle, login_throttle

__all__ = [
    "SESSION_LIST",
    "Accepted",
    "AuthService",
    "AuthSession",
    "CsrfException",
    "EmailTokenRequest",
    "ForgotPasswordRequest",
    "InvalidCredentialsException",
    "LoginRequest",
    "LoginThrottle",
    "PasswordRequest",
    "QueuedTask",
    "RefreshRequest",
    "RefreshTokenReusedException",
    "ResetPasswordRequest",
    "SessionNotFoundException",
    "SessionRead",
    "TokenPair",
    "TooManyLoginAttemptsException",
    "auth_service",
    "load_auth_state",
    "login_throttle",
]
