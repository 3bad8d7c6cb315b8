"""SENTRY_DSN: an unhandled error reaches Sentry; here a receiver on loopback stands in for it."""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
import sentry_sdk
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from core.config import load_config


class SentryStandIn:
    """Takes Sentry envelopes on loopback and keeps each item of type event."""

    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []
        self.paths: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                encoding = self.headers.get("Content-Encoding")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                stand_in.paths.append(self.path)
                lines = body.split(b"\n")
                # An envelope: a header line, then (item header, item payload) pairs.
                for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                    if orjson.loads(header).get("type") == "event":
                        stand_in.events.append(orjson.loads(payload))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sentry() -> Iterator[SentryStandIn]:
    stand_in = SentryStandIn()
    yield stand_in
    stand_in.close()


async def test_an_unhandled_error_is_reported(
    sentry: SentryStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.server import create_app

    monkeypatch.setenv("SENTRY_DSN", f"http://publickey@127.0.0.1:{sentry.port}/42")
    load_config()
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
        monkeypatch.undo()
        load_config()
        sentry_sdk.init()  # SENTRY_DSN is gone: reporting is off for the rest of the suite
    assert sentry.paths
    assert all(path.startswith("/api/42/envelope") for path in sentry.paths)
    assert len(sentry.events) == 1
    exceptions = sentry.events[0]["exception"]["values"]  # type: ignore[index]
    assert [(e["type"], e["value"]) for e in exceptions] == [
        ("RuntimeError", "the report must say this")
    ]
    assert sentry.events[0]["environment"] == "test"
