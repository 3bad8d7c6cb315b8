"""Abuse and failure cases: each must end in a clear 4xx/503, never a 500 or a bypass."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import bcrypt
import jwt
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import text

from core.config import config
from core.db import Transactional, databases, session
from core.helpers.outage import Outage
from core.security.auth_state import forget_auth_state
from tests.helpers import PASSWORD, login, registration, signed_up, unique_email
from tests.servers import ServerStack


async def test_parallel_guesses_cannot_outrun_the_throttle(client: AsyncClient) -> None:
    account = await signed_up(client)

    responses = await asyncio.gather(
        *(login(client, account.email, f"guess {n}") for n in range(30))
    )

    statuses = Counter(r.status_code for r in responses)
    assert statuses[401] <= 5
    assert statuses[401] + statuses[429] == 30


async def test_a_burst_of_logins_does_not_starve_the_database_pool(
    client: AsyncClient,
) -> None:
    accounts = [await signed_up(client) for _ in range(20)]

    responses = await asyncio.gather(*(login(client, a.email) for a in accounts))

    assert [r.status_code for r in responses] == [200] * 20


@pytest.mark.parametrize(
    "stored",
    ["garbage-that-is-no-hash", bcrypt.hashpw(b"x" * 72, bcrypt.gensalt(4)).decode()],
    ids=["unknown-scheme", "bcrypt-with-long-password"],
)
async def test_odd_stored_hashes_are_a_401_not_a_500(
    client: AsyncClient, stack: ServerStack, stored: str
) -> None:
    account = await signed_up(client)
    stack.primary.psql(f"UPDATE users SET password_hash = '{stored}' WHERE id = {account.id}")

    response = await login(client, account.email, "y" * 100)

    assert response.status_code == 401


async def test_an_overflowing_cursor_is_a_400(client: AsyncClient, stack: ServerStack) -> None:
    admin = await signed_up(client, stack, admin=True)
    import base64

    cursor = base64.urlsafe_b64encode(b"u" + b"9" * 30).decode().rstrip("=")

    response = await client.get("/api/v1/users", params={"cursor": cursor}, headers=admin.headers)

    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_CURSOR"


async def post_raw_json(client: AsyncClient, path: str, body: str) -> Response:
    """POST `body` as written: JSON escapes such as a lone "\\ud800" reach the server as sent."""
    return await client.post(
        path, content=body.encode(), headers={"content-type": "application/json"}
    )


def user_rows(stack: ServerStack, email: str) -> str:
    return stack.primary.psql(f"SELECT count(*) FROM users WHERE email = '{email}'")


# As JSON text, escaped: how a client sends them.
REFUSED_IN_TEXT = {
    "nul": "\\u0000",
    "bell": "\\u0007",
    "newline": "\\n",
    "delete": "\\u007f",
    "c1-next-line": "\\u0085",
    "c1-csi": "\\u009b",
    "line-separator": "\\u2028",
    "right-to-left-override": "\\u202e",
    "left-to-right-embedding": "\\u202a",
    "first-strong-isolate": "\\u2068",
    "pop-directional-isolate": "\\u2069",
    "lone-high-surrogate": "\\ud800",
    "lone-low-surrogate": "\\udc00",
    "zero-width-space": "\\u200b",
    "byte-order-mark": "\\ufeff",
    "soft-hyphen": "\\u00ad",
    "mongolian-vowel-separator": "\\u180e",
    "word-joiner": "\\u2060",
    "hangul-filler": "\\u3164",
    "noncharacter": "\\uffff",
}


@pytest.mark.parametrize("character", REFUSED_IN_TEXT.values(), ids=REFUSED_IN_TEXT.keys())
async def test_a_nickname_that_cannot_be_stored_or_shown_faithfully_is_a_422(
    client: AsyncClient, stack: ServerStack, character: str
) -> None:
    email = unique_email()
    body = f'{{"email": "{email}", "password": "{PASSWORD}", "nickname": "nick{character}name"}}'

    response = await post_raw_json(client, "/api/v1/users", body)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["error_code"] == "VALIDATION_ERROR"
    assert [error["loc"] for error in problem["errors"]] == [["body", "nickname"]]
    assert user_rows(stack, email) == "0"


@pytest.mark.parametrize(
    "nickname",
    ["👩‍💻", "می‌خواهم", "Zoë א"],
    ids=["emoji-sequence", "persian-non-joiner", "accents-and-hebrew"],
)
async def test_a_nickname_in_any_script_is_kept_as_sent(client: AsyncClient, nickname: str) -> None:
    # The joiners (U+200D, U+200C) are visible in what they join: emoji, Persian, Indic scripts.
    response = await client.post("/api/v1/users", json=registration() | {"nickname": nickname})

    assert response.status_code == 201, response.text
    assert response.json()["nickname"] == nickname


async def test_a_nickname_change_to_a_lone_surrogate_is_a_422_and_changes_nothing(
    client: AsyncClient, stack: ServerStack
) -> None:
    account = await signed_up(client)

    patched = await client.patch(
        f"/api/v1/users/{account.id}",
        content=b'{"nickname": "nick\\ud800name"}',
        headers={**account.headers, "content-type": "application/json"},
    )

    assert patched.status_code == 422, patched.text
    assert patched.json()["errors"][0]["loc"] == ["body", "nickname"]
    assert stack.primary.psql(f"SELECT nickname FROM users WHERE id = {account.id}") == "Ann"


@pytest.mark.parametrize("field", ["email", "password"])
async def test_a_lone_surrogate_in_an_email_or_password_is_a_422(
    client: AsyncClient, stack: ServerStack, field: str
) -> None:
    email = unique_email()
    fields = {"email": email, "password": PASSWORD, "nickname": "Ann"}
    fields[field] = fields[field].replace("e", "e\\ud800", 1)
    body = "{" + ", ".join(f'"{name}": "{value}"' for name, value in fields.items()) + "}"

    response = await post_raw_json(client, "/api/v1/users", body)

    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["errors"]] == [["body", field]]
    assert user_rows(stack, email) == "0"


async def test_a_lone_surrogate_in_a_login_password_is_a_422(client: AsyncClient) -> None:
    account = await signed_up(client)
    body = f'{{"email": "{account.email}", "password": "correct\\udfffhorse"}}'

    response = await post_raw_json(client, "/api/v1/auth/login", body)

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "password"]


@pytest.mark.parametrize("character", ["\x00", "\n", "\x1b", "\x85"])
async def test_a_control_character_in_a_password_is_a_422_before_any_hashing(
    client: AsyncClient, stack: ServerStack, character: str
) -> None:
    body = registration(password=f"correct{character}horse battery")

    created = await client.post("/api/v1/users", json=body)
    login_attempt = await login(client, body["email"], body["password"])

    assert created.status_code == 422, created.text
    assert created.json()["errors"][0]["loc"] == ["body", "password"]
    assert f"U+{ord(character):04X}" in created.json()["errors"][0]["msg"]
    assert user_rows(stack, body["email"]) == "0"
    assert login_attempt.status_code == 422


async def test_passwords_may_hold_any_printable_text(client: AsyncClient) -> None:
    password = "\u202e p\u00e4ss \U0001f511 w\u00f6rd \u05d0"
    created = await client.post("/api/v1/users", json=registration(password=password))

    assert created.status_code == 201, created.text
    assert (await login(client, created.json()["email"], password)).status_code == 200


async def test_right_to_left_names_keep_their_direction_marks(client: AsyncClient) -> None:
    # Hebrew followed by digits needs a right-to-left mark to display in the intended order.
    nickname = "\u05d3\u05e0\u05d4\u200f 2"

    response = await client.post("/api/v1/users", json=registration(nickname=nickname))

    assert response.status_code == 201, response.text
    assert response.json()["nickname"] == nickname


async def test_a_role_description_with_a_bidi_override_is_a_422(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    name = f"bidi-{admin.id}"

    response = await client.post(
        "/api/v1/roles",
        json={"name": name, "description": "reads \u202eselbat lla"},
        headers=admin.headers,
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "description"]
    assert stack.primary.psql(f"SELECT count(*) FROM roles WHERE name = '{name}'") == "0"


def signed_token(**claims: object) -> str:
    now = datetime.now(UTC)
    payload = {
        "sub": "1",
        "type": "access",
        "jti": "j",
        "sid": "s",
        "ver": 0,
        "iat": now,
        "exp": now + timedelta(minutes=5),
        **claims,
    }
    return jwt.encode(payload, config.JWT_SECRET_KEY, algorithm=config.JWT_ALGORITHM)


ODD_CLAIMS: dict[str, dict[str, object]] = {
    "subject-beyond-64-bits": {"sub": str(2**64)},
    "subject-beyond-bigint": {"sub": str(2**63)},
    "subject-zero": {"sub": "0"},
    "subject-negative": {"sub": "-1"},
    "subject-with-underscore": {"sub": "1_0"},
    "subject-with-plus": {"sub": "+1"},
    "subject-in-arabic-digits": {"sub": "\u0661"},
    "version-beyond-integer": {"ver": 2**31},
    "version-not-a-number": {"ver": "0"},
    "expiry-beyond-any-calendar": {"exp": 10**20},
}


@pytest.mark.parametrize("claims", ODD_CLAIMS.values(), ids=ODD_CLAIMS.keys())
async def test_a_signed_token_with_claims_out_of_range_is_an_invalid_token(
    client: AsyncClient, claims: dict[str, object]
) -> None:
    token = signed_token(**claims)

    response = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401, response.text
    assert response.json()["error_code"] == "INVALID_TOKEN"
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_concurrent_role_assignments_take_turns(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    user = await signed_up(client)
    role = f"concurrent-{user.id}"
    await client.post("/api/v1/roles", json={"name": role}, headers=admin.headers)

    responses = await asyncio.gather(
        *(
            client.put(
                f"/api/v1/users/{user.id}/roles", json={"roles": [role]}, headers=admin.headers
            )
            for _ in range(8)
        )
    )

    assert [r.status_code for r in responses] == [200] * 8
    count = stack.primary.psql(f"SELECT count(*) FROM user_roles WHERE user_id = {user.id}")
    assert count == "1"


async def test_a_database_outage_during_authentication_is_a_503(
    client: AsyncClient, stack: ServerStack
) -> None:
    account = await signed_up(client)
    await forget_auth_state(account.id)  # the next request loads it from the database
    # Both servers: with only the primary down, the auth state is read on the replica.
    stack.replica.stop()
    stack.primary.stop()
    try:
        response = await asyncio.wait_for(
            client.get("/api/v1/users/me", headers=account.headers), 15
        )
    finally:
        stack.primary.start()
        stack.replica.start()
        stack.wait_for_replica()
        # The reader marked the replica down while it was stopped: later tests read there again.
        fallback = databases.reader_fallback
        if fallback is not None:
            fallback.outage = Outage(fallback.outage.seconds)

    assert response.status_code == 503
    assert response.json()["error_code"] == "DATABASE_UNAVAILABLE"


async def test_ready_reports_cache_and_broker_outages_as_degraded(
    client: AsyncClient, stack: ServerStack
) -> None:
    stack.redis.stop()
    try:
        response = await asyncio.wait_for(client.get("/ready"), 15)
    finally:
        stack.redis.start()

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["cache"].startswith("down")
    assert body["checks"]["broker"].startswith("down")
    assert body["checks"]["writer"] == "ok"


async def test_login_still_works_with_the_password_after_a_hash_upgrade(
    client: AsyncClient, stack: ServerStack
) -> None:
    account = await signed_up(client)
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    stack.primary.psql(f"UPDATE users SET password_hash = '{legacy}' WHERE id = {account.id}")

    results = await asyncio.gather(*(login(client, account.email) for _ in range(3)))

    assert [r.status_code for r in results] == [200] * 3
    assert stack.primary.psql(
        f"SELECT password_hash LIKE '$argon2id$%' FROM users WHERE id = {account.id}"
    ) == ("t")


SCHEMA_DRIFTS = {
    "missing-table": (
        "ALTER TABLE users RENAME TO users_gone",
        "ALTER TABLE users_gone RENAME TO users",
    ),
    "missing-column": (
        "ALTER TABLE users RENAME COLUMN nickname TO nickname_gone",
        "ALTER TABLE users RENAME COLUMN nickname_gone TO nickname",
    ),
}


@pytest.mark.parametrize("drift", SCHEMA_DRIFTS.values(), ids=SCHEMA_DRIFTS.keys())
async def test_a_schema_behind_the_code_is_a_500_that_says_not_migrated(
    client: AsyncClient,
    stack: ServerStack,
    caplog: pytest.LogCaptureFixture,
    drift: tuple[str, str],
) -> None:
    break_schema, repair_schema = drift
    caplog.set_level(logging.ERROR)
    stack.primary.psql(break_schema)
    try:
        response = await client.post("/api/v1/users", json=registration())
    finally:
        stack.primary.psql(repair_schema)
        stack.wait_for_replica()

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["error_code"] == "DATABASE_NOT_MIGRATED"
    for internal in ("users", "nickname", "relation", "column", "SELECT", "INSERT"):
        assert internal not in response.text
    assert "x-request-id" in response.headers
    logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any(
        "not migrated" in r.getMessage() and "make migrate" in r.getMessage() for r in logged
    )


@pytest.fixture
async def app_with_a_slow_write(
    stack: ServerStack,
) -> AsyncIterator[tuple[AsyncClient, asyncio.Event, asyncio.Event, list[int]]]:
    """An app with one more route: a write that waits, its transaction open, until released."""
    from app.server import create_app

    app: FastAPI = create_app()
    written, release = asyncio.Event(), asyncio.Event()
    backend_pids: list[int] = []

    @Transactional()
    async def rename(user_id: int) -> None:
        backend_pids.append(int(await session.scalar(text("SELECT pg_backend_pid()")) or 0))
        await session.execute(
            text("UPDATE users SET nickname = 'renamed' WHERE id = :id"), {"id": user_id}
        )
        written.set()
        await release.wait()

    async def slow_write(user_id: int) -> None:
        await rename(user_id)

    app.add_api_route("/test-only/slow-write/{user_id}", slow_write, methods=["POST"])
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        yield http, written, release, backend_pids


async def test_a_connection_lost_before_the_commit_is_a_503_and_nothing_is_written(
    client: AsyncClient,
    stack: ServerStack,
    app_with_a_slow_write: tuple[AsyncClient, asyncio.Event, asyncio.Event, list[int]],
) -> None:
    slow_client, written, release, backend_pids = app_with_a_slow_write
    account = await signed_up(client)

    request = asyncio.create_task(slow_client.post(f"/test-only/slow-write/{account.id}"))
    await asyncio.wait_for(written.wait(), 15)
    # What a primary that stops or fails over does to the connections it had.
    stack.primary.psql(f"SELECT pg_terminate_backend({backend_pids[0]})")
    release.set()
    response = await asyncio.wait_for(request, 15)

    assert response.status_code == 503, response.text
    assert response.json()["error_code"] == "DATABASE_UNAVAILABLE"
    assert stack.primary.psql(f"SELECT nickname FROM users WHERE id = {account.id}") == "Ann"
    # The pool let the dead connection go: the next write works.
    assert (await client.post("/api/v1/users", json=registration())).status_code == 201
