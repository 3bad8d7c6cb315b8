"""One handler family: whatever fails, the client gets an RFC 9457 problem document."""

from __future__ import annotations

import errno
import logging
import socket
import sqlite3
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.exceptions import (
    ChangedMeanwhileException,
    CustomException,
    DatabaseNotMigratedException,
    DatabaseUnavailableException,
)
from core.fastapi.routes import allowed_methods
from core.logging import logged_path

logger = logging.getLogger(__name__)

# The most validation errors one answer lists.
MAX_ERRORS = 50

# Errors outside the driver's that mean "the database cannot be reached now".
_DATABASE_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
    ConnectionError,
    TimeoutError,
    socket.gaierror,
)
# Connecting failed for want of a route, or (asyncio's words) on every address of a name.
_UNREACHABLE_ERRNOS = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN})
_ALL_ADDRESSES_FAILED = "Multiple exceptions: "

# A schema older than the code: PostgreSQL's undefined table and column, SQLite's words for them.
_NOT_MIGRATED_SQLSTATES = frozenset({"42P01", "42703"})
_NOT_MIGRATED_SQLITE_MESSAGES = ("no such table", "no such column", "has no column named")
# Two transactions in each other's way (deadlock, serialization failure): the database rolled
# this one back, and running it again works.
_CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})
# A server gone or refusing work: connection exception, insufficient resources, shutdown, a
# statement cancelled for running too long.
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "53", "57P", "57014")


# RFC 9110's names for these, which Python uses from 3.13 on: the same codes and titles on any.
_RFC_9110_WORDS = {
    413: ("CONTENT_TOO_LARGE", "Content Too Large"),
    414: ("URI_TOO_LONG", "URI Too Long"),
    416: ("RANGE_NOT_SATISFIABLE", "Range Not Satisfiable"),
    422: ("UNPROCESSABLE_CONTENT", "Unprocessable Content"),
}


def status_words(status_code: int) -> tuple[str, str]:
    """A status's error code and title."""
    status = HTTPStatus(status_code)
    return _RFC_9110_WORDS.get(status, (status.name, status.phrase))


class ProblemResponse(Response):
    media_type = "application/problem+json"

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
        "title": status_words(status_code)[1],
        "status": status_code,
        "detail": detail,
        "error_code": error_code,
        **extra,
    }
    return ProblemResponse(body, status_code=status_code, headers=headers)


def problem_from(exc: CustomException) -> ProblemResponse:
    return problem_response(exc.status_code, exc.error_code, exc.detail, headers=exc.headers)


async def _custom(request: Request, exc: CustomException) -> Response:
    return problem_from(exc)


async def _validation(request: Request, exc: RequestValidationError) -> Response:
    found = exc.errors()
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type and not _is_json(media_type) and any(e["loc"][:1] == ("body",) for e in found):
        # A form or text body was read as something else: say which format to send instead.
        detail = "The request body must be JSON (Content-Type: application/json)."
        return problem_response(415, "UNSUPPORTED_MEDIA_TYPE", detail)
    # The first ones only: a body of many bad fields must not buy a far larger answer.
    errors = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in found[:MAX_ERRORS]
    ]
    if any(error["type"] == "json_invalid" for error in errors):
        return _malformed_json(errors)
    detail = "The request is not valid; see errors."
    if len(found) > MAX_ERRORS:
        detail = f"The request is not valid; see errors (the first {MAX_ERRORS} of {len(found)})."
    return problem_response(422, "VALIDATION_ERROR", detail, errors=errors)


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _malformed_json(errors: list[dict[str, Any]]) -> Response:
    detail = "The request body is not valid JSON."
    return problem_response(400, "MALFORMED_JSON", detail, errors=errors)


_HTTP_DETAILS: dict[int, str] = {
    HTTPStatus.NOT_FOUND: "No resource exists at this URL.",
    HTTPStatus.METHOD_NOT_ALLOWED: "This URL does not support the request's method.",
}


