"""GET /metrics: the families DESIGN names, route templates as labels, settings, several workers."""

from __future__ import annotations

import base64
import json
import re
import signal
import struct
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from core.config import Settings
from core.helpers.cache import Cache, RedisBackend
from tests.helpers import Samples, parse, scrape, value
from tests.servers import ServerStack, free_ports
from tests.test_main import ROOT, bare_environment, start_server, wait_until_serving


def request_count(samples: Samples, method: str, route: str, status: str) -> float:
    labels = {"method": method, "route": route, "status": status}
    return value(samples, "http_request_duration_seconds_count", **labels)


async def test_requests_are_counted_per_route_template_never_per_raw_path(
    client: AsyncClient,
) -> None:
    before = await scrape(client)
    await client.get("/health")
    await client.get("/health")
    await client.get("/api/v1/users/123")  # no token: 401, but the route matched
    await client.get("/api/v1/users/456")
    # Refused by the authentication middleware, before routing: still labelled by its route.
    await client.get("/api/v1/users/789", headers={"Authorization": "Bearer not-a-token"})
    await client.get("/no/such/path/789")
    await client.request("MADE-UP", "/health")  # 405
    after = await scrape(client)

    def grew(method: str, route: str, status: str) -> float:
        return request_count(after, method, route, status) - request_count(
            before, method, route, status
        )

    assert grew("GET", "/health", "200") == 2
    # The template includes the prefix the router was included under.
    assert grew("GET", "/api/v1/users/{user_id}", "401") == 3
    assert grew("GET", "unmatched", "404") == 1
    assert grew("OTHER", "/health", "405") == 1
    routes = {dict(labels).get("route") or "" for _, labels in after}
    assert not any(raw in route for route in routes for raw in ("123", "456", "789"))
    assert ("http_request_duration_seconds_bucket", "/health") in {
        (name, dict(labels).get("route")) for name, labels in after
    }
    assert ("http_requests_in_progress", frozenset()) in after
    assert ("rate_limit_rejections_total", frozenset()) in after


async def test_pool_connections_of_writer_and_reader(client: AsyncClient) -> None:
    assert (await client.get("/ready")).json()["checks"]["reader"] == "ok"  # uses both pools
    samples = await scrape(client)
    for engine in ("writer", "reader"):
        idle = value(samples, "db_pool_connections", engine=engine, state="idle")
        in_use = value(samples, "db_pool_connections", engine=engine, state="in_use")
        # Between requests every connection this process opened is back in its pool.
        assert idle >= 1, engine
        assert in_use == 0, engine


@Cache.cached(prefix="metrics_test", ttl=60)
async def doubled(number: int) -> int:
    return 2 * number


async def test_cache_hits_misses_and_errors_are_counted(client: AsyncClient) -> None:
    def cache(samples: Samples, result: str) -> float:
        return value(samples, "cache_requests_total", result=result)

    before = await scrape(client)
    assert await doubled(21) == 42
    middle = await scrape(client)
    assert await doubled(21) == 42
    after = await scrape(client)
    assert cache(middle, "miss") == cache(before, "miss") + 1
    assert cache(middle, "hit") == cache(before, "hit")
    assert cache(after, "hit") == cache(middle, "hit") + 1

    working = Cache.backend
    Cache.init(backend=RedisBackend(f"redis://127.0.0.1:{free_ports(1)[0]}/0"))
    try:
        assert await doubled(22) == 44  # the cache is down: the function runs
    finally:
        await Cache.close()
        Cache.init(backend=working)
    assert cache(await scrape(client), "error") == cache(after, "error") + 1


@pytest.fixture
async def guarded_client(settings: Callable[..., None]) -> AsyncIterator[AsyncClient]:
    from app.server import create_app

    settings(METRICS_BASIC_AUTH="prometheus:s3cret")
    app: FastAPI = create_app()
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as http:
        yield http


