from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import bcrypt
import jwt
import pytest
from httpx import AsyncClient

from core.config import config
from core.security.tokens import encode_token
from tests.helpers import PASSWORD, Account, login, scrape, signed_up, unique_email, value
from tests.servers import ServerStack

INVALID_TOKEN_CHALLENGE = 'Bearer error="invalid_token"'


async def me(client: AsyncClient, authorization: str) -> tuple[int, str, str]:
    response = await client.get("/api/v1/users/me", headers={"Authorization": authorization})
    body = response.json()
    return (
        response.status_code,
        body.get("error_code", ""),
        response.headers.get("www-authenticate", ""),
    )


async def test_login_returns_a_bearer_pair_that_works(client: AsyncClient) -> None:
    account = await signed_up(client)
    body = account.responses[-1].json()

    assert body["token_type"] == "bearer"
    assert body["expires_in"] == config.ACCESS_TOKEN_EXPIRE_MINUTES * 60
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    response = await client.get("/api/v1/users/me", headers=account.headers)
    assert response.status_code == 200
    assert response.json()["id"] == account.id


async def test_unknown_email_and_wrong_password_look_the_same(client: AsyncClient) -> None:
    account = await signed_up(client)

    wrong_password = await login(client, account.email, "not the password")
    unknown_email = await login(client, unique_email(), "not the password")

    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()
    assert wrong_password.json()["error_code"] == "AUTH__INVALID_CREDENTIALS"
    assert wrong_password.headers["www-authenticate"] == "Bearer"


async def test_no_token_is_anonymous_and_protected_routes_say_401(client: AsyncClient) -> None:
    response = await client.get("/api/v1/users/me")

    assert response.status_code == 401
    assert response.json()["error_code"] == "UNAUTHORIZED"
    assert response.headers["www-authenticate"] == "Bearer"
    # Public routes work without one.
    assert (await client.get("/health")).status_code == 200


def forged(claims_override: dict[str, object], key: str | None = None) -> str:
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": "1",
        "type": "access",
        "jti": "j",
        "sid": "s",
        "ver": 0,
        "iat": now,
        "exp": now + timedelta(minutes=5),
    } | claims_override
    return jwt.encode(claims, key or config.JWT_SECRET_KEY, algorithm="HS256")


def unsigned_token() -> str:
    header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    payload = jwt.utils.base64url_encode(b'{"sub":"1","type":"access","exp":9999999999}').decode()
    return f"{header}.{payload}."


# Built lazily: the signing key is the test session's, known only once its settings are loaded.
BAD_AUTHORIZATIONS: dict[str, tuple[Callable[[], str], str]] = {
    "scheme-only": (lambda: "Bearer", "INVALID_TOKEN"),
    "empty-token": (lambda: "Bearer ", "INVALID_TOKEN"),
    "basic": (lambda: "Basic dXNlcjpwYXNz", "INVALID_TOKEN"),
    "garbage": (lambda: "Bearer not.a.jwt", "INVALID_TOKEN"),
    "bad-signature": (
        lambda: f"Bearer {forged({}, key='some-other-key-that-is-long-enough-for-hs256')}",
        "INVALID_TOKEN",
    ),
    "alg-none": (lambda: f"Bearer {unsigned_token()}", "INVALID_TOKEN"),
    "expired": (
        lambda: f"Bearer {forged({'exp': datetime.now(UTC) - timedelta(seconds=5)})}",
        "TOKEN_EXPIRED",
    ),
    "refresh-as-access": (lambda: f"Bearer {forged({'type': 'refresh'})}", "INVALID_TOKEN"),
    "bad-subject": (lambda: f"Bearer {forged({'sub': 'not-a-number'})}", "INVALID_TOKEN"),
}


@pytest.mark.parametrize("kind", BAD_AUTHORIZATIONS)
async def test_a_bad_token_is_401_at_once_never_anonymous(client: AsyncClient, kind: str) -> None:
    make_authorization, error_code = BAD_AUTHORIZATIONS[kind]

    # /health needs no authentication, yet a bad token is still refused there.
    response = await client.get("/health", headers={"Authorization": make_authorization()})

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["error_code"] == error_code
    assert response.headers["www-authenticate"] == INVALID_TOKEN_CHALLENGE


async def test_the_refresh_token_of_a_real_login_is_not_an_access_token(
    client: AsyncClient,
) -> None:
    account = await signed_up(client)

    assert await me(client, f"Bearer {account.refresh_token}") == (
        401,
        "INVALID_TOKEN",
        INVALID_TOKEN_CHALLENGE,
    )


