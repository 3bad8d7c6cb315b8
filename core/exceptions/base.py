"""The one error family. Raise a subclass anywhere; the handler turns it into a problem document."""

from __future__ import annotations

from http import HTTPStatus
from typing import ClassVar

from fastapi.exceptions import RequestValidationError


class CustomException(Exception):
    """An error a client should see: an HTTP status, a stable code to branch on, and a sentence."""

    status_code: ClassVar[int] = HTTPStatus.BAD_REQUEST
    error_code: ClassVar[str] = "BAD_REQUEST"
    detail: str = "The request cannot be processed."

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        if detail is not None:
            self.detail = detail
        self.headers = headers or {}
        super().__init__(self.detail)


class BadRequestException(CustomException):
    """CustomException's own defaults: 400 BAD_REQUEST."""


class UnauthorizedException(CustomException):
    status_code = HTTPStatus.UNAUTHORIZED
    error_code = "UNAUTHORIZED"
    detail = "Authentication is required."

    def __init__(self, detail: str | None = None, *, token_sent: bool = False) -> None:
        # RFC 6750: a request that carried a token learns it was the token that failed.
        challenge = 'Bearer error="invalid_token"' if token_sent else "Bearer"
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class ForbiddenException(CustomException):
    status_code = HTTPStatus.FORBIDDEN
    error_code = "FORBIDDEN"
    detail = "You are not allowed to do this."


class NotFoundException(CustomException):
    status_code = HTTPStatus.NOT_FOUND
    error_code = "NOT_FOUND"
    detail = "The resource does not exist."


class ConflictException(CustomException):
    status_code = HTTPStatus.CONFLICT
    error_code = "CONFLICT"
    detail = "The request conflicts with the current state of the resource."


class ChangedMeanwhileException(ConflictException):
    error_code = "CHANGED_MEANWHILE"
    detail = "The resource changed while this request was changing it; read it again and retry."


class PreconditionFailedException(CustomException):
    status_code = HTTPStatus.PRECONDITION_FAILED
    error_code = "PRECONDITION_FAILED"
    detail = "The resource has changed since you read it (If-Match); read it again."


class UnprocessableEntityException(CustomException):
    status_code = HTTPStatus.UNPROCESSABLE_ENTITY
    error_code = "VALIDATION_ERROR"
    detail = "The request is not valid."


class TooManyRequestsException(CustomException):
    status_code = HTTPStatus.TOO_MANY_REQUESTS
    error_code = "TOO_MANY_REQUESTS"
    detail = "Too many requests; retry later."

    def __init__(self, detail: str | None = None, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


class ServiceUnavailableException(CustomException):
    status_code = HTTPStatus.SERVICE_UNAVAILABLE
    error_code = "SERVICE_UNAVAILABLE"
    detail = "The service is temporarily unavailable; retry later."


class DatabaseUnavailableException(ServiceUnavailableException):
    error_code = "DATABASE_UNAVAILABLE"
    detail = "The database is unavailable; retry later."


class DatabaseNotMigratedException(CustomException):
    # A 500: retrying cannot help until an operator migrates; the log says how.
    status_code = HTTPStatus.INTERNAL_SERVER_ERROR
    error_code = "DATABASE_NOT_MIGRATED"
    detail = "The service is not set up completely; it has been logged."


def invalid_field(loc: tuple[str, str], msg: str, kind: str = "value_error") -> Exception:
    """A 422 VALIDATION_ERROR naming one field, for what its schema alone cannot see."""
    return RequestValidationError([{"loc": loc, "msg": msg, "type": kind}])


__all__ = [
    "BadRequestException",
    "ChangedMeanwhileException",
    "ConflictException",
    "CustomException",
    "DatabaseNotMigratedException",
    "DatabaseUnavailableException",
    "ForbiddenException",
    "NotFoundException",
    "PreconditionFailedException",
    "ServiceUnavailableException",
    "TooManyRequestsException",
    "UnauthorizedException",
    "UnprocessableEntityException",
    "invalid_field",
]
