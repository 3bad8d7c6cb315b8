"""Sessions a user can see and end, the refresh cookie mode, and the multi-tab reuse grace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from tests.helpers import Account, login, signed_up
from tests.servers import ServerStack


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def me_status(client: AsyncClient, access_token: str) -> int:
    return (await client.get("/api/v1/users/me", headers=bearer(access_token))).status_code


async def refresh(client: AsyncClient, token: str) -> int:
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": token})
    return response.status_code


async def test_sessions_lists_each_login_and_one_can_be_ended(client: AsyncClient) -> None:
    account = await signed_up(client)
    other = await client.post(
        "/api/v1/auth/login",
        json={"email": account.email, "password": account.password},
        headers={"User-Agent": "second-tab/1.0"},
    )
    other_tokens = other.json()

    listed = await client.get("/api/v1/auth/sessions", headers=account.headers)
    sessions = listed.json()["items"]
    second = next(s for s in sessions if s["user_agent"] == "second-tab/1.0")
    ended = await client.delete(f"/api/v1/auth/sessions/{second['id']}", headers=account.headers)
    again = await client.delete(f"/api/v1/auth/sessions/{second['id']}", headers=account.headers)

    assert listed.status_code == 200
    assert len(sessions) == 2
    assert [s["current"] for s in sessions].count(True) == 1
    assert second["current"] is False
    assert set(second) == {"id", "created_at", "last_used_at", "user_agent", "ip", "current"}
    assert second["ip"] == "127.0.0.1"
    assert ended.status_code == 204
    # Ending it again (the retry of an end that got a 503) succeeds and spreads it again.
    assert again.status_code == 204
    assert await me_status(client, other_tokens["access_token"]) == 401
    assert await refresh(client, other_tokens["refresh_token"]) == 401
    assert (await client.get("/api/v1/users/me", headers=account.headers)).status_code == 200
    remaining = (await client.get("/api/v1/auth/sessions", headers=account.headers)).json()["items"]
    assert [s["id"] for s in remaining] != [second["id"]]
    assert len(remaining) == 1


async def test_nobody_ends_or_sees_another_users_session(client: AsyncClient) -> None:
    owner, intruder = await signed_up(client), await signed_up(client)
    owner_sessions = await client.get("/api/v1/auth/sessions", headers=owner.headers)
    owner_session = owner_sessions.json()["items"][0]

    response = await client.delete(
        f"/api/v1/auth/sessions/{owner_session['id']}", headers=intruder.headers
    )
    seen = (await client.get("/api/v1/auth/sessions", headers=intruder.headers)).json()["items"]

    assert response.status_code == 404
    assert owner_session["id"] not in {s["id"] for s in seen}
    assert (await client.get("/api/v1/users/me", headers=owner.headers)).status_code == 200


async def test_logout_all_ends_every_session(client: AsyncClient) -> None:
    account = await signed_up(client)
    second = (await login(client, account.email)).json()

    response = await client.post("/api/v1/auth/logout-all", headers=account.headers)

    assert response.status_code == 204
    for access in (account.access_token, second["access_token"]):
        assert (await client.get("/api/v1/users/me", headers=bearer(access))).status_code == 401
    for refresh_token in (account.refresh_token, second["refresh_token"]):
        assert await refresh(client, refresh_token) == 401
    fresh = (await login(client, account.email)).json()
    listed = await client.get("/api/v1/auth/sessions", headers=bearer(fresh["access_token"]))
    assert len(listed.json()["items"]) == 1


async def test_sessions_are_a_list_like_every_other(client: AsyncClient) -> None:
    account = await signed_up(client)
    second = (await login(client, account.email)).json()
    headers = bearer(second["access_token"])

    first_page = await client.get("/api/v1/auth/sessions", params={"limit": 1}, headers=headers)
    cursor = first_page.json()["next_cursor"]
    rest = await client.get(
        "/api/v1/auth/sessions", params={"limit": 1, "cursor": cursor}, headers=headers
    )
    oldest_first = await client.get(
        "/api/v1/auth/sessions", params={"sort": "created_at"}, headers=headers
    )
    unknown = await client.get("/api/v1/auth/sessions", params={"ip": "x"}, headers=headers)
    anonymous = await client.get("/api/v1/auth/sessions", params={"ip": "x"})

    # Newest first: the session of these headers, then the one signing up started.
    newest = first_page.json()["items"]
    assert [s["current"] for s in newest] == [True]
    assert rest.json() == {
        "items": [s for s in oldest_first.json()["items"] if not s["current"]],
        "next_cursor": None,
        "page": None,
        "total": None,
    }
    assert [s["id"] for s in oldest_first.json()["items"]] == [
        rest.json()["items"][0]["id"],
        newest[0]["id"],
    ]
    assert unknown.status_code == 422
    assert anonymous.status_code == 401  # who asks is checked before what they ask


async def test_strict_rotation_by_default_a_second_use_ends_the_session(
    client: AsyncClient,
) -> None:
    account = await signed_up(client)

    first = await refresh(client, account.refresh_token)
    second = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
    )

    assert first == 200
    assert second.status_code == 401
    assert second.json()["error_code"] == "AUTH__REFRESH_TOKEN_REUSED"


async def test_within_the_grace_two_tabs_get_the_same_new_pair(
    client: AsyncClient, stack: ServerStack, settings: Callable[..., None]
) -> None:
    settings(REFRESH_TOKEN_REUSE_GRACE_SECONDS=30)
    account = await signed_up(client)

    tabs = await asyncio.gather(
        *(
            client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
            for _ in range(2)
        )
    )

    assert [tab.status_code for tab in tabs] == [200, 200]
    assert tabs[0].json() == tabs[1].json()
    pair = tabs[0].json()
    assert await me_status(client, pair["access_token"]) == 200
    # Once the grace is over, the old token is a replay again and ends the session.
    stack.primary.psql(
        "UPDATE auth_sessions SET rotated_at = rotated_at - interval '31 seconds' "
        f"WHERE user_id = {account.id}"
    )
    late = await client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert late.status_code == 401
    assert late.json()["error_code"] == "AUTH__REFRESH_TOKEN_REUSED"
    assert await refresh(client, pair["refresh_token"]) == 401


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[AsyncClient]:
    """A client of its own, keeping cookies as a browser does."""
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        yield http


async def test_cookie_mode_keeps_the_refresh_token_out_of_reach_of_scripts(
    client: AsyncClient, browser: AsyncClient, settings: Callable[..., None]
) -> None:
    account = await signed_up(client)
    settings(REFRESH_TOKEN_COOKIE=True)

    logged_in = await browser.post(
        "/api/v1/auth/login", json={"email": account.email, "password": account.password}
    )
    set_cookies = logged_in.headers.get_list("set-cookie")
    csrf = browser.cookies["csrf_token"]
    without_header = await browser.post("/api/v1/auth/refresh")
    wrong_header = await browser.post("/api/v1/auth/refresh", headers={"X-CSRF-Token": "guess"})
    refreshed = await browser.post("/api/v1/auth/refresh", headers={"X-CSRF-Token": csrf})

    assert logged_in.status_code == 200
    assert "refresh_token" not in logged_in.json()
    refresh_cookie = next(c for c in set_cookies if c.startswith("refresh_token="))
    assert "HttpOnly" in refresh_cookie
    assert "SameSite=strict" in refresh_cookie or "SameSite=Strict" in refresh_cookie
    assert "Path=/api/v1/auth" in refresh_cookie
    csrf_cookie = next(c for c in set_cookies if c.startswith("csrf_token="))
    assert "HttpOnly" not in csrf_cookie
    for response in (without_header, wrong_header):
        assert response.status_code == 403
        assert response.json()["error_code"] == "AUTH__CSRF"
    assert refreshed.status_code == 200, refreshed.text
    assert "refresh_token" not in refreshed.json()
    access = refreshed.json()["access_token"]
    assert browser.cookies["refresh_token"] != ""

    logged_out = await browser.post("/api/v1/auth/logout", headers=bearer(access))
    assert logged_out.status_code == 204
    assert "refresh_token" not in browser.cookies
    assert "csrf_token" not in browser.cookies
    after = await browser.post("/api/v1/auth/refresh", headers={"X-CSRF-Token": csrf})
    assert after.status_code == 401


async def test_cookie_mode_still_takes_a_token_in_the_body(
    client: AsyncClient, settings: Callable[..., None]
) -> None:
    account: Account = await signed_up(client)
    settings(REFRESH_TOKEN_COOKIE=True)

    assert await refresh(client, account.refresh_token) == 200
