"""One log format for the API and the workers, with the request id and user id on every line."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry import trace

from core.config import config

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
user_id_var: ContextVar[int | None] = ContextVar("user_id", default=None)

TEXT_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s "
    "[request_id=%(request_id)s user_id=%(user_id)s trace_id=%(trace_id)s] %(message)s"
)


def logged_path(scope: Any) -> str:
    """The request's path as the client sent it (still percent-encoded): a decoded one could
    carry a line break, and so forge a log line of its own."""
    raw = scope.get("raw_path")
    if isinstance(raw, bytes):
        # Some ASGI clients append the query, which is not for logs (it may carry a token).
        return raw.split(b"?", 1)[0].decode("ascii", "backslashreplace")
    return str(scope.get("path", "")).encode("unicode_escape").decode("ascii")


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get() or "-"
        if not hasattr(record, "user_id"):
            record.user_id = user_id_var.get() or "-"
        if not hasattr(record, "trace_id"):
            span = trace.get_current_span().get_span_context()
            record.trace_id = trace.format_trace_id(span.trace_id) if span.is_valid else "-"
        return True


class JSONFormatter(logging.Formatter):
    # Attributes every LogRecord has; anything else on a record came from `extra=`.
    _STANDARD = frozenset(
        {*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime"}
    )

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry |= {k: v for k, v in vars(record).items() if k not in self._STANDARD}
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class _ProjectHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so configuring again replaces only it."""


def configure_logging() -> None:
    """Send every log line through one handler on the root logger: JSON lines when LOG_JSON."""
    handler = _ProjectHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JSONFormatter() if config.LOG_JSON else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for existing in [h for h in root.handlers if isinstance(h, _ProjectHandler)]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(config.LOG_LEVEL)
    for name in ("uvicorn", "uvicorn.error", "celery"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # Our access log line replaces uvicorn's.
    logging.getLogger("uvicorn.access").disabled = True
