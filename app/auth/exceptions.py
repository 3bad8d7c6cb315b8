from core.exceptions import TooManyRequestsException, UnauthorizedException
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
