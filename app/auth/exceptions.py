from core.exceptions import (
    ForbiddenException,
    NotFoundException,
    TooManyRequestsException,
    UnauthorizedException,
)
from core.security.tokens import TokenRevokedException


class InvalidCredentialsException(UnauthorizedException):
    # The same answer for an unknown email and a wrong password: it must not reveal which.
    error_code = "AUTH__INVALID_CREDENTIALS"
    detail = "The email or password is wrong."


class TooManyLoginAttemptsException(TooManyRequestsException):
    error_code = "AUTH__TOO_MANY_ATTEMPTS"
    detail = "Too many failed logins; wait before trying again."


class RefreshTokenReusedException(TokenRevokedException):
    error_code = "AUTH__REFRESH_TOKEN_REUSED"
    detail = "This refresh token was already used; the session has been ended. Log in again."


class SessionNotFoundException(NotFoundException):
    error_code = "AUTH__SESSION_NOT_FOUND"
    detail = "You have no such session."


class CsrfException(ForbiddenException):
    error_code = "AUTH__CSRF"
    detail = "A refresh by cookie needs an X-CSRF-Token header equal to the csrf_token cookie."
