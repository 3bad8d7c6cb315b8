from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from httpx import AsyncClient

from tests.helpers import Account, login, registration, signed_up, unique_email
from tests.servers import ServerStack


async def test_register_returns_the_user_without_secrets(
    client: AsyncClient, stack: ServerStack
) -> None:
    response = await client.post("/api/v1/users", json=registration(email="Mixed.Case@Example.COM"))

    assert response.status_code == 201
    body = response.json()
    assert body["email"] == "mixed.case@example.com"
    assert body["nickname"] == "Ann"
    assert body["is_admin"] is False
    assert body["created_at"].endswith("Z") or "+00:00" in body["created_at"]
    expected = {"id", "email", "nickname", "is_admin", "is_verified", "created_at", "version"}
    assert set(body) == expected
    stored = stack.primary.psql(f"SELECT password_hash FROM users WHERE id = {body['id']}")
    assert stored.startswith("$argon2id$")


async def test_a_user_reads_themselves_back(client: AsyncClient) -> None:
    account = await signed_up(client)

    me = await client.get("/api/v1/users/me", headers=account.headers)
    by_id = await client.get(f"/api/v1/users/{account.id}", headers=account.headers)

    assert me.status_code == 200
    assert me.json()["email"] == account.email
    assert by_id.json() == me.json()


async def test_duplicate_email_is_a_409_whatever_its_case(client: AsyncClient) -> None:
    email = unique_email()
    assert (await client.post("/api/v1/users", json=registration(email=email))).status_code == 201

    response = await client.post("/api/v1/users", json=registration(email=email.upper()))

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": "An account with this email address already exists.",
        "error_code": "USER__DUPLICATE_EMAIL",
    }


async def test_concurrent_registrations_of_one_email_create_exactly_one_user(
    client: AsyncClient, stack: ServerStack
) -> None:
    email = unique_email()
    responses = await asyncio.gather(
        *(client.post("/api/v1/users", json=registration(email=email)) for _ in range(16))
    )

    statuses = Counter(r.status_code for r in responses)
    # Past five registrations of one address in the window, the throttle answers first.
    assert statuses[201] == 1
    assert statuses[409] + statuses[429] == 15
    assert stack.primary.psql(f"SELECT count(*) FROM users WHERE email = '{email}'") == "1"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"password": "7 chars"}, "password"),
        ({"password": "x" * 129}, "password"),
        ({"nickname": ""}, "nickname"),
        ({"nickname": "   "}, "nickname"),
        ({"nickname": "n" * 65}, "nickname"),
        ({"is_admin": True}, "is_admin"),
    ],
)
async def test_invalid_registration_is_a_422_naming_the_field(
    client: AsyncClient, stack: ServerStack, overrides: dict[str, Any], field: str
) -> None:
    body = registration(**overrides)

    response = await client.post("/api/v1/users", json=body)

    assert response.status_code == 422
    problem = response.json()
    assert problem["error_code"] == "VALIDATION_ERROR"
    assert ["body", field] in [error["loc"] for error in problem["errors"]]
    assert body["password"] not in response.text
    count = stack.primary.psql(f"SELECT count(*) FROM users WHERE email = '{body['email']}'")
    assert count == "0"


async def test_unknown_user_is_a_404(client: AsyncClient, stack: ServerStack) -> None:
    admin = await signed_up(client, stack, admin=True)

    response = await client.get("/api/v1/users/999999999", headers=admin.headers)

    assert response.status_code == 404
    assert response.json()["error_code"] == "USER__NOT_FOUND"


