"""RateLimit against the real Redis and real API processes: tiers set through the API, the
standard headers, atomic counting, the client address behind proxies, and a Redis outage."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from uuid import uuid4

import httpx
import pytest
from fastapi import Depends
from fastapi.routing import APIRoute, iter_route_contexts
from httpx import ASGITransport, AsyncClient
from pydantic import ValidationError

from core.config import Settings, load_config
from core.fastapi.dependencies import RateLimit, is_rate_limited
from core.helpers.cache import Cache, RedisBackend
from core.helpers.cache.cache_manager import hold_seconds
from tests.helpers import Account, scrape, signed_up, value
from tests.servers import ServerStack
from tests.test_main import api_process

REFRESH = "/api/v1/auth/refresh"
BOGUS_REFRESH = {"refresh_token": "not-a-token"}


@pytest.fixture(scope="module")
def other_process() -> Iterator[str]:
    with api_process() as base_url:
        yield base_url


@pytest.fixture
async def admin(client: AsyncClient, stack: ServerStack) -> Account:
    return await signed_up(client, stack, admin=True)


def emptied_after(stack: ServerStack, tier: str) -> Iterator[None]:
    """The migrated tiers are shared by every test: leave them as they were found."""
    yield
    tier_id = f"SELECT id FROM tiers WHERE name = '{tier}'"
    stack.primary.psql(f"DELETE FROM tier_rate_limits WHERE tier_id = ({tier_id})")


@pytest.fixture
def anonymous_limits(stack: ServerStack) -> Iterator[None]:
    yield from emptied_after(stack, "anonymous")


@pytest.fixture
def free_limits(stack: ServerStack) -> Iterator[None]:
    yield from emptied_after(stack, "free")


async def limit_tier(
    client: AsyncClient, admin: Account, tier: str, path: str, limit: int
) -> dict[str, object]:
    response = await client.post(
        f"/api/v1/tiers/{tier}/rate-limits",
        json={"path": path, "limit": limit, "period_seconds": 60},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


async def new_tier(client: AsyncClient, admin: Account) -> str:
    name = f"t-{uuid4().hex[:12]}"
    created = await client.post("/api/v1/tiers", json={"name": name}, headers=admin.headers)
    assert created.status_code == 201, created.text
    return name


async def test_a_limited_response_carries_the_policy_and_what_is_left(
    client: AsyncClient,
) -> None:
    first = await client.post(REFRESH, json=BOGUS_REFRESH)
    second = await client.post(REFRESH, json=BOGUS_REFRESH)

    assert first.status_code == 401
    assert first.headers["ratelimit-policy"] == '"default";q=60;w=60'
    assert first.headers["ratelimit"].startswith('"default";r=59;t=')
    assert second.headers["ratelimit"].startswith('"default";r=58;t=')
    # GET routes opt in; these did not.
    assert "ratelimit" not in (await client.get("/health")).headers


def test_every_write_route_under_api_v1_and_every_auth_route_is_limited() -> None:
    from app.server import create_app

    unlimited = []
    for route in iter_route_contexts(create_app().routes):
        if not isinstance(route.original_route, APIRoute):
            continue
        methods, path = route.methods or set(), route.path or ""
        writes = methods & {"POST", "PUT", "PATCH", "DELETE"}
        limited = is_rate_limited(route)
        if path.startswith("/api/v1") and (writes or "/auth/" in path) and not limited:
            unlimited.append(f"{sorted(methods)} {path}")
    assert unlimited == []


async def test_a_route_limit_refuses_with_429_retry_after_in_the_problem_envelope() -> None:
    from app.server import create_app

    app = create_app()

    @app.post("/test-only/limited", dependencies=[Depends(RateLimit("3/minute"))])
    async def limited() -> dict[str, bool]:
        return {"ok": True}

    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        before = await scrape(http)
        statuses = [(await http.post("/test-only/limited")).status_code for _ in range(3)]
        refused = await http.post("/test-only/limited")
        after = await scrape(http)

    assert statuses == [200, 200, 200]
    rejections = "rate_limit_rejections_total"
    assert value(after, rejections) == value(before, rejections) + 1
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["error_code"] == "RATE_LIMITED"
    assert 0 < int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-policy"] == '"default";q=3;w=60'
    assert refused.headers["ratelimit"].startswith('"default";r=0;t=')


async def test_two_routes_of_one_path_count_apart_and_an_ipv6_64_is_one_caller() -> None:
    from app.server import create_app

    app = create_app()

    @app.patch("/test-only/thing", dependencies=[Depends(RateLimit("2/minute"))])
    async def change() -> dict[str, bool]:
        return {"ok": True}

    @app.delete("/test-only/thing", dependencies=[Depends(RateLimit("2/minute"))])
    async def remove() -> dict[str, bool]:
        return {"ok": True}

    async def status(method: str, address: str) -> int:
        transport = ASGITransport(app=app, client=(address, 40000))
        async with AsyncClient(transport=transport, base_url="http://test") as http:
            return (await http.request(method, "/test-only/thing")).status_code

    one_address = f"192.0.2.{uuid4().int % 250 + 1}"
    patches = [await status("PATCH", one_address) for _ in range(3)]
    delete = await status("DELETE", one_address)
    # Three addresses of one /64: one host can take any of them.
    one_64 = f"2001:db8:8:{uuid4().int % 9000:x}"
    same_host = [await status("PATCH", f"{one_64}::{n:x}") for n in (1, 0xBEEF, 0xFFFF)]
    next_64 = await status("PATCH", f"2001:db8:9:{uuid4().int % 9000:x}::1")

    assert patches == [200, 200, 429]
    assert delete == 200
    assert same_host == [200, 200, 429]
    assert next_64 == 200


def test_a_limit_that_would_count_wrongly_is_refused_where_it_is_written() -> None:
    # limits' notation takes several limits at once; only one of them would count.
    with pytest.raises(ValidationError, match="names 2 limits"):
        Settings(ENV="local", RATE_LIMIT_DEFAULT="1000/hour;10/minute")
    with pytest.raises(ValueError, match="names 2 limits"):
        RateLimit("5/minute;100/day")
    with pytest.raises(ValueError, match="shorten the window"):
        RateLimit("100000/hour")
    assert RateLimit("1000/36 seconds").limit is not None


async def test_a_tier_limit_is_refused_where_it_would_limit_nothing(
    client: AsyncClient, admin: Account
) -> None:
    tier = await new_tier(client, admin)

    async def add(path: str, limit: int) -> httpx.Response:
        body = {"path": path, "limit": limit, "period_seconds": 60}
        return await client.post(
            f"/api/v1/tiers/{tier}/rate-limits", json=body, headers=admin.headers
        )

    unlimited_route = await add("/api/v1/tasks/{task_id}", 5)
    too_many = await add(REFRESH, 10_001)
    fine = await add(REFRESH, 10_000)

    assert unlimited_route.status_code == 422
    assert unlimited_route.json()["error_code"] == "TIER__UNKNOWN_PATH"
    assert too_many.status_code == 422
    assert fine.status_code == 201


async def test_rate_limit_enabled_false_turns_it_off(client: AsyncClient) -> None:
    load_config(RATE_LIMIT_ENABLED=False, RATE_LIMIT_DEFAULT="1/minute")
    try:
        statuses = [(await client.post(REFRESH, json=BOGUS_REFRESH)) for _ in range(3)]
    finally:
        load_config()
    assert [r.status_code for r in statuses] == [401] * 3
    assert all("ratelimit" not in r.headers for r in statuses)


async def test_a_tier_limit_set_through_the_api_applies_in_every_process(
    client: AsyncClient, admin: Account, other_process: str, anonymous_limits: None
) -> None:
    await limit_tier(client, admin, "anonymous", REFRESH, 4)

    async with httpx.AsyncClient(base_url=other_process) as other:
        statuses = []
        for http in (client, other, client, other, client, other):
            statuses.append((await http.post(REFRESH, json=BOGUS_REFRESH)).status_code)
        refused = await other.post(REFRESH, json=BOGUS_REFRESH)

    assert statuses == [401] * 4 + [429] * 2
    assert refused.headers["ratelimit-policy"] == '"anonymous";q=4;w=60'


async def test_deleting_a_tier_limit_applies_at_once(
    client: AsyncClient, admin: Account, anonymous_limits: None
) -> None:
    created = await limit_tier(client, admin, "anonymous", REFRESH, 1)
    assert (await client.post(REFRESH, json=BOGUS_REFRESH)).status_code == 401
    assert (await client.post(REFRESH, json=BOGUS_REFRESH)).status_code == 429

    deleted = await client.delete(
        f"/api/v1/tiers/anonymous/rate-limits/{created['id']}", headers=admin.headers
    )

    assert deleted.status_code == 204
    after = await client.post(REFRESH, json=BOGUS_REFRESH)
    assert after.status_code == 401
    assert after.headers["ratelimit-policy"] == '"default";q=60;w=60'


async def test_a_tier_change_applies_to_the_user_in_every_process_at_once(
    client: AsyncClient, admin: Account, other_process: str
) -> None:
    user = await signed_up(client)
    path = "/api/v1/users/{user_id}"
    pro = await new_tier(client, admin)
    await limit_tier(client, admin, pro, path, 2)
    patch = f"/api/v1/users/{user.id}"
    async with httpx.AsyncClient(base_url=other_process) as other:
        # Cached in both processes' view of the auth state first: the free tier, the default.
        before = await other.patch(patch, json={"nickname": "Bo"}, headers=user.headers)
        assert before.headers["ratelimit-policy"] == '"default";q=60;w=60'

        moved = await client.put(
            f"/api/v1/users/{user.id}/tier", json={"tier": pro}, headers=admin.headers
        )
        assert moved.status_code == 200
        assert moved.json() == {"user_id": user.id, "tier": pro}

        statuses = [
            (await http.patch(patch, json={"nickname": "Bo"}, headers=user.headers)).status_code
            for http in (other, client, other)
        ]
    assert statuses == [200, 200, 429]


async def test_a_tier_limit_change_reaches_signed_in_users_on_their_next_request(
    client: AsyncClient, admin: Account, other_process: str, free_limits: None
) -> None:
    user = await signed_up(client)  # in no tier: the default one, "free"
    patch = f"/api/v1/users/{user.id}"
    nickname = {"nickname": "Di"}
    await asyncio.sleep(hold_seconds())  # their login's hold is over: a read caches their state
    async with httpx.AsyncClient(base_url=other_process) as other:
        assert (await other.get("/api/v1/users/me", headers=user.headers)).status_code == 200
        before = await other.patch(patch, json=nickname, headers=user.headers)
        assert before.headers["ratelimit-policy"] == '"default";q=60;w=60'

        created = await limit_tier(client, admin, "free", "/api/v1/users/{user_id}", 1)
        limited = [
            await http.patch(patch, json=nickname, headers=user.headers) for http in (other, client)
        ]
        deleted = await client.delete(
            f"/api/v1/tiers/free/rate-limits/{created['id']}", headers=admin.headers
        )
        after = await other.patch(patch, json=nickname, headers=user.headers)

    assert [response.status_code for response in limited] == [200, 429]
    assert limited[0].headers["ratelimit-policy"] == '"free";q=1;w=60'
    assert deleted.status_code == 204
    assert after.status_code == 200
    assert after.headers["ratelimit-policy"] == '"default";q=60;w=60'


async def test_the_limit_is_per_caller(client: AsyncClient, admin: Account) -> None:
    tier = await new_tier(client, admin)
    await limit_tier(client, admin, tier, "/api/v1/users/{user_id}", 1)
    first, second = await signed_up(client), await signed_up(client)
    for account in (first, second):
        moved = await client.put(
            f"/api/v1/users/{account.id}/tier", json={"tier": tier}, headers=admin.headers
        )
        assert moved.status_code == 200

    for account in (first, second):
        path = f"/api/v1/users/{account.id}"
        ok = await client.patch(path, json={"nickname": "Cy"}, headers=account.headers)
        assert ok.status_code == 200
    again = await client.patch(
        f"/api/v1/users/{first.id}", json={"nickname": "Cy"}, headers=first.headers
    )
    assert again.status_code == 429


def test_sixteen_threads_against_a_limit_of_ten_get_exactly_ten(
    other_process: str, stack: ServerStack, anonymous_limits: None
) -> None:
    stack.primary.psql(
        'INSERT INTO tier_rate_limits (tier_id, path, "limit", period_seconds) '
        f"SELECT id, '{REFRESH}', 10, 60 FROM tiers WHERE name = 'anonymous'"
    )
    start = threading.Barrier(16)
    statuses: list[int] = []

    def one() -> None:
        with httpx.Client(base_url=other_process) as http:
            start.wait()
            statuses.append(http.post(REFRESH, json=BOGUS_REFRESH).status_code)

    threads = [threading.Thread(target=one) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [401] * 10 + [429] * 6


def test_a_spoofed_x_forwarded_for_from_an_untrusted_peer_does_not_change_the_bucket() -> None:
    # Only 10.9.9.9 is a proxy here: this test's own connections are from an untrusted peer.
    with (
        api_process(FORWARDED_ALLOW_IPS="10.9.9.9", RATE_LIMIT_DEFAULT="3/minute") as url,
        httpx.Client(base_url=url) as http,
    ):
        statuses = [
            http.post(
                REFRESH, json=BOGUS_REFRESH, headers={"X-Forwarded-For": f"198.51.100.{n}"}
            ).status_code
            for n in range(5)
        ]
    assert statuses == [401] * 3 + [429] * 2


def test_behind_a_trusted_proxy_the_right_most_untrusted_address_is_the_caller() -> None:
    # The test connects from 127.0.0.1, a trusted proxy; what a client sent before it is not.
    with (
        api_process(FORWARDED_ALLOW_IPS="127.0.0.1", RATE_LIMIT_DEFAULT="2/minute") as url,
        httpx.Client(base_url=url) as http,
    ):

        def status(forwarded_for: str) -> int:
            headers = {"X-Forwarded-For": forwarded_for}
            return http.post(REFRESH, json=BOGUS_REFRESH, headers=headers).status_code

        rotated = [status(f"10.0.0.{n}, 203.0.113.7") for n in range(3)]
        other_client = status("203.0.113.8")
    assert rotated == [401, 401, 429]
    assert other_client == 401


async def test_with_redis_stopped_limits_hold_per_process_and_nothing_fails(
    client: AsyncClient,
    admin: Account,
    stack: ServerStack,
    anonymous_limits: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await limit_tier(client, admin, "anonymous", REFRESH, 3)
    before = [(await client.post(REFRESH, json=BOGUS_REFRESH)).status_code for _ in range(2)]
    stack.redis.stop()
    try:
        during = [(await client.post(REFRESH, json=BOGUS_REFRESH)) for _ in range(6)]
    finally:
        stack.redis.start()
    backend = Cache.backend
    assert isinstance(backend, RedisBackend)
    await asyncio.sleep(1.1)  # past the window in which Redis is treated as down
    after = await client.post(REFRESH, json=BOGUS_REFRESH)

    assert before == [401, 401]
    # Counted in this process, from the two hits it counted in Redis: never a fresh limit.
    assert [r.status_code for r in during] == [401] + [429] * 5
    assert caplog.text.count("rate limits are counted per process") == 1
    # Redis is back: the count is shared in it again.
    assert after.status_code in (401, 429)
    assert await backend.client.keys("ratelimit*")


async def test_with_redis_hung_requests_are_answered_and_still_limited(
    client: AsyncClient, stack: ServerStack
) -> None:
    load_config(RATE_LIMIT_DEFAULT="2/minute")
    stack.redis.freeze()
    try:
        # A hung Redis never answers: each call is bounded, then counted in this process.
        statuses = [(await client.post(REFRESH, json=BOGUS_REFRESH)).status_code for _ in range(4)]
    finally:
        stack.redis.thaw()
        load_config()
    assert statuses == [401, 401, 429, 429]