async def _http(request: Request, exc: StarletteHTTPException) -> Response:
    cause = exc.__cause__
    if exc.status_code == 400 and isinstance(cause, ValueError | RecursionError):
        # FastAPI's 400 for a body its JSON parser gave up on other than by syntax: malformed
        # JSON all the same. (The only other ValueError is an integer over 4,300 digits.)
        reason = (
            "not UTF-8"
            if isinstance(cause, UnicodeDecodeError)
            else "nested too deep"
            if isinstance(cause, RecursionError)
            else "a number too long"
        )
        return _malformed_json([{"loc": ["body"], "msg": reason, "type": "json_invalid"}])
    code, title = status_words(exc.status_code)
    default = _HTTP_DETAILS.get(exc.status_code, title + ".")
    # Starlette's default detail is the title as the running Python words it: no sentence.
    given = exc.detail not in (None, "", title, HTTPStatus(exc.status_code).phrase)
    detail = exc.detail if given else default
    headers = dict(exc.headers) if exc.headers else {}
    methods = allowed_methods(request.scope) if exc.status_code == 405 else None
    if methods:
        headers["Allow"] = ", ".join(sorted(methods))
    return problem_response(exc.status_code, code, detail, headers=headers or None)


def _sqlstate(error: sa_exc.DBAPIError) -> str:
    code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return code if isinstance(code, str) else ""


def is_schema_not_migrated(error: BaseException) -> bool:
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    if isinstance(error.orig, sqlite3.Error):
        return any(phrase in str(error.orig) for phrase in _NOT_MIGRATED_SQLITE_MESSAGES)
    return _sqlstate(error) in _NOT_MIGRATED_SQLSTATES


def is_database_unavailable(error: BaseException) -> bool:
    """True when `error` means the database cannot be reached now: a retry may succeed."""
    if isinstance(error, sa_exc.DBAPIError):
        # A dead connection is invalidated whatever the driver's error class (asyncpg's is plain).
        return not is_schema_not_migrated(error) and (
            error.connection_invalidated
            or isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError)
            or _sqlstate(error).startswith(_UNAVAILABLE_SQLSTATE_PREFIXES)
        )
    return isinstance(error, _DATABASE_UNAVAILABLE_ERRORS) or (
        type(error) is OSError
        and (error.errno in _UNREACHABLE_ERRNOS or str(error).startswith(_ALL_ADDRESSES_FAILED))
    )


def database_problem(error: Exception) -> CustomException | None:
    """What a database error means to a client (logged here), or None for any other error."""
    if isinstance(error, StaleDataError) or (
        isinstance(error, sa_exc.DBAPIError) and _sqlstate(error) in _CONFLICT_SQLSTATES
    ):
        # A versioned row changed between this request's read and its write (no lock held), or
        # a concurrent transaction locked what this one needed.
        return ChangedMeanwhileException()
    if isinstance(error, sa_exc.DBAPIError) and is_schema_not_migrated(error):
        logger.error(
            "the database schema is not migrated (run `make migrate`): %s: %s",
            type(error.orig).__name__,
            error.orig,
        )
        return DatabaseNotMigratedException()
    if is_database_unavailable(error):
        # The driver's error, not SQLAlchemy's: that one carries the SQL and its parameters.
        cause = error.orig if isinstance(error, sa_exc.DBAPIError) else error
        logger.warning("database unavailable: %s: %s", type(cause).__name__, cause)
        return DatabaseUnavailableException()
    return None


async def _server_error(request: Request, exc: Exception) -> Response:
    if (problem := database_problem(exc)) is not None:
        return problem_from(problem)
    path = logged_path(request.scope)
    logger.error("unhandled error on %s %s", request.method, path, exc_info=exc)
    return problem_response(
        500, "INTERNAL_SERVER_ERROR", "Something went wrong on our side; it has been logged."
    )


class UnhandledErrorMiddleware:
    """Answers unhandled errors with a problem document from right inside the middleware that adds
    headers to every response; Starlette's ServerErrorMiddleware answers from outside all of it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_noting_start(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_noting_start)
        except Exception as error:
            if started:
                # Too late for another response: the server ends the connection.
                raise
            response = await _server_error(Request(scope), error)
            # Answered and logged: raising on would log it twice more (Starlette and server).
            await response(scope, receive, send)


def install_exception_handlers(app: FastAPI) -> None:
    app.exception_handler(CustomException)(_custom)
    app.exception_handler(RequestValidationError)(_validation)
    app.exception_handler(StarletteHTTPException)(_http)
    # Database and other unexpected errors are answered by UnhandledErrorMiddleware, one place
    # for routes and middleware; this catches what escapes it (the middleware around it).
    app.add_exception_handler(Exception, _server_error)
