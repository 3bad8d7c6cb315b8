"""SENTRY_DSN: an unhandled error, in the API or in a worker, reaches Sentry; here a receiver on
loopback stands in for it."""

from __future__ import annotations

import gzip
import os
import time
import zlib
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import orjson
import pytest
import sentry_sdk
from anyio import to_thread
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import BaseModel

from tests import worker_tasks
from tests.celery_task.conftest import Worker
from tests.helpers import PostReceiver, signed_up


class Secret(BaseModel):
    password: str


class Events:
    """The events in the Sentry envelopes a stand-in for Sentry received, and their paths."""

    def exceptions(self) -> list[tuple[str, str]]:
        """Each reported exception's type and message."""
        return [
            (value["type"], value["value"])
            for event in self.events
            for value in event.get("exception", {}).get("values", [])
        ]

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

        async def explode(body: Secret) -> None:
            raise RuntimeError("the report must say this")

        app.add_api_route("/test-only/explode", explode, methods=["POST"])
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://t") as http:
            account = await signed_up(http)
            # What a request carries that would log anyone in: a bearer token, a password.
            sent = {"password": "hunter2-secret-passphrase"}
            failed = await http.post("/test-only/explode", json=sent, headers=account.headers)
            assert failed.status_code == 500
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
    reported = orjson.dumps(received.events).decode()
    assert account.access_token not in reported
    assert "hunter2-secret-passphrase" not in reported


def wait_for_report(received: Events) -> None:
    # Generous: the worker's Sentry client sends from a background thread.
    deadline = time.monotonic() + 30
    while not received.events and time.monotonic() < deadline:
        time.sleep(0.1)


async def test_a_task_that_fails_in_a_worker_is_reported(
    sentry: tuple[Events, int], tmp_path: Path
) -> None:
    received, port = sentry
    dsn = f"http://publickey@127.0.0.1:{port}/42"
    worker = Worker(tmp_path / "worker.log", "default", env={**os.environ, "SENTRY_DSN": dsn})
    try:
        outcome = worker_tasks.fail.delay("the worker's report must say this")
        await to_thread.run_sync(lambda: outcome.get(timeout=30, propagate=False))
        await to_thread.run_sync(wait_for_report, received)
    finally:
        worker.stop()

    assert outcome.state == "FAILURE"
    assert ("RuntimeError", "the worker's report must say this") in received.exceptions()
    assert all(path.startswith("/api/42/envelope") for path in received.paths)
