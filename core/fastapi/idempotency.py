"""`Idempotency-Key` for POST routes: the same key with the same body replays the first answer,
with another body it is refused, and while the first is still running the second gets 409.

Keys live in the cache backend (Redis), scoped per caller and route. Without a reachable cache
a request that carries a key is refused with 503: answering it without the record could run
it twice.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, Request, Response
from pydantic import BaseModel

from core.config import config
from core.db import Transactional, commit_batch
from core.exceptions import (
    ConflictException,
    ServiceUnavailableException,
    UnprocessableEntityException,
    invalid_field,
)
from core.fastapi.conditional import etag
from core.fastapi.dependencies.rate_limit import request_address
from core.helpers.cache import Cache
from core.helpers.cache.base import CacheUnavailableError, bounded

logger = logging.getLogger(__name__)

REPLAY_SECONDS = 24 * 3600
# How long a key stays in use when the process running its request dies before answering.
RUNNING_SECONDS = 60
# The headers of an answer a replay gives again.
_KEPT = ("location", "etag")


class IdempotencyKeyReusedException(UnprocessableEntityException):
    error_code = "IDEMPOTENCY_KEY_REUSED"
    detail = "This Idempotency-Key was used with another request body."


class IdempotencyKeyInUseException(ConflictException):
    error_code = "IDEMPOTENCY_KEY_IN_USE"
    detail = "A request with this Idempotency-Key is still running; retry shortly."


class IdempotencyUnavailableException(ServiceUnavailableException):
    error_code = "IDEMPOTENCY_UNAVAILABLE"
    detail = "Idempotency keys cannot be checked now; retry later (or send none)."


class Idempotent:
    """A route's `Idempotency-Key` header, and `run` to answer through it. `call` runs in one
    transaction, which its own `@Transactional` calls join."""

    def __init__(
        self,
        request: Request,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                min_length=1,
                max_length=255,
                pattern=r"^[\x21-\x7e]+$",
                description="Send the same key to retry safely: the first answer is replayed.",
            ),
        ] = None,
    ) -> None:
        if len(request.headers.getlist("idempotency-key")) > 1:
            # Which one a client meant is unknowable, and two proxies may each read another.
            msg = "Send one Idempotency-Key header, not several."
            raise invalid_field(("header", "Idempotency-Key"), msg)
        self.request = request
        self.key = idempotency_key

    async def run(
        self, call: Callable[[], Awaitable[Any]], model: type[BaseModel], status_code: int
    ) -> Response:
        if self.key is None:
            return self._response(await call(), model, status_code)
        # Keyed: a plain hash of a body holding a password could be brute-forced from Redis.
        secret = config.JWT_SECRET_KEY.encode()
        payload = _canonical(await self.request.body())
        fingerprint = hmac.new(secret, payload, hashlib.sha256).hexdigest()
        # From the scope: Starlette's `request.user` refuses apps without an auth middleware.
        user_id = getattr(self.request.scope.get("user"), "id", None)
        caller = f"user:{user_id}" if user_id else f"ip:{request_address(self.request)}"
        name = hashlib.sha256(f"{self.request.url.path} {caller} {self.key}".encode()).hexdigest()
        store = f"idempotency:{name}"
        running = orjson.dumps({"fingerprint": fingerprint})
        backend = Cache.backend
        try:
            if not await bounded(lambda: backend.add(store, running, RUNNING_SECONDS)):
                return _replay(await bounded(lambda: backend.get(store)), fingerprint)
        except CacheUnavailableError as error:
            logger.warning("idempotency key store unavailable: %s", error)
            raise IdempotencyUnavailableException() from error
        committed = False

        async def remember(records: list[bytes]) -> None:
            # First once committed, before any other after-commit work, which may fail or be
            # cancelled: a retry must replay this answer, not do the work again.
            nonlocal committed
            committed = True
            try:
                await bounded(lambda: backend.set(store, records[0], REPLAY_SECONDS))
            except CacheUnavailableError as error:
                # The key stays in use until RUNNING_SECONDS have passed.
                logger.warning("idempotent answer not recorded: %s", error)

        @Transactional()  # the route's own transaction joins this one
        async def answer() -> Response:
            # Started before the route's work: the first batch flushed after the commit.
            records = commit_batch(f"idempotency:{name}", remember)
            assert records is not None  # inside the transaction
            response = self._response(await call(), model, status_code)
            record = {
                "fingerprint": fingerprint,
                "status": status_code,
                "body": bytes(response.body).decode(),
                "headers": {h: response.headers[h] for h in _KEPT if h in response.headers},
            }
            records.append(orjson.dumps(record))
            return response

        try:
            return await answer()
        except BaseException:
            if not committed:
                # Nothing was saved: the client may retry with the key.
                await _forget(store)
            raise

    def _response(self, value: Any, model: type[BaseModel], status_code: int) -> Response:
        """The answer, with the new resource's `Location` on a 201 and its version's `ETag`."""
        read = model.model_validate(value)
        headers: dict[str, str] = {}
        if status_code == 201 and (new_id := getattr(read, "id", None)) is not None:
            # Relative, under the path posted to: one built from the Host header could point
            # anywhere.
            headers["Location"] = f"{self.request.url.path.rstrip('/')}/{new_id}"
        if isinstance(version := getattr(read, "version", None), int):
            headers["ETag"] = etag(version)
        content = read.model_dump_json()
        return Response(content, status_code, headers, media_type="application/json")


def _canonical(body: bytes) -> bytes:
    """The body as sorted, compact JSON: a retry serialised by another client is the same."""
    try:
        return orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:
        return body


def _replay(stored: bytes | None, fingerprint: str) -> Response:
    record = orjson.loads(stored) if stored else {}
    if record and record["fingerprint"] != fingerprint:
        raise IdempotencyKeyReusedException()
    if "status" not in record:
        raise IdempotencyKeyInUseException()
    return Response(
        record["body"],
        status_code=record["status"],
        media_type="application/json",
        headers={**record.get("headers", {}), "Idempotency-Replayed": "true"},
    )


async def _forget(store: str) -> None:
    try:
        await bounded(lambda: Cache.backend.delete(store))
    except CacheUnavailableError:
        logger.warning("idempotency key %s stays in use until it expires", store)


Idempotency = Annotated[Idempotent, Depends()]
