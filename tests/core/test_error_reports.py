"""SENTRY_DSN: an unhandled error reaches Sentry; here a receiver on loopback stands in for it."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator
from email.message import Message
from typing import Any

import orjson
import pytest
import sentry_sdk
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from tests.helpers import PostReceiver


class Events:
    """The events in the Sentry envelopes a stand-in for Sentry received, and their paths."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.paths: list[str] = []

    def take(self, path: str, headers: Message, body: bytes) -> bytes:
        encoding = headers.get("Content-Encoding")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        self.paths.append(path)
        lines = body.split(b"\n")
        # An envelope: a header line, then (item header, item payload) pairs.
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if orjson.loads(header).get("type") == "event":
                self.events.append(orjson.loads(payload))
        return b""


@pytest.fixture
def sentry() -> Iterator[tuple[Events, int]]:
    events = Events()
    receiver = PostReceiver(events.take)
    yield events, receiver.port
    receiver.close()


async def test_an_unhandled_error_is_reported(
    sentry: tuple[Events, int], settings: Callable[..., None]
) -> None:
    from app.server import create_app

    received, port = sentry
    settings(SENTRY_DSN=f"http://publickey@127.0.0.1:{port}/42")
    try:
        app: FastAPI = create_app()

        async def explode() -> None:
            raise RuntimeError("the report must say this")

        app.add_api_route("/test-only/explode", explode)
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.get("/test-only/explode")).status_code == 500
            assert (await http.get("/health")).status_code == 200
        sentry_sdk.get_client().close(timeout=10)  # sends what it holds, then stops
    finally:
        sentry_sdk.init()  # no DSN: reporting is off for the rest of the suite
    assert received.paths
    assert all(path.startswith("/api/42/envelope") for path in received.paths)
    assert len(received.events) == 1
    exceptions = received.events[0]["exception"]["values"]
    assert [(e["type"], e["value"]) for e in exceptions] == [
        ("RuntimeError", "the report must say this")
    ]
    assert received.events[0]["environment"] == "test"
