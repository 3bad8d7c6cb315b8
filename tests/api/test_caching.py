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


async def test_while_redis_is_down_reads_answer_and_changes_are_saved_but_answer_503(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    user = await signed_up(client)
    stack.redis.stop()
    try:
        answered = [
            ("GET", "/health", None, None),
            ("GET", "/api/v1/users/me", user, None),
            ("GET", f"/api/v1/users/{user.id}", user, None),
            ("GET", "/api/v1/users?limit=5", admin, None),
            ("POST", "/api/v1/roles", admin, {"name": f"offline-{user.id}"}),
            ("GET", "/api/v1/roles", admin, None),
            ("POST", "/api/v1/auth/refresh", user, {"refresh_token": user.refresh_token}),
        ]
        for method, url, account, body in answered:
            headers = account.headers if account else {}
            response = await client.request(method, url, json=body, headers=headers)
            assert response.status_code < 400, (method, url, response.text)
        # Saved, but other processes could go on serving what they replaced: the client hears
        # so, and may retry.
        not_propagated = [
            ("PATCH", f"/api/v1/users/{user.id}", user, {"nickname": "Offline"}),
            ("PUT", f"/api/v1/users/{user.id}/roles", admin, {"roles": [f"offline-{user.id}"]}),
            ("DELETE", f"/api/v1/users/{user.id}", admin, None),
        ]
        for method, url, caller, payload in not_propagated:
            response = await client.request(method, url, json=payload, headers=caller.headers)
            assert response.status_code == 503, (method, url, response.text)
            assert response.json()["error_code"] == "CHANGE_NOT_PROPAGATED"
        row = stack.primary.psql(
            f"SELECT nickname, deleted_at IS NOT NULL FROM users WHERE id = {user.id}"
        )
        assert row == "Offline|t"
        ready = await client.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"]["cache"].startswith("down")
    finally:
        stack.redis.start()
    logout = await client.post("/api/v1/auth/logout", headers=admin.headers)
    assert logout.status_code == 204
    assert (await client.get("/api/v1/users/me", headers=admin.headers)).status_code == 401