def basic(credentials: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


async def test_basic_auth_guards_metrics(guarded_client: AsyncClient) -> None:
    for headers in ({}, basic("prometheus:wrong"), {"Authorization": "Bearer x"}):
        refused = await guarded_client.get("/metrics", headers=headers)
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["www-authenticate"].startswith("Basic")
        assert refused.json()["error_code"] == "METRICS__UNAUTHORIZED"
        assert "http_request_duration_seconds" not in refused.text
        assert "x-request-id" in refused.headers
    await scrape(guarded_client, headers=basic("prometheus:s3cret"))


async def test_metrics_can_be_turned_off(settings: Callable[..., None]) -> None:
    from app.server import create_app

    settings(METRICS_ENABLED=False)
    app: FastAPI = create_app()
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as http:
        assert (await http.get("/metrics")).status_code == 404
        assert (await http.get("/health")).status_code == 200


def test_metrics_are_off_by_default_in_prod_only() -> None:
    assert Settings(ENV="local").METRICS_ENABLED is True
    assert Settings(ENV="dev").METRICS_ENABLED is True
    assert Settings(ENV="prod").METRICS_ENABLED is False
    assert Settings(ENV="prod", METRICS_ENABLED=True).METRICS_ENABLED is True
    with pytest.raises(ValueError, match="METRICS_BASIC_AUTH"):
        Settings(METRICS_BASIC_AUTH="no-colon")


def test_one_scrape_covers_every_worker(tmp_path: Path, stack: ServerStack) -> None:
    """`main.py --workers 2`: the figures of both workers in each scrape; leftovers of an
    earlier run in the metrics directory are removed before the workers start."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    stale = directory / "counter_999999.db"
    stale.write_bytes(b"left over from an earlier run")
    port = free_ports(1)[0]
    env = {
        **bare_environment(),
        "WRITER_DB_URL": stack.primary.dsn(),
        "READER_DB_URL": stack.replica.dsn(),
        "REDIS_URL": stack.redis.url_for(0),
        "CELERY_BROKER_URL": stack.redis.url_for(1),
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
    }
    server = start_server(
        [str(ROOT / "main.py"), "--env", "dev", "--workers", "2", "--port", str(port)],
        tmp_path,
        env,
        tmp_path / "server.log",
    )
    base_url = f"http://127.0.0.1:{port}"
    sent = 0
    try:
        # Two workers importing the app on a busy machine take a while.
        wait_until_serving(base_url, server, seconds=120)
        assert not stale.exists()
        # The readiness probes' own /health requests are recorded just after their responses:
        # the count to start from is the one that has stopped moving.
        before, previous = -1.0, -2.0
        while before != previous:
            previous = before
            time.sleep(0.3)
            samples = parse(httpx.get(f"{base_url}/metrics").text)
            before = request_count(samples, "GET", "/health", "200")
        pids: set[str] = set()
        with ThreadPoolExecutor(max_workers=16) as pool:
            # Requests at once, each on its own connection, until both workers have served
            # some: which worker accepts a connection is up to the kernel.
            for _ in range(25):
                statuses = list(
                    pool.map(lambda _: httpx.get(f"{base_url}/health").status_code, range(16))
                )
                assert statuses == [200] * 16
                sent += 16
                pids = {path.stem.rsplit("_", 1)[1] for path in directory.glob("histogram_*.db")}
                if len(pids) == 2:
                    break
        # A request is recorded just after its response went out: allow a moment.
        counted = 0.0
        deadline = time.monotonic() + 10
        while counted != before + sent and time.monotonic() < deadline:
            samples = parse(httpx.get(f"{base_url}/metrics").text)
            counted = request_count(samples, "GET", "/health", "200")
        assert counted == before + sent
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=40) == 0
    assert len(pids) == 2, f"one worker served all {sent} requests"


async def test_the_dashboard_asks_for_families_the_api_exports(client: AsyncClient) -> None:
    dashboard = json.loads((ROOT / "docker/observability/grafana-dashboard-api.json").read_text())
    exposition = (await client.get("/metrics")).text
    exported = set(re.findall(r"^# TYPE (\S+)", exposition, re.MULTILINE))
    asked = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b[a-z_]+(?=[{\[])", target["expr"])
    }
    # A histogram's series end in _bucket and _count.
    ours = {
        re.sub(r"_(bucket|count)$", "", name) for name in asked if not name.startswith("flower_")
    }
    assert ours, asked
    assert ours <= exported, ours - exported


async def test_a_failing_metrics_page_is_a_problem_500_with_the_request_id(
    app: FastAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker's metrics file cut short (its disk filled up, say): reading it fails.
    used, key_length = struct.pack("i", 64), struct.pack("i", 40)
    (tmp_path / "counter_12345.db").write_bytes(used + bytes(4) + key_length + b"x" * 52)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/metrics", headers={"X-Request-ID": "metrics-500"})

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["error_code"] == "INTERNAL_SERVER_ERROR"
    assert response.headers["x-request-id"] == "metrics-500"
    assert response.headers["x-content-type-options"] == "nosniff"