async def test_a_token_for_a_user_that_does_not_exist_is_revoked(client: AsyncClient) -> None:
    token, _ = encode_token(user_id=987654321, token_type="access", session_id="s", token_version=0)

    assert (await me(client, f"Bearer {token}"))[:2] == (401, "TOKEN_REVOKED")


async def test_a_token_that_worked_is_refused_once_it_expires(client: AsyncClient) -> None:
    account = await signed_up(client)
    lifetime = timedelta(minutes=config.ACCESS_TOKEN_EXPIRE_MINUTES)
    token, claims = encode_token(
        user_id=account.id,
        token_type="access",
        session_id="short-lived",
        token_version=0,
        now=datetime.now(UTC) - lifetime + timedelta(seconds=1.5),
    )
    assert (await me(client, f"Bearer {token}"))[0] == 200

    # Verified tokens are remembered by the process; their expiry is still checked each time.
    await asyncio.sleep(max(0.0, (claims.expires_at - datetime.now(UTC)).total_seconds()) + 0.1)

    assert (await me(client, f"Bearer {token}"))[:2] == (401, "TOKEN_EXPIRED")


async def test_a_token_from_a_host_whose_clock_is_ahead_works_at_once(client: AsyncClient) -> None:
    # Another API process whose clock runs a little fast issued it: "issued in the future".
    account = await signed_up(client)
    token, _ = encode_token(
        user_id=account.id,
        token_type="access",
        session_id="from-a-fast-clock",
        token_version=0,
        now=datetime.now(UTC) + timedelta(seconds=30),
    )

    assert (await me(client, f"Bearer {token}"))[0] == 200


async def test_a_logged_out_token_from_a_fast_clock_stays_refused_until_it_expires(
    client: AsyncClient, stack: ServerStack
) -> None:
    account = await signed_up(client)
    session_id = jwt.decode(account.access_token, options={"verify_signature": False})["sid"]
    lifetime = timedelta(minutes=config.ACCESS_TOKEN_EXPIRE_MINUTES)
    # Issued a lifetime ago by a host 30 s fast: it expires 28 s from now.
    token, _ = encode_token(
        user_id=account.id,
        token_type="access",
        session_id=session_id,
        token_version=0,
        now=datetime.now(UTC) - lifetime + timedelta(seconds=28),
    )
    assert (await me(client, f"Bearer {token}"))[0] == 200
    assert (await client.post("/api/v1/auth/logout", headers=account.headers)).status_code == 204
    # The logout came one lifetime and a second ago, by this host's clock.
    stack.primary.psql(
        "UPDATE auth_sessions SET revoked_at = now() - interval "
        f"'{int(lifetime.total_seconds()) + 1} seconds' WHERE id = '{session_id}'"
    )

    assert (await me(client, f"Bearer {token}"))[:2] == (401, "TOKEN_REVOKED")


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(client: AsyncClient) -> None:
    account = await signed_up(client)

    first = await client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != account.refresh_token
    assert (await me(client, f"Bearer {rotated['access_token']}"))[0] == 200

    replay = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    assert replay.status_code == 401
    assert replay.json()["error_code"] == "AUTH__REFRESH_TOKEN_REUSED"

    # The thief's replay ended the session for everyone holding its tokens.
    after = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}
    )
    assert after.status_code == 401
    assert (await me(client, f"Bearer {rotated['access_token']}"))[:2] == (401, "TOKEN_REVOKED")
    assert (await me(client, f"Bearer {account.access_token}"))[:2] == (401, "TOKEN_REVOKED")


async def test_two_refreshes_of_one_token_at_once_give_at_most_one_pair(
    client: AsyncClient,
) -> None:
    account = await signed_up(client)

    responses = await asyncio.gather(
        *(
            client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
            for _ in range(2)
        )
    )

    assert sorted(r.status_code for r in responses) in ([200, 401], [401, 401])


async def test_refresh_with_garbage_is_401(client: AsyncClient) -> None:
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": "nope"})

    assert response.status_code == 401
    assert response.json()["error_code"] == "INVALID_TOKEN"


async def test_logout_kills_the_access_token_and_the_refresh_family(client: AsyncClient) -> None:
    account = await signed_up(client)
    other_session = (await login(client, account.email)).json()

    response = await client.post("/api/v1/auth/logout", headers=account.headers)

    assert response.status_code == 204
    assert (await me(client, f"Bearer {account.access_token}"))[:2] == (401, "TOKEN_REVOKED")
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    assert refresh.status_code == 401
    # Other sessions of the same user are not affected.
    assert (await me(client, f"Bearer {other_session['access_token']}"))[0] == 200


