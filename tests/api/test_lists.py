from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import pytest
from httpx import AsyncClient

from app.post import POST_LIST
from app.user import User
from core.fastapi.lists import ListField, ListSpec
from tests.helpers import Account, login, registration, signed_up
from tests.servers import ServerStack

USERS = "/api/v1/users"
USER_COLUMNS = User.__table__.c


def insert_users(stack: ServerStack, count: int, marker: str) -> list[int]:
    """Users whose emails all contain `marker`, so a filter isolates them from other tests';
    inserted in SQL, before anything is listed, to spare the password hashing."""
    # No real hash: nothing can log in as these users.
    values = ", ".join(
        f"('{marker}-{i:02d}@example.com', 'not-a-hash', 'test', now() + {i} * interval '1 ms')"
        for i in range(count)
    )
    columns = "email, password_hash, nickname, created_at"
    ids = stack.primary.psql(f"INSERT INTO users ({columns}) VALUES {values} RETURNING id")
    stack.wait_for_replica()
    return [int(i) for i in ids.split()]


async def walk(
    client: AsyncClient, admin: Account, params: dict[str, Any], between_pages: Any = None
) -> list[dict[str, Any]]:
    """Every item of a cursor-paged list, following next_cursor."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await client.get(
            USERS, params=params | ({"cursor": cursor} if cursor else {}), headers=admin.headers
        )
        assert page.status_code == 200, page.text
        body = page.json()
        assert (body["page"], body["total"]) == (None, None)
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
        if between_pages is not None:
            await between_pages()


async def test_sort_descending_with_a_filter_walks_every_match_once(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    marker = uuid4().hex[:12]
    insert_users(stack, 5, marker)

    items = await walk(
        client, admin, {"email__contains": marker.upper(), "sort": "-email", "limit": 2}
    )

    emails = [item["email"] for item in items]
    assert emails == sorted((f"{marker}-{i:02d}@example.com" for i in range(5)), reverse=True)


async def test_cursor_pages_stay_stable_while_users_are_added(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    marker = uuid4().hex[:12]
    existing = insert_users(stack, 6, marker)

    for sort in ("id", "-created_at", "email"):
        pages_seen = 0

        async def insert_more() -> None:
            # After each of the first two pages, users that sort before, among and after the
            # ones listed, through the API (which drops the cached list pages).
            nonlocal pages_seen
            pages_seen += 1
            if pages_seen > 2:
                return
            for prefix in ("0", "5", "z"):
                email = f"{prefix}{marker}-{uuid4().hex[:6]}@example.com"
                created = await client.post(USERS, json=registration(email=email))
                assert created.status_code == 201, created.text
            stack.wait_for_replica()

        items = await walk(
            client, admin, {"email__contains": marker, "sort": sort, "limit": 2}, insert_more
        )
        ids = [item["id"] for item in items]
        assert len(ids) == len(set(ids)), sort
        assert set(existing) <= set(ids), sort


async def test_page_mode_counts_and_offsets(client: AsyncClient, stack: ServerStack) -> None:
    admin = await signed_up(client, stack, admin=True)
    marker = uuid4().hex[:12]
    ids = insert_users(stack, 5, marker)
    params: dict[str, Any] = {"email__contains": marker, "limit": 2, "sort": "-id"}

    pages = [
        (await client.get(USERS, params=params | {"page": n}, headers=admin.headers)).json()
        for n in (1, 2, 3, 4)
    ]

    assert [[item["id"] for item in p["items"]] for p in pages] == [
        ids[::-1][0:2],
        ids[::-1][2:4],
        ids[::-1][4:5],
        [],
    ]
    assert {p["total"] for p in pages} == {5}
    assert [p["page"] for p in pages] == [1, 2, 3, 4]
    assert {p["next_cursor"] for p in pages} == {None}


async def test_filters_by_flag_and_time_range(client: AsyncClient, stack: ServerStack) -> None:
    admin = await signed_up(client, stack, admin=True)
    marker = uuid4().hex[:12]
    first, second, third = insert_users(stack, 3, marker)
    stack.primary.psql(
        f"UPDATE users SET is_admin = true, created_at = '2020-01-02T00:00:00Z' WHERE id = {first};"
        f"UPDATE users SET created_at = '2020-01-05T00:00:00Z' WHERE id = {second}"
    )
    stack.wait_for_replica()

    async def listed(**params: Any) -> list[int]:
        response = await client.get(
            USERS, params={"email__contains": marker} | params, headers=admin.headers
        )
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert await listed(is_admin="true") == [first]
    assert await listed(is_admin="false") == [second, third]
    assert await listed(
        created_at__gte="2020-01-01T00:00:00Z", created_at__lte="2020-01-03T00:00:00Z"
    ) == [first]
    assert await listed(created_at__lte="2020-01-10T00:00:00Z", sort="-created_at") == [
        second,
        first,
    ]
    # A time without a zone is UTC, as stored times are: the same rows whatever the host's zone.
    assert await listed(created_at__gte="2020-01-01", created_at__lte="2020-01-03T00:00") == [first]
    assert await listed(created_at__gte="0001-01-01T00:30") == [first, second, third]


@pytest.mark.parametrize(
    ("params", "status", "parameter"),
    [
        ({"colour": "red"}, 422, "colour"),
        ({"email__gte": "a"}, 422, "email__gte"),
        ({"nickname__contains": "a"}, 422, "nickname__contains"),
        ({"sort": "nickname"}, 422, "sort"),
        ({"sort": "id,-id"}, 422, "sort"),
        ({"is_admin": "maybe"}, 422, "is_admin"),
        ({"created_at__gte": "yesterday"}, 422, "created_at__gte"),
        # Values the database would refuse are refused here first.
        ({"email__contains": "a\x00b"}, 422, "email__contains"),
        ({"created_at__gte": "0001-01-01T00:00:00+01:00"}, 422, "created_at__gte"),
        ({"page": 0}, 422, "page"),
        ({"page": 1, "cursor": "x"}, 422, "page"),
    ],
)
async def test_bad_list_parameters_are_422_naming_the_parameter(
    client: AsyncClient, stack: ServerStack, params: dict[str, Any], status: int, parameter: str
) -> None:
    admin = await signed_up(client, stack, admin=True)

    response = await client.get(USERS, params=params, headers=admin.headers)

    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_code"] == "VALIDATION_ERROR"
    assert ["query", parameter] in [error["loc"] for error in body["errors"]]


async def test_a_cursor_made_for_another_sort_is_a_400(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    insert_users(stack, 2, uuid4().hex[:12])
    first = await client.get(USERS, params={"limit": 1, "sort": "email"}, headers=admin.headers)
    cursor = first.json()["next_cursor"]
    assert cursor

    same = await client.get(
        USERS, params={"limit": 1, "sort": "email", "cursor": cursor}, headers=admin.headers
    )
    other = await client.get(
        USERS, params={"limit": 1, "sort": "-email", "cursor": cursor}, headers=admin.headers
    )

    assert same.status_code == 200
    assert other.status_code == 400
    assert other.json()["error_code"] == "INVALID_CURSOR"
    assert "cursor" in other.json()["detail"]


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"author_id": str(2**70)}, 422, "VALIDATION_ERROR"),
        (
            {"sort": "id", "cursor": POST_LIST.encode_cursor(("id",), [2**63])},
            400,
            "INVALID_CURSOR",
        ),
        (
            {"sort": "title", "cursor": POST_LIST.encode_cursor(("title", "id"), ["a\x00", 1])},
            400,
            "INVALID_CURSOR",
        ),
    ],
)
async def test_values_beyond_a_column_are_a_4xx_not_a_database_error(
    client: AsyncClient, params: dict[str, Any], status: int, code: str
) -> None:
    response = await client.get("/api/v1/posts", params=params)

    assert response.status_code == status, response.text
    assert response.json()["error_code"] == code


async def test_the_list_parameters_are_in_the_openapi_document(client: AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()

    def names(path: str) -> set[str]:
        return {p["name"] for p in document["paths"][path]["get"]["parameters"]}

    assert names(USERS) >= {
        "limit",
        "cursor",
        "page",
        "sort",
        "email__contains",
        "is_admin",
        "created_at__gte",
        "created_at__lte",
    }
    assert names("/api/v1/roles") >= {"limit", "cursor", "page", "sort", "name", "name__in"}
    assert names("/api/v1/posts") >= {"limit", "cursor", "page", "sort", "author_id"}
    # Every list answers with the envelope and takes the common parameters; only the fixed
    # catalogue of permission codes, declared in code, is a plain array.
    shapes = {
        path: item["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        for path, item in document["paths"].items()
        if "get" in item and "application/json" in item["get"]["responses"]["200"]["content"]
    }
    lists = {path for path, shape in shapes.items() if "Page" in shape.get("$ref", "")}
    assert lists == {
        USERS,
        "/api/v1/roles",
        "/api/v1/posts",
        "/api/v1/tiers",
        "/api/v1/tiers/{name}/rate-limits",
        "/api/v1/auth/sessions",
    }
    for path in lists:
        assert names(path) >= {"limit", "cursor", "page", "sort"}, path
    assert {path for path, shape in shapes.items() if shape.get("type") == "array"} == {
        "/api/v1/permissions"
    }
    schema = document["components"]["schemas"]
    page = next(s for name, s in schema.items() if name.startswith("Page") and "User" in name)
    assert set(page["properties"]) == {"items", "next_cursor", "page", "total"}


async def test_roles_list_sorts_filters_and_pages(client: AsyncClient, stack: ServerStack) -> None:
    admin = await signed_up(client, stack, admin=True)
    marker = uuid4().hex[:8]
    names = [f"r{marker}-{n}" for n in ("b", "a", "c")]
    await asyncio.gather(
        *(client.post("/api/v1/roles", json={"name": n}, headers=admin.headers) for n in names)
    )
    stack.wait_for_replica()
    roles = "/api/v1/roles"

    first = await client.get(
        roles, params={"name__contains": marker, "limit": 2}, headers=admin.headers
    )
    second = await client.get(
        roles,
        params={"name__contains": marker, "limit": 2, "cursor": first.json()["next_cursor"]},
        headers=admin.headers,
    )
    chosen = await client.get(
        roles, params={"name__in": f"{names[0]},{names[2]}", "sort": "-name"}, headers=admin.headers
    )

    listed = [r["name"] for r in first.json()["items"] + second.json()["items"]]
    assert listed == sorted(names)
    assert second.json()["next_cursor"] is None
    assert [r["name"] for r in chosen.json()["items"]] == [names[2], names[0]]


@pytest.mark.parametrize(
    "fields",
    [
        {"id": ListField(USER_COLUMNS.id, filters=["startswith"])},  # no such operator
        {"email": ListField(USER_COLUMNS.email, sort=True)},  # no key field
        {"id": ListField(USER_COLUMNS.id, filters=["contains"])},  # contains on a number
    ],
)
def test_a_spec_that_cannot_work_is_refused_when_it_is_declared(fields: dict[str, Any]) -> None:
    # At import of the module that declares it, not as a 500 on the first request.
    with pytest.raises(ValueError, match="bad list spec"):
        ListSpec(fields, key="id", default_sort="id")


async def test_a_cursor_after_the_longest_title_still_pages_on(
    client: AsyncClient, stack: ServerStack
) -> None:
    author = await signed_up(client)
    marker = uuid4().hex[:12]
    # 200 characters of four UTF-8 bytes each: the longest title, and so the longest cursor.
    titles = [f"{marker}a" + "\U0001f600" * 187, f"{marker}b" + "\U0001f600" * 187]
    for title in titles:
        made = await client.post(
            "/api/v1/posts", json={"title": title, "body": "x"}, headers=author.headers
        )
        assert made.status_code == 201, made.text
    stack.wait_for_replica()  # an anonymous list reads the replica
    params = {"sort": "title,-created_at", "limit": "1", "title__contains": marker}

    first = await client.get("/api/v1/posts", params=params)
    second = await client.get(
        "/api/v1/posts", params=params | {"cursor": first.json()["next_cursor"]}
    )

    assert first.status_code == 200, first.text
    assert [post["title"] for post in first.json()["items"]] == titles[:1]
    assert second.status_code == 200, second.text
    assert [post["title"] for post in second.json()["items"]] == titles[1:]
    assert second.json()["next_cursor"] is None


async def test_every_list_pages_by_each_of_its_sort_fields(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    await login(client, admin.email)  # a second session, so the sessions list has two
    await signed_up(client)  # and a second user
    tier = f"t{uuid4().hex[:8]}"
    await client.post("/api/v1/tiers", json={"name": tier}, headers=admin.headers)
    for path in ("/api/v1/users", "/api/v1/posts"):
        await client.post(
            f"/api/v1/tiers/{tier}/rate-limits",
            json={"path": path, "limit": 5, "period_seconds": 60},
            headers=admin.headers,
        )
    for n in range(2):
        await client.post(
            "/api/v1/posts", json={"title": f"t{n}", "body": "b"}, headers=admin.headers
        )
    await client.post("/api/v1/roles", json={"name": f"r{uuid4().hex[:8]}"}, headers=admin.headers)
    await client.post("/api/v1/roles", json={"name": f"r{uuid4().hex[:8]}"}, headers=admin.headers)
    stack.wait_for_replica()
    document = (await client.get("/openapi.json")).json()

    pages = 0
    for template, item in document["paths"].items():
        sort = [p for p in item.get("get", {}).get("parameters", []) if p["name"] == "sort"]
        if not sort:
            continue
        path = template.replace("{name}", tier)
        fields = sort[0]["description"].split(": ", 1)[1].rstrip(".").split(", ")
        for field in fields:
            for order in (field, f"-{field}"):
                params = {"sort": order, "limit": 1}
                first = await client.get(path, params=params, headers=admin.headers)
                assert first.status_code == 200, (path, order, first.text)
                # Two rows at least: the cursor is made from the first page's row.
                cursor = first.json()["next_cursor"]
                assert cursor is not None, (path, order)
                second = await client.get(
                    path, params={**params, "cursor": cursor}, headers=admin.headers
                )
                assert second.status_code == 200, (path, order, second.text)
                assert second.json()["items"] != first.json()["items"]
                pages += 1
    assert pages >= 2 * 12  # every list route was walked, by every field it sorts by
