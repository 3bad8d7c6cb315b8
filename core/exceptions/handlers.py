"""One handler family: whatever fails, the client gets an RFC 9457 problem document."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from core.exceptions.base import CustomException, DatabaseUnavailableException

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"

# Errors that mean "the database cannot be reached right now", not "the query is wrong".
DATABASE_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
    ConnectionError,
    TimeoutError,
)


class ProblemResponse(Response):
    media_type = PROBLEM_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def problem_response(
    status_code: int,
    error_code: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status_code).phrase,
        "status": status_code,
        "detail": detail,
        "error_code": error_code,
        **extra,
    }
    return ProblemResponse(body, status_code=status_code, headers=headers)


def problem_from(exc: CustomException) -> ProblemResponse:
    return problem_response(
        exc.status_code, exc.error_code, exc.detail, headers=exc.headers, **exc.extra
    )


async def _custom(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CustomException)
    return problem_from(exc)


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    if any(error["type"] == "json_invalid" for error in errors):
        return problem_response(
            HTTPStatus.BAD_REQUEST,
            "MALFORMED_JSON",
            "The request body is not valid JSON.",
            errors=errors,
        )
    return problem_response(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
        "The request is not valid; see errors.",
        errors=errors,
    )


_HTTP_DETAILS = {
    HTTPStatus.NOT_FOUND: "No resource exists at this URL.",
    HTTPStatus.METHOD_NOT_ALLOWED: "This URL does not support the request's method.",
}


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = HTTPStatus(exc.status_code)
    detail = exc.detail if exc.detail and exc.detail != status.phrase else None
    return problem_response(
        status,
        status.name,
        detail or _HTTP_DETAILS.get(status, status.phrase + "."),
        headers=dict(exc.headers) if exc.headers else None,
    )


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    logger.warning("database unavailable: %s: %s", type(exc).__name__, exc)
    return await _custom(request, DatabaseUnavailableException())


async def _unhandled(request: Request, exc: Exception) -> Response:
    if isinstance(exc, DATABASE_UNAVAILABLE_ERRORS):
        # Raised outside the routes (in middleware), where the specific handler cannot see it.
        return await _database_unavailable(request, exc)
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        "INTERNAL_SERVER_ERROR",
        "Something went wrong on our side; it has been logged.",
    )


def install_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CustomException, _custom)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    for error in DATABASE_UNAVAILABLE_ERRORS:
        app.add_exception_handler(error, _database_unavailable)
    app.add_exception_handler(Exception, _unhandled)