async def test_logout_needs_authentication(client: AsyncClient) -> None:
    assert (await client.post("/api/v1/auth/logout")).status_code == 401


async def test_repeated_failures_lock_that_account_only(client: AsyncClient) -> None:
    target, bystander = await signed_up(client), await signed_up(client)
    rejections_before = value(await scrape(client), "rate_limit_rejections_total")

    statuses = [(await login(client, target.email, "wrong guess")).status_code for _ in range(5)]
    locked = await login(client, target.email, PASSWORD)

    assert statuses == [401] * 5
    assert locked.status_code == 429
    assert locked.json()["error_code"] == "AUTH__TOO_MANY_ATTEMPTS"
    assert 0 < int(locked.headers["retry-after"]) <= 900
    # Hammering on, from the same address, does not lock anyone else out (within the route's
    # own limit of requests per address).
    for _ in range(40):
        assert (await login(client, target.email, "wrong guess")).status_code == 429
    assert (await login(client, bystander.email)).status_code == 200
    rejections = value(await scrape(client), "rate_limit_rejections_total")
    assert rejections == rejections_before + 41


async def test_many_accounts_failing_from_one_address_lock_the_address(
    client: AsyncClient,
) -> None:
    account = await signed_up(client)

    for _ in range(50):
        await login(client, unique_email(), "wrong guess")

    response = await login(client, account.email)
    assert response.status_code == 429
    assert "retry-after" in response.headers


async def test_throttling_holds_per_process_and_logins_work_while_redis_is_down(
    client: AsyncClient, stack: ServerStack, caplog: pytest.LogCaptureFixture
) -> None:
    guessed, other = await signed_up(client), await signed_up(client)
    before = [(await login(client, guessed.email, "wrong guess")).status_code for _ in range(3)]
    stack.redis.stop()
    try:
        statuses = [
            (await login(client, guessed.email, "wrong guess")).status_code for _ in range(5)
        ]
        # Never off, and no fresh guesses: counted on from the three this process made.
        assert before + statuses == [401] * 5 + [429] * 3
        assert caplog.text.count("rate limits are counted per process") == 1
        good = await login(client, other.email)
        assert good.status_code == 200
        # Without the cache, tokens are checked against the database.
        token = good.json()["access_token"]
        assert (await me(client, f"Bearer {token}"))[0] == 200
    finally:
        stack.redis.start()


async def test_a_legacy_bcrypt_hash_verifies_and_is_upgraded(
    client: AsyncClient, stack: ServerStack
) -> None:
    account = await signed_up(client)
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    stack.primary.psql(f"UPDATE users SET password_hash = '{legacy}' WHERE id = {account.id}")

    response = await login(client, account.email)

    assert response.status_code == 200
    stored = stack.primary.psql(f"SELECT password_hash FROM users WHERE id = {account.id}")
    assert stored.startswith("$argon2id$")
    assert (await login(client, account.email)).status_code == 200


async def test_a_legacy_bcrypt_hash_of_a_long_password_verifies_as_bcrypt_read_it(
    client: AsyncClient, stack: ServerStack
) -> None:
    account = await signed_up(client)
    long = "correct horse battery staple " * 4  # 116 bytes: bcrypt read the first 72
    legacy = bcrypt.hashpw(long.encode()[:72], bcrypt.gensalt(rounds=4)).decode()
    stack.primary.psql(f"UPDATE users SET password_hash = '{legacy}' WHERE id = {account.id}")
    typo = long[:100] + "X" + long[101:]  # wrong past byte 72, which bcrypt never read

    first = await login(client, account.email, typo)

    assert first.status_code == 200
    # Not upgraded: a hash of the whole of what was typed would make the typo the password.
    stored = stack.primary.psql(f"SELECT password_hash FROM users WHERE id = {account.id}")
    assert stored == legacy
    assert (await login(client, account.email, long)).status_code == 200