async def test_non_numeric_user_id_is_a_422_whoever_asks(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin, user = await signed_up(client, stack, admin=True), await signed_up(client)

    by_admin = await client.get("/api/v1/users/abc", headers=admin.headers)
    # The ownership check reads the id as the route does, and refuses it as the route does.
    by_user = await client.get("/api/v1/users/abc", headers=user.headers)
    post_edit = await client.patch("/api/v1/posts/abc", json={"title": "x"}, headers=user.headers)
    anonymous = await client.get("/api/v1/users/abc")

    for response in (by_admin, by_user, post_edit):
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["type"] == "int_parsing"
    assert by_user.json() == by_admin.json()
    assert post_edit.json()["errors"][0]["loc"] == ["path", "post_id"]
    assert anonymous.status_code == 401


async def test_an_id_the_route_accepts_is_the_same_id_to_its_permission_checks(
    client: AsyncClient,
) -> None:
    account = await signed_up(client)
    post = await client.post(
        "/api/v1/posts", json={"title": "Hi", "body": "Text."}, headers=account.headers
    )

    # The route reads "7.0" and " 7" as 7; IsSelf and IsAuthor must read them the same way.
    me = await client.get(f"/api/v1/users/{account.id}.0", headers=account.headers)
    edited = await client.patch(
        f"/api/v1/posts/%20{post.json()['id']}", json={"title": "Hey"}, headers=account.headers
    )

    assert me.status_code == 200, me.text
    assert me.json()["id"] == account.id
    assert edited.status_code == 200, edited.text
    assert edited.json()["title"] == "Hey"


async def test_users_see_themselves_but_not_others(client: AsyncClient) -> None:
    alice, bob = await signed_up(client), await signed_up(client)

    assert (await client.get(f"/api/v1/users/{bob.id}", headers=alice.headers)).status_code == 403
    assert (await client.get(f"/api/v1/users/{bob.id}")).status_code == 401


async def test_profile_edit_is_read_back_at_once_even_while_the_replica_lags(
    client: AsyncClient, stack: ServerStack
) -> None:
    account = await signed_up(client)
    stack.wait_for_replica()
    # With replay paused the replica serves old data: only reads routed to the writer see
    # the edit, which is what read-your-writes must guarantee.
    stack.replica.psql("SELECT pg_wal_replay_pause()")
    try:
        for nickname in ("Renamed", "Renamed again"):
            patched = await client.patch(
                f"/api/v1/users/{account.id}", json={"nickname": nickname}, headers=account.headers
            )
            assert patched.status_code == 200
            assert patched.json()["nickname"] == nickname

            me = await client.get("/api/v1/users/me", headers=account.headers)
            assert me.json()["nickname"] == nickname
    finally:
        stack.replica.psql("SELECT pg_wal_replay_resume()")


async def test_changing_your_password_needs_the_current_one(client: AsyncClient) -> None:
    account = await signed_up(client)
    url = f"/api/v1/users/{account.id}"

    missing = await client.patch(url, json={"password": "new long secret"}, headers=account.headers)
    wrong = await client.patch(
        url,
        json={"password": "new long secret", "current_password": "not it"},
        headers=account.headers,
    )

    assert missing.status_code == 422
    assert missing.json()["errors"][0]["loc"] == ["body", "current_password"]
    assert wrong.status_code == 403
    assert wrong.json()["error_code"] == "USER__WRONG_CURRENT_PASSWORD"
    assert (await login(client, account.email)).status_code == 200


async def test_password_change_ends_every_session(client: AsyncClient) -> None:
    account = await signed_up(client)
    new_password = "a brand new passphrase"

    changed = await client.patch(
        f"/api/v1/users/{account.id}",
        json={"password": new_password, "current_password": account.password},
        headers=account.headers,
    )

    assert changed.status_code == 200
    old_access = await client.get("/api/v1/users/me", headers=account.headers)
    assert old_access.status_code == 401
    assert old_access.json()["error_code"] == "TOKEN_REVOKED"
    old_refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    assert old_refresh.status_code == 401
    assert (await login(client, account.email)).status_code == 401
    assert (await login(client, account.email, new_password)).status_code == 200


async def test_users_cannot_edit_others_but_admins_can(
    client: AsyncClient, stack: ServerStack
) -> None:
    alice, bob = await signed_up(client), await signed_up(client)
    admin = await signed_up(client, stack, admin=True)
    url = f"/api/v1/users/{bob.id}"

    by_alice = await client.patch(url, json={"nickname": "x"}, headers=alice.headers)
    by_admin = await client.patch(url, json={"nickname": "Set by admin"}, headers=admin.headers)

    assert by_alice.status_code == 403
    assert by_admin.status_code == 200
    assert by_admin.json()["nickname"] == "Set by admin"


async def test_admin_soft_deletes_a_user(client: AsyncClient, stack: ServerStack) -> None:
    victim = await signed_up(client)
    admin = await signed_up(client, stack, admin=True)

    deleted = await client.delete(f"/api/v1/users/{victim.id}", headers=admin.headers)

    assert deleted.status_code == 204
    assert (await client.get(f"/api/v1/users/{victim.id}", headers=admin.headers)).status_code == (
        404
    )
    token_after = await client.get("/api/v1/users/me", headers=victim.headers)
    assert token_after.status_code == 401
    assert token_after.json()["error_code"] == "TOKEN_REVOKED"
    assert (await login(client, victim.email)).status_code == 401
    # The row stays.
    assert stack.primary.psql(
        f"SELECT deleted_at IS NOT NULL FROM users WHERE id = {victim.id}"
    ) == ("t")


async def test_list_is_admin_only(client: AsyncClient, stack: ServerStack) -> None:
    user = await signed_up(client)
    admin = await signed_up(client, stack, admin=True)

    assert (await client.get("/api/v1/users")).status_code == 401
    assert (await client.get("/api/v1/users", headers=user.headers)).status_code == 403
    assert (await client.get("/api/v1/users", headers=admin.headers)).status_code == 200


async def test_cursor_pagination_walks_every_user_once_in_order(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    for _ in range(3):
        await client.post("/api/v1/users", json=registration())
    stack.wait_for_replica()
    expected = [
        int(i)
        for i in stack.primary.psql(
            "SELECT id FROM users WHERE deleted_at IS NULL ORDER BY id"
        ).split()
    ]

    seen: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/api/v1/users", params=params, headers=admin.headers)).json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == expected


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"limit": 0}, 422, "VALIDATION_ERROR"),
        ({"limit": 101}, 422, "VALIDATION_ERROR"),
        ({"cursor": "not-a-cursor"}, 400, "INVALID_CURSOR"),
    ],
)
async def test_bad_list_parameters_are_4xx(
    client: AsyncClient, stack: ServerStack, params: dict[str, Any], status: int, code: str
) -> None:
    admin = await signed_up(client, stack, admin=True)

    response = await client.get("/api/v1/users", params=params, headers=admin.headers)

    assert response.status_code == status
    assert response.json()["error_code"] == code


