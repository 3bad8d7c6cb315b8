from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import pytest
import redis
from fastapi import FastAPI, Request
from httpx import ASGITransport, AsyncClient, Response
from starlette.middleware import Middleware
from starlette.responses import Response as StarletteResponse

from app.user import User, UserRead
from core.config import load_config
from core.db import Transactional, after_commit, session
from core.fastapi.idempotency import Idempotency
from core.fastapi.middlewares import SQLAlchemyMiddleware
from core.helpers.cache import ChangeNotPropagatedException
from tests.helpers import PASSWORD, Account, new_user, registration, signed_up, unique_email
from tests.servers import ServerStack

USERS = "/api/v1/users"
MIB = 1024 * 1024


# ETags and conditional requests


async def test_a_user_read_carries_its_version_as_etag_and_304s_when_unchanged(
    client: AsyncClient,
) -> None:
    user = await signed_up(client)
    url = f"{USERS}/{user.id}"

    first = await client.get(url, headers=user.headers)
    me = await client.get(f"{USERS}/me", headers=user.headers)
    unchanged = await client.get(
        url, headers=user.headers | {"If-None-Match": first.headers["etag"]}
    )
    weak = await client.get(
        url, headers=user.headers | {"If-None-Match": f"W/{first.headers['etag']}"}
    )
    await client.patch(url, json={"nickname": "Renamed"}, headers=user.headers)
    changed = await client.get(url, headers=user.headers | {"If-None-Match": first.headers["etag"]})

    assert first.headers["etag"] == f'"{first.json()["version"]}"'
    assert me.headers["etag"] == first.headers["etag"]
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["etag"] == first.headers["etag"]
    assert weak.status_code == 304
    assert changed.status_code == 200
    assert changed.json()["nickname"] == "Renamed"
    assert changed.headers["etag"] != first.headers["etag"]


async def test_a_condition_sent_on_several_header_lines_is_one_list(client: AsyncClient) -> None:
    user = await signed_up(client)
    url = f"{USERS}/{user.id}"
    tag = (await client.get(url, headers=user.headers)).headers["etag"]
    auth = list(user.headers.items())

    read = await client.get(url, headers=[*auth, ("If-None-Match", '"0"'), ("If-None-Match", tag)])
    patch = await client.patch(
        url, json={"nickname": "Lines"}, headers=[*auth, ("If-Match", '"0"'), ("If-Match", tag)]
    )

    assert read.status_code == 304
    assert patch.status_code == 200, patch.text


async def test_a_patch_with_a_stale_if_match_is_412_and_changes_nothing(
    client: AsyncClient, stack: ServerStack
) -> None:
    user = await signed_up(client)
    url = f"{USERS}/{user.id}"
    stale = (await client.get(url, headers=user.headers)).headers["etag"]
    current = await client.patch(
        url, json={"nickname": "First"}, headers=user.headers | {"If-Match": stale}
    )

    refused = await client.patch(
        url, json={"nickname": "Second"}, headers=user.headers | {"If-Match": stale}
    )
    empty = await client.patch(url, json={}, headers=user.headers | {"If-Match": stale})
    beyond = await client.patch(  # no row version is this large
        url, json={"nickname": "Big"}, headers=user.headers | {"If-Match": '"3000000000"'}
    )
    weak = await client.patch(
        url,
        json={"nickname": "Third"},
        headers=user.headers | {"If-Match": f"W/{current.headers['etag']}"},
    )
    # Strong comparison is character by character: "02" is not the tag "2".
    padded = await client.patch(
        url,
        json={"nickname": "Padded"},
        headers=user.headers | {"If-Match": current.headers["etag"].replace('"', '"0', 1)},
    )
    matching = await client.patch(
        url,
        json={"nickname": "Fourth"},
        headers=user.headers | {"If-Match": current.headers["etag"]},
    )

    assert current.status_code == 200
    assert current.headers["etag"] != stale
    for response in (refused, empty, beyond, weak, padded):
        assert response.status_code == 412, response.text
        assert response.json()["error_code"] == "PRECONDITION_FAILED"
    assert matching.status_code == 200
    assert stack.primary.psql(f"SELECT nickname, version FROM users WHERE id = {user.id}") == (
        f"Fourth|{matching.json()['version']}"
    )


