"""One trace from a request into the task it sent, exported over OTLP/HTTP by the API server and
by a real worker to a receiver this test runs."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.celery_task.conftest import Worker
from tests.helpers import registration
from tests.servers import ServerStack, free_ports
from tests.test_main import ROOT, bare_environment, start_server, wait_until_serving


class Receiver:
    """An OTLP/HTTP trace receiver on loopback; keeps (service, span name, trace id) per span."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                export = ExportTraceServiceRequest.FromString(body)
                for resource_spans in export.resource_spans:
                    service = next(
                        a.value.string_value
                        for a in resource_spans.resource.attributes
                        if a.key == "service.name"
                    )
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            receiver.spans.append((service, span.name, span.trace_id.hex()))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver()
    yield started
    started.close()


def test_a_request_and_the_task_it_sent_share_one_trace(
    tmp_path: Path, stack: ServerStack, receiver: Receiver
) -> None:
    env = {
        **bare_environment(),
        "WRITER_DB_URL": stack.primary.dsn(),
        "READER_DB_URL": stack.replica.dsn(),
        "REDIS_URL": stack.redis.url_for(0),
        "CELERY_BROKER_URL": stack.redis.url_for(1),
        "CELERY_BACKEND_URL": stack.redis.url_for(2),
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        # The SDK's own setting: spans leave within a fraction of a second.
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    worker = Worker(tmp_path / "worker.log", "user", env=env, test_tasks=False)
    port = free_ports(1)[0]
    server = start_server(
        [str(ROOT / "main.py"), "--env", "dev", "--port", str(port)], tmp_path, env
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base_url, server)
        created = httpx.post(f"{base_url}/api/v1/users", json=registration(), timeout=10)
        assert created.status_code == 201
        deadline = time.monotonic() + 20
        request = task = None
        while time.monotonic() < deadline and not (request and task):
            spans = list(receiver.spans)
            request = next((s for s in spans if s[:2] == ("api", "POST /api/v1/users")), None)
            task = next(
                (s for s in spans if s[:2] == ("worker", "run/user.send_welcome_email")), None
            )
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(timeout=40)
        worker.stop()
    assert request is not None, receiver.spans
    assert task is not None, worker.log()
    assert task[2] == request[2]
