"""Permission codes: declared by the modules in one place, listed, and the only ones roles hold."""

from __future__ import annotations

from httpx import AsyncClient

from tests.helpers import signed_up
from tests.servers import ServerStack

PERMISSIONS = "/api/v1/permissions"


async def test_admins_see_every_declared_code_with_its_description(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)

    listed = await client.get(PERMISSIONS, headers=admin.headers)

    assert listed.status_code == 200
    codes = {item["code"]: item["description"] for item in listed.json()}
    assert {"users:read", "users:delete", "posts:update", "posts:delete"} <= codes.keys()
    assert all(description for description in codes.values())
    assert list(codes) == sorted(codes)


async def test_the_list_is_for_admins_only(client: AsyncClient) -> None:
    user = await signed_up(client)

    assert (await client.get(PERMISSIONS)).status_code == 401
    assert (await client.get(PERMISSIONS, headers=user.headers)).status_code == 403


async def test_a_role_with_an_undeclared_code_is_refused_and_not_stored(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    name = f"typo-{admin.id}"

    created = await client.post(
        "/api/v1/roles",
        json={"name": name, "permissions": ["posts:update", "posts:updat"]},
        headers=admin.headers,
    )
    role = await client.post(
        "/api/v1/roles", json={"name": f"ok-{admin.id}"}, headers=admin.headers
    )
    changed = await client.patch(
        f"/api/v1/roles/{role.json()['id']}",
        json={"permissions": ["users:read", "users:write"]},
        headers=admin.headers,
    )

    for refused in (created, changed):
        assert refused.status_code == 422
        assert refused.json()["error_code"] == "ROLE__UNKNOWN_PERMISSION"
    assert "posts:updat" in created.json()["detail"]
    assert "users:write" in changed.json()["detail"]
    assert stack.primary.psql(f"SELECT count(*) FROM roles WHERE name = '{name}'") == "0"
    assert (
        stack.primary.psql(f"SELECT permissions FROM roles WHERE id = {role.json()['id']}") == "[]"
    )
