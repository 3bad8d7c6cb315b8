"""Tiers and their per-path limits, managed by admins through the API."""

from __future__ import annotations

from uuid import uuid4

from httpx import AsyncClient

from tests.helpers import signed_up
from tests.servers import ServerStack

TIERS = "/api/v1/tiers"


def tier_name() -> str:
    return f"t-{uuid4().hex[:12]}"


async def test_admins_create_and_list_tiers_and_both_defaults_exist(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    name = tier_name()

    created = await client.post(
        TIERS, json={"name": name, "description": "Paying"}, headers=admin.headers
    )
    duplicate = await client.post(TIERS, json={"name": name}, headers=admin.headers)
    listed = await client.get(
        TIERS, params={"name__in": f"anonymous,free,{name}"}, headers=admin.headers
    )
    paged = await client.get(
        TIERS, params={"name__in": f"free,{name}", "limit": 1, "page": 2}, headers=admin.headers
    )

    assert created.status_code == 201
    assert created.json()["name"] == name
    assert created.json()["description"] == "Paying"
    assert duplicate.status_code == 409
    assert duplicate.json()["error_code"] == "TIER__DUPLICATE_NAME"
    # By name unless sorted otherwise, in the envelope every list answers with.
    assert [tier["name"] for tier in listed.json()["items"]] == sorted(["anonymous", "free", name])
    assert listed.json()["next_cursor"] is None
    assert paged.json()["total"] == 2
    assert [tier["name"] for tier in paged.json()["items"]] == [max("free", name)]


async def test_tier_limits_are_added_listed_and_deleted(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    name = tier_name()
    await client.post(TIERS, json={"name": name}, headers=admin.headers)
    limit = {"path": "/api/v1/users/{user_id}", "limit": 5, "period_seconds": 60}

    added = await client.post(f"{TIERS}/{name}/rate-limits", json=limit, headers=admin.headers)
    again = await client.post(f"{TIERS}/{name}/rate-limits", json=limit, headers=admin.headers)
    listed = await client.get(f"{TIERS}/{name}/rate-limits", headers=admin.headers)
    rate_limit_id = added.json()["id"]
    deleted = await client.delete(
        f"{TIERS}/{name}/rate-limits/{rate_limit_id}", headers=admin.headers
    )
    gone = await client.delete(f"{TIERS}/{name}/rate-limits/{rate_limit_id}", headers=admin.headers)

    assert added.status_code == 201
    assert added.json() == {"id": rate_limit_id, **limit}
    assert again.status_code == 409
    assert again.json()["error_code"] == "TIER__DUPLICATE_RATE_LIMIT"
    assert listed.json()["items"] == [added.json()]
    assert deleted.status_code == 204
    assert gone.status_code == 404
    left = await client.get(f"{TIERS}/{name}/rate-limits", headers=admin.headers)
    assert left.json()["items"] == []


async def test_bad_tier_input_is_refused_and_nothing_is_written(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    name = tier_name()
    await client.post(TIERS, json={"name": name}, headers=admin.headers)
    url = f"{TIERS}/{name}/rate-limits"

    unknown_path = await client.post(
        url,
        json={"path": "/api/v1/nowhere", "limit": 1, "period_seconds": 1},
        headers=admin.headers,
    )
    zero = await client.post(
        url, json={"path": "/api/v1/users", "limit": 0, "period_seconds": 60}, headers=admin.headers
    )
    bad_name = await client.post(TIERS, json={"name": "Not A Name"}, headers=admin.headers)
    control = await client.post(
        TIERS, json={"name": tier_name(), "description": "a\x00b"}, headers=admin.headers
    )
    no_tier = await client.get(f"{TIERS}/{tier_name()}/rate-limits", headers=admin.headers)
    nul_in_path = await client.get(f"{TIERS}/a%00b/rate-limits", headers=admin.headers)

    assert unknown_path.status_code == 422
    assert unknown_path.json()["error_code"] == "TIER__UNKNOWN_PATH"
    assert zero.status_code == 422
    assert bad_name.status_code == 422
    assert control.status_code == 422
    assert nul_in_path.status_code == 422
    assert no_tier.status_code == 404
    assert no_tier.json()["error_code"] == "TIER__NOT_FOUND"
    assert (await client.get(url, headers=admin.headers)).json()["items"] == []


async def test_only_admins_manage_tiers(client: AsyncClient) -> None:
    user = await signed_up(client)

    assert (await client.get(TIERS)).status_code == 401
    assert (await client.get(TIERS, headers=user.headers)).status_code == 403
    refused = await client.post(TIERS, json={"name": tier_name()}, headers=user.headers)
    assert refused.status_code == 403
    moved = await client.put(
        f"/api/v1/users/{user.id}/tier", json={"tier": "free"}, headers=user.headers
    )
    assert moved.status_code == 403


async def test_putting_a_user_in_a_tier_needs_a_known_tier_and_user(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    user = await signed_up(client)

    unknown_tier = await client.put(
        f"/api/v1/users/{user.id}/tier", json={"tier": tier_name()}, headers=admin.headers
    )
    unknown_user = await client.put(
        "/api/v1/users/999999999/tier", json={"tier": "free"}, headers=admin.headers
    )
    moved = await client.put(
        f"/api/v1/users/{user.id}/tier", json={"tier": "free"}, headers=admin.headers
    )

    assert unknown_tier.status_code == 422
    assert unknown_tier.json()["error_code"] == "TIER__UNKNOWN"
    assert unknown_user.status_code == 404
    assert moved.status_code == 200
    assert moved.json() == {"user_id": user.id, "tier": "free"}
    row = stack.primary.psql(
        "SELECT t.name FROM user_tiers u JOIN tiers t ON t.id = u.tier_id "
        f"WHERE u.user_id = {user.id}"
    )
    assert "free" in row