async def test_no_response_ever_contains_a_password_or_hash(
    client: AsyncClient, stack: ServerStack
) -> None:
    user = await signed_up(client)
    admin = await signed_up(client, stack, admin=True)
    responses = [*user.responses, *admin.responses]
    calls: list[tuple[str, str, Account, dict[str, Any] | None]] = [
        ("GET", "/api/v1/users/me", user, None),
        ("GET", f"/api/v1/users/{user.id}", user, None),
        ("PATCH", f"/api/v1/users/{user.id}", user, {"nickname": "Still Ann"}),
        ("GET", "/api/v1/users?limit=100", admin, None),
        ("POST", "/api/v1/roles", admin, {"name": f"r{user.id}", "permissions": ["users:read"]}),
        ("GET", "/api/v1/roles", admin, None),
        ("PUT", f"/api/v1/users/{user.id}/roles", admin, {"roles": [f"r{user.id}"]}),
        ("POST", "/api/v1/auth/refresh", admin, {"refresh_token": admin.refresh_token}),
        (
            "PATCH",
            f"/api/v1/users/{user.id}",
            user,
            {"password": "another long secret", "current_password": user.password},
        ),
        ("DELETE", f"/api/v1/users/{user.id}", admin, None),
        ("POST", "/api/v1/auth/logout", admin, None),
    ]
    for method, url, account, body in calls:
        response = await client.request(method, url, json=body, headers=account.headers)
        assert response.status_code < 400, (method, url, response.text)
        responses.append(response)

    hashes = stack.primary.psql("SELECT password_hash FROM users").split()
    for response in responses:
        text = response.text
        assert "password" not in text.lower()
        assert "$argon2" not in text
        assert not any(stored in text for stored in hashes)
        assert "another long secret" not in text