async def test_openapi_marks_protected_routes_with_the_bearer_scheme(
    client: AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()

    assert spec["components"]["securitySchemes"]["BearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    assert spec["paths"]["/api/v1/users/me"]["get"]["security"] == [{"BearerAuth": []}]
    assert "security" not in spec["paths"]["/api/v1/auth/login"]["post"]


async def account_with_permission(client: AsyncClient, admin: Account, permission: str) -> Account:
    account = await signed_up(client)
    role = f"role-{account.id}"
    created = await client.post(
        "/api/v1/roles", json={"name": role, "permissions": [permission]}, headers=admin.headers
    )
    assert created.status_code == 201
    granted = await client.put(
        f"/api/v1/users/{account.id}/roles", json={"roles": [role]}, headers=admin.headers
    )
    assert granted.status_code == 200
    return account


async def test_a_granted_permission_applies_on_the_next_request(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    reader, other = await signed_up(client), await signed_up(client)
    url = f"/api/v1/users/{other.id}"
    assert (await client.get(url, headers=reader.headers)).status_code == 403

    role = f"readers-{reader.id}"
    await client.post(
        "/api/v1/roles", json={"name": role, "permissions": ["users:read"]}, headers=admin.headers
    )
    await client.put(
        f"/api/v1/users/{reader.id}/roles", json={"roles": [role]}, headers=admin.headers
    )
    assert (await client.get(url, headers=reader.headers)).status_code == 200

    await client.put(f"/api/v1/users/{reader.id}/roles", json={"roles": []}, headers=admin.headers)
    assert (await client.get(url, headers=reader.headers)).status_code == 403


async def test_users_delete_permission_allows_deleting(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    plain = await signed_up(client)
    deleter = await account_with_permission(client, admin, "users:delete")
    victim = await signed_up(client)

    assert (await client.delete(f"/api/v1/users/{victim.id}")).status_code == 401
    assert (
        await client.delete(f"/api/v1/users/{victim.id}", headers=plain.headers)
    ).status_code == 403
    assert (
        await client.delete(f"/api/v1/users/{victim.id}", headers=deleter.headers)
    ).status_code == 204


async def test_roles_are_admin_only(client: AsyncClient, stack: ServerStack) -> None:
    user = await signed_up(client)

    assert (await client.get("/api/v1/roles")).status_code == 401
    assert (await client.get("/api/v1/roles", headers=user.headers)).status_code == 403
    forbidden = await client.post(
        "/api/v1/roles", json={"name": "x", "permissions": []}, headers=user.headers
    )
    assert forbidden.status_code == 403
    assert forbidden.json()["error_code"] == "FORBIDDEN"


async def test_role_validation_and_conflicts(client: AsyncClient, stack: ServerStack) -> None:
    admin = await signed_up(client, stack, admin=True)
    name = f"editors-{admin.id}"

    created = await client.post(
        "/api/v1/roles",
        json={"name": name, "permissions": ["posts:update", "posts:update", "users:read"]},
        headers=admin.headers,
    )
    duplicate = await client.post("/api/v1/roles", json={"name": name}, headers=admin.headers)
    bad_code = await client.post(
        "/api/v1/roles",
        json={"name": f"x{admin.id}", "permissions": ["everything"]},
        headers=admin.headers,
    )
    unknown = await client.put(
        f"/api/v1/users/{admin.id}/roles", json={"roles": ["no-such-role"]}, headers=admin.headers
    )
    missing_user = await client.put(
        "/api/v1/users/999999999/roles", json={"roles": []}, headers=admin.headers
    )
    listed = await client.get("/api/v1/roles", params={"name": name}, headers=admin.headers)

    assert created.status_code == 201
    assert created.json()["permissions"] == ["posts:update", "users:read"]
    assert duplicate.status_code == 409
    assert duplicate.json()["error_code"] == "ROLE__DUPLICATE_NAME"
    assert bad_code.status_code == 422
    assert unknown.status_code == 422
    assert unknown.json()["error_code"] == "ROLE__UNKNOWN"
    assert missing_user.status_code == 404
    assert [role["name"] for role in listed.json()["items"]] == [name]


async def test_changing_a_role_s_permissions_applies_to_its_holders_at_once(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    holder = await account_with_permission(client, admin, "posts:delete")
    other = await signed_up(client)
    url = f"/api/v1/users/{other.id}"
    assert (await client.get(url, headers=holder.headers)).status_code == 403
    role_id = next(
        role["id"]
        for role in (
            await client.get(
                "/api/v1/roles", params={"name": f"role-{holder.id}"}, headers=admin.headers
            )
        ).json()["items"]
        if role["name"] == f"role-{holder.id}"
    )

    changed = await client.patch(
        f"/api/v1/roles/{role_id}", json={"permissions": ["users:read"]}, headers=admin.headers
    )

    assert changed.status_code == 200
    assert changed.json()["permissions"] == ["users:read"]
    assert (await client.get(url, headers=holder.headers)).status_code == 200
    missing = await client.patch(
        "/api/v1/roles/999999999", json={"description": "x"}, headers=admin.headers
    )
    assert missing.status_code == 404
