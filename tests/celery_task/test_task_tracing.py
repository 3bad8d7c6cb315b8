"""One trace from a request into the task it sent, exported over OTLP/HTTP by the API server and
by a real worker to a receiver this test runs."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.celery_task.conftest import Worker
from tests.helpers import PostReceiver, registration
from tests.servers import ServerStack, free_ports
from tests.test_main import ROOT, bare_environment, start_server, wait_until_serving


class Spans:
    """What an OTLP/HTTP receiver got: (service, span name, trace id) per span."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str]] = []

    def take(self, path: str, headers: Message, body: bytes) -> bytes:
        if headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append((service, span.name, span.trace_id.hex()))
        answer: bytes = ExportTraceServiceResponse().SerializeToString()
        return answer


@pytest.fixture
def received() -> Iterator[tuple[Spans, str]]:
    spans = Spans()
    receiver = PostReceiver(spans.take)
    yield spans, receiver.url
    receiver.close()


def test_a_request_and_the_task_it_sent_share_one_trace(
    tmp_path: Path, stack: ServerStack, received: tuple[Spans, str]
) -> None:
    receiver, url = received
    env = {
        **bare_environment(),
        "WRITER_DB_URL": stack.primary.dsn(),
        "READER_DB_URL": stack.replica.dsn(),
        "REDIS_URL": stack.redis.url_for(0),
        "CELERY_BROKER_URL": stack.redis.url_for(1),
        "CELERY_BACKEND_URL": stack.redis.url_for(2),
        "OTEL_EXPORTER_OTLP_ENDPOINT": url,
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
        deadline = time.monotonic() + 30
        request = tasks = None
        while time.monotonic() < deadline and not (request and tasks):
            spans = list(receiver.spans)
            request = next((s for s in spans if s[:2] == ("api", "POST /api/v1/users")), None)
            # The queue may still hold tasks other tests sent: the one this request sent runs
            # in the request's trace.
            tasks = [
                s
                for s in spans
                if s[:2] == ("worker", "run/user.send_verification_email")
                and request is not None
                and s[2] == request[2]
            ]
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(timeout=40)
        worker.stop()
    assert request is not None, receiver.spans
    assert tasks, (receiver.spans, worker.log())