async def test_a_delete_with_a_stale_if_match_is_412_and_deletes_nothing(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    user = await signed_up(client)
    url = f"{USERS}/{user.id}"
    stale = (await client.get(url, headers=user.headers)).headers["etag"]
    changed = await client.patch(url, json={"nickname": "Moved"}, headers=user.headers)
    mine = {"password": PASSWORD}

    by_admin = await client.delete(url, headers=admin.headers | {"If-Match": stale})
    by_self = await client.request(
        "DELETE", f"{USERS}/me", json=mine, headers=user.headers | {"If-Match": stale}
    )
    live = f"SELECT deleted_at IS NULL FROM users WHERE id = {user.id}"
    assert stack.primary.psql(live) == "t"
    current = await client.request(
        "DELETE",
        f"{USERS}/me",
        json=mine,
        headers=user.headers | {"If-Match": changed.headers["etag"]},
    )

    assert by_admin.status_code == 412
    assert by_self.status_code == 412
    assert by_self.json()["error_code"] == "PRECONDITION_FAILED"
    assert current.status_code == 204
    assert stack.primary.psql(live) == "f"


async def test_a_patch_changing_the_email_is_all_or_nothing(
    client: AsyncClient, stack: ServerStack
) -> None:
    user = await signed_up(client)
    other = await signed_up(client)
    url = f"{USERS}/{user.id}"
    stale = (await client.get(url, headers=user.headers)).headers["etag"]
    assert (await client.patch(url, json={"nickname": "Now"}, headers=user.headers)).is_success
    change = {"nickname": "Later", "current_password": user.password}

    outdated = await client.patch(
        url,
        json=change | {"email": unique_email()},
        headers=user.headers | {"If-Match": stale},
    )
    taken = await client.patch(url, json=change | {"email": other.email}, headers=user.headers)

    assert outdated.status_code == 412, outdated.text
    assert taken.status_code == 409, taken.text
    # Neither the nickname nor a confirmation link (whose mail would follow the commit) stayed.
    assert stack.primary.psql(f"SELECT nickname FROM users WHERE id = {user.id}") == "Now"
    assert (
        stack.primary.psql(
            f"SELECT count(*) FROM email_tokens WHERE user_id = {user.id}"
            " AND purpose = 'change_email'"
        )
        == "0"
    )


async def test_two_clients_racing_with_the_same_if_match_one_wins(
    app: FastAPI, stack: ServerStack
) -> None:
    async with (
        AsyncClient(transport=ASGITransport(app=app), base_url="http://a") as one,
        AsyncClient(transport=ASGITransport(app=app), base_url="http://b") as two,
    ):
        user = await signed_up(one)
        url = f"{USERS}/{user.id}"
        tag = (await one.get(url, headers=user.headers)).headers["etag"]

        responses = await asyncio.gather(
            *(
                http.patch(url, json={"nickname": name}, headers=user.headers | {"If-Match": tag})
                for http, name in ((one, "One"), (two, "Two"))
            )
        )

    assert sorted(r.status_code for r in responses) == [200, 412]
    winner = next(r for r in responses if r.status_code == 200).json()
    row = stack.primary.psql(f"SELECT nickname, version FROM users WHERE id = {user.id}")
    assert row == f"{winner['nickname']}|{winner['version']}"


# Cache-Control and Vary


def is_personal(response: Response) -> bool:
    vary = {v.strip().lower() for v in ",".join(response.headers.get_list("vary")).split(",")}
    return response.headers["cache-control"] == "private, no-cache" and "authorization" in vary


async def test_personal_responses_are_private_and_vary_by_authorization(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    user: Account = await signed_up(client)
    registered = user.responses[0]
    tag = (await client.get(f"{USERS}/{user.id}", headers=user.headers)).headers["etag"]
    queued = await client.post(f"{USERS}/{user.id}/verification-email", headers=admin.headers)
    responses = {
        "register": registered,
        "me": await client.get(f"{USERS}/me", headers=user.headers),
        "user": await client.get(f"{USERS}/{user.id}", headers=user.headers),
        "not modified": await client.get(
            f"{USERS}/{user.id}", headers=user.headers | {"If-None-Match": tag}
        ),
        "patch": await client.patch(
            f"{USERS}/{user.id}", json={"nickname": "Private"}, headers=user.headers
        ),
        "list": await client.get(USERS, headers=admin.headers),
        "roles": await client.get("/api/v1/roles", headers=admin.headers),
        "verification mail": queued,
        "sessions": await client.get("/api/v1/auth/sessions", headers=user.headers),
        "task": await client.get(
            f"/api/v1/tasks/{queued.json()['task_id']}", headers=admin.headers
        ),
        "error": await client.get(f"{USERS}/999999999", headers=admin.headers),
    }

    for name, response in responses.items():
        assert response.status_code < 500, (name, response.text)
        assert is_personal(response), (name, dict(response.headers))


async def test_token_responses_are_never_stored(client: AsyncClient) -> None:
    user = await signed_up(client)
    login = user.responses[1]
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": user.refresh_token}
    )

    for response in (login, refreshed):
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"


# Idempotency-Key


async def test_the_same_key_and_body_replays_the_first_answer(
    client: AsyncClient, stack: ServerStack
) -> None:
    body = registration()
    headers = {"Idempotency-Key": "signup-1"}

    first = await client.post(USERS, json=body, headers=headers)
    again = await client.post(USERS, json=body, headers=headers)
    other_body = await client.post(USERS, json=body | {"nickname": "Other"}, headers=headers)

    assert first.status_code == 201
    assert "idempotency-replayed" not in first.headers
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["idempotency-replayed"] == "true"
    assert other_body.status_code == 422
    assert other_body.json()["error_code"] == "IDEMPOTENCY_KEY_REUSED"
    count = stack.primary.psql(f"SELECT count(*) FROM users WHERE email = '{body['email']}'")
    assert count == "1"


async def test_the_same_json_written_otherwise_replays_too(
    client: AsyncClient, stack: ServerStack
) -> None:
    body = registration()
    headers = {"Idempotency-Key": "same-json", "content-type": "application/json"}
    # A retry serialised by another library: other key order, other whitespace.
    reordered = orjson.dumps(dict(reversed(body.items()))).replace(b",", b", ")

    first = await client.post(USERS, content=orjson.dumps(body), headers=headers)
    again = await client.post(USERS, content=reordered, headers=headers)

    assert first.status_code == 201
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["idempotency-replayed"] == "true"
    count = stack.primary.psql(f"SELECT count(*) FROM users WHERE email = '{body['email']}'")
    assert count == "1"


async def test_a_key_s_record_holds_no_plain_hash_of_the_body(
    client: AsyncClient, stack: ServerStack
) -> None:
    body = registration()
    content = orjson.dumps(body)
    headers = {"Idempotency-Key": "stored", "content-type": "application/json"}

    response = await client.post(USERS, content=content, headers=headers)

    assert response.status_code == 201
    cache = redis.Redis.from_url(stack.redis.url_for(0))
    stored = str([cache.get(key) for key in cache.scan_iter("*idempotency:*")])
    assert "fingerprint" in stored
    # The body holds the password: a plain SHA-256 of it could be brute-forced offline.
    assert hashlib.sha256(content).hexdigest() not in stored


async def test_keys_are_scoped_per_caller(app: FastAPI, client: AsyncClient) -> None:
    headers = {"Idempotency-Key": "shared-key"}
    elsewhere = ASGITransport(app=app, client=("10.9.8.7", 4321))
    async with AsyncClient(transport=elsewhere, base_url="http://test") as other:
        mine = await client.post(USERS, json=registration(), headers=headers)
        theirs = await other.post(USERS, json=registration(), headers=headers)

    assert mine.status_code == theirs.status_code == 201
    assert "idempotency-replayed" not in theirs.headers
    assert mine.json()["id"] != theirs.json()["id"]


async def test_eight_concurrent_identical_requests_create_one_user(
    client: AsyncClient, stack: ServerStack
) -> None:
    body = registration()
    headers = {"Idempotency-Key": "eight-at-once"}

    responses = await asyncio.gather(
        *(client.post(USERS, json=body, headers=headers) for _ in range(8))
    )

    executed = [
        r for r in responses if r.status_code == 201 and "idempotency-replayed" not in r.headers
    ]
    assert len(executed) == 1
    for response in responses:
        if response is executed[0]:
            continue
        if response.status_code == 201:
            assert response.json() == executed[0].json()
        else:
            assert response.status_code == 409, response.text
            assert response.json()["error_code"] == "IDEMPOTENCY_KEY_IN_USE"
    count = stack.primary.psql(f"SELECT count(*) FROM users WHERE email = '{body['email']}'")
    assert count == "1"


async def test_a_failed_request_does_not_keep_its_key(client: AsyncClient) -> None:
    taken = await signed_up(client)
    headers = {"Idempotency-Key": "after-a-failure"}
    body = registration(email=taken.email)

    duplicate = await client.post(USERS, json=body, headers=headers)
    retried = await client.post(
        USERS, json=body | {"email": registration()["email"]}, headers=headers
    )

    assert duplicate.status_code == 409
    assert duplicate.json()["error_code"] == "USER__DUPLICATE_EMAIL"
    assert retried.status_code == 201


def add_user_route(
    app: FastAPI, after_commit_work: Callable[[], Awaitable[None]] | None = None
) -> None:
    """`POST /test-only/users {"email"}` on the test's own app: a keyed registration, with
    `after_commit_work` registered in its transaction."""

    @Transactional()
    async def create(email: str) -> User:
        user = new_user(email)
        session.add(user)
        await session.flush()
        if after_commit_work is not None:
            await after_commit(after_commit_work)
        return user

    @app.post("/test-only/users")
    async def make(request: Request, idempotency: Idempotency) -> StarletteResponse:
        email = (await request.json())["email"]
        return await idempotency.run(lambda: create(email), UserRead, 201)


async def test_a_request_cancelled_after_its_commit_keeps_its_key(stack: ServerStack) -> None:
    from app.server import create_app

    app = create_app()
    cancelled = True

    async def publish() -> None:  # e.g. a task send cut short by the server's shutdown timeout
        if cancelled:
            raise asyncio.CancelledError

    add_user_route(app, after_commit_work=publish)
    email, headers = unique_email(), {"Idempotency-Key": "committed-then-cancelled"}
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        with pytest.raises(asyncio.CancelledError):
            await http.post("/test-only/users", json={"email": email}, headers=headers)
        cancelled = False
        retried = await http.post("/test-only/users", json={"email": email}, headers=headers)

    # The user was committed: the retry replays the answer instead of registering them twice.
    assert retried.status_code == 201, retried.text
    assert retried.headers["idempotency-replayed"] == "true"
    assert stack.primary.psql(f"SELECT count(*) FROM users WHERE email = '{email}'") == "1"


async def test_a_retry_after_a_503_from_work_after_the_commit_replays_the_saved_answer(
    stack: ServerStack,
) -> None:
    from app.server import create_app

    app = create_app()
    announcing_fails = True

    async def announce() -> None:  # e.g. a cache removal or a task the broker refused
        if announcing_fails:
            raise ChangeNotPropagatedException()

    add_user_route(app, after_commit_work=announce)
    email, headers = unique_email(), {"Idempotency-Key": "committed-then-503"}
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        first = await http.post("/test-only/users", json={"email": email}, headers=headers)
        announcing_fails = False
        retried = await http.post("/test-only/users", json={"email": email}, headers=headers)

    assert first.status_code == 503
    assert first.json()["error_code"] == "CHANGE_NOT_PROPAGATED"
    assert retried.status_code == 201, retried.text
    assert retried.headers["idempotency-replayed"] == "true"
    assert retried.json()["email"] == email
    assert stack.primary.psql(f"SELECT count(*) FROM users WHERE email = '{email}'") == "1"


async def test_a_key_works_on_an_app_without_the_auth_middleware(stack: ServerStack) -> None:
    # Keyed by client address there, as for anonymous callers.
    app = FastAPI(middleware=[Middleware(SQLAlchemyMiddleware)])
    add_user_route(app)
    email, headers = unique_email(), {"Idempotency-Key": "no-auth-middleware"}
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        first = await http.post("/test-only/users", json={"email": email}, headers=headers)
        again = await http.post("/test-only/users", json={"email": email}, headers=headers)

    assert first.status_code == 201, first.text
    assert again.status_code == 201
    assert again.headers["idempotency-replayed"] == "true"
    assert stack.primary.psql(f"SELECT count(*) FROM users WHERE email = '{email}'") == "1"


async def test_with_redis_down_a_request_with_a_key_is_refused_and_nothing_is_written(
    client: AsyncClient, stack: ServerStack
) -> None:
    body = registration()
    stack.redis.stop()
    try:
        response = await client.post(USERS, json=body, headers={"Idempotency-Key": "offline"})
    finally:
        stack.redis.start()

    assert response.status_code == 503
    assert response.json()["error_code"] == "IDEMPOTENCY_UNAVAILABLE"
    count = stack.primary.psql(f"SELECT count(*) FROM users WHERE email = '{body['email']}'")
    assert count == "0"


async def test_a_malformed_key_is_422(client: AsyncClient) -> None:
    response = await client.post(USERS, json=registration(), headers={"Idempotency-Key": "x" * 256})

    assert response.status_code == 422
    assert ["header", "Idempotency-Key"] in [e["loc"] for e in response.json()["errors"]]


async def test_two_keys_are_422_and_nothing_is_written(
    client: AsyncClient, stack: ServerStack
) -> None:
    body = registration()
    headers = [("Idempotency-Key", "first"), ("Idempotency-Key", "second")]

    response = await client.post(USERS, json=body, headers=headers)

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    count = stack.primary.psql(f"SELECT count(*) FROM users WHERE email = '{body['email']}'")
    assert count == "0"


# Body limit


class CountingBody:
    """A request body of `total` bytes in 64 KiB chunks that counts what the server pulled."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunk = b" " * (64 * 1024)
        while self.sent < self.total:
            self.sent += len(chunk)
            yield chunk


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_20_mb_body_is_refused_after_at_most_about_1_mib(
    client: AsyncClient, declared: bool
) -> None:
    body = CountingBody(20 * MIB)
    headers = {"Content-Type": "application/json"}
    if declared:
        headers["Content-Length"] = str(body.total)

    response = await client.post("/api/v1/auth/login", content=body, headers=headers)

    assert response.status_code == 413
    assert response.json()["error_code"] == "REQUEST_TOO_LARGE"
    assert "x-request-id" in response.headers
    assert body.sent <= (0 if declared else MIB + 64 * 1024)


async def test_a_body_at_the_limit_is_read(client: AsyncClient) -> None:
    padding = " " * (MIB - 100)
    content = f'{{"email": "a@example.com", "password": "wrong password"}}{padding}'.encode()

    response = await client.post(
        "/api/v1/auth/login", content=content, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 401


# Docs behind basic auth


@pytest.fixture
async def docs_client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AsyncClient]:
    from app.server import create_app

    monkeypatch.setenv("DOCS_BASIC_AUTH", "docs:open sesame")
    load_config()
    try:
        transport = ASGITransport(app=create_app())
        async with AsyncClient(transport=transport, base_url="http://t") as http:
            yield http
    finally:
        monkeypatch.undo()
        load_config()


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
async def test_docs_need_the_basic_credentials(docs_client: AsyncClient, path: str) -> None:
    def basic(credentials: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}

    anonymous = await docs_client.get(path)
    wrong = await docs_client.get(path, headers=basic("docs:guess"))
    right = await docs_client.get(path, headers=basic("docs:open sesame"))
    api = await docs_client.get("/health")

    for refused in (anonymous, wrong):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic ")
    assert right.status_code == 200
    assert api.status_code == 200


async def test_without_docs_basic_auth_the_docs_are_open(client: AsyncClient) -> None:
    statuses = [(await client.get(path)).status_code for path in ("/docs", "/openapi.json")]

    assert statuses == [200, 200]
