"""The cache as a client sees it: fast paths that never serve stale data after a change."""

from __future__ import annotations

from httpx import AsyncClient

from tests.helpers import registration, signed_up
from tests.servers import ServerStack


async def test_user_reads_are_cached_until_the_user_changes(
    client: AsyncClient, stack: ServerStack
) -> None:
    account = await signed_up(client)
    assert (await client.get("/api/v1/users/me", headers=account.headers)).status_code == 200
    # A change behind the API's back is not seen: the read came from the cache.
    stack.primary.psql(f"UPDATE users SET nickname = 'Behind' WHERE id = {account.id}")
    stack.wait_for_replica()
    cached = await client.get("/api/v1/users/me", headers=account.headers)
    assert cached.json()["nickname"] == "Ann"

    patched = await client.patch(
        f"/api/v1/users/{account.id}", json={"nickname": "Through API"}, headers=account.headers
    )
    assert patched.status_code == 200
    fresh = await client.get("/api/v1/users/me", headers=account.headers)
    assert fresh.json()["nickname"] == "Through API"


async def test_the_user_list_shows_new_and_deleted_users_at_once(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)

    async def listed_ids() -> set[int]:
        page = await client.get("/api/v1/users?limit=100", headers=admin.headers)
        ids: set[int] = {item["id"] for item in page.json()["items"]}
        cursor = page.json()["next_cursor"]
        while cursor:
            page = await client.get(
                "/api/v1/users", params={"limit": 100, "cursor": cursor}, headers=admin.headers
            )
            ids |= {item["id"] for item in page.json()["items"]}
            cursor = page.json()["next_cursor"]
        return ids

    before = await listed_ids()
    created = (await client.post("/api/v1/users", json=registration())).json()
    stack.wait_for_replica()
    assert created["id"] in await listed_ids() - before

    await client.delete(f"/api/v1/users/{created['id']}", headers=admin.headers)
    stack.wait_for_replica()
    assert created["id"] not in await listed_ids()


async def test_every_endpoint_answers_while_redis_is_down(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    stack.redis.stop()
    try:
        user = await signed_up(client)
        calls = [
            ("GET", "/health", None, None),
            ("GET", "/api/v1/users/me", user, None),
            ("GET", f"/api/v1/users/{user.id}", user, None),
            ("PATCH", f"/api/v1/users/{user.id}", user, {"nickname": "Offline"}),
            ("GET", "/api/v1/users?limit=5", admin, None),
            ("POST", "/api/v1/roles", admin, {"name": f"offline-{user.id}"}),
            ("GET", "/api/v1/roles", admin, None),
            ("PUT", f"/api/v1/users/{user.id}/roles", admin, {"roles": [f"offline-{user.id}"]}),
            ("POST", "/api/v1/auth/refresh", user, {"refresh_token": user.refresh_token}),
            ("DELETE", f"/api/v1/users/{user.id}", admin, None),
            ("POST", "/api/v1/auth/logout", admin, None),
        ]
        for method, url, account, body in calls:
            headers = account.headers if account else {}
            response = await client.request(method, url, json=body, headers=headers)
            assert response.status_code < 400, (method, url, response.text)
        ready = await client.get("/ready")
        assert ready.status_code == 200
    finally:
        stack.redis.start()
