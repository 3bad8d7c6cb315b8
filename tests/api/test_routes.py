"""Routes are plain FastAPI routes: overriding a guard reaches them."""

from __future__ import annotations

from fastapi import FastAPI, Request
from httpx import AsyncClient

from core.fastapi.schemas.current_user import CurrentUser
from tests.helpers import signed_up


async def test_dependency_overrides_reach_the_routes(app: FastAPI, client: AsyncClient) -> None:
    from api.v1.users import authenticated

    account = await signed_up(client)

    async def someone_else(request: Request) -> CurrentUser:
        return CurrentUser(id=account.id + 1_000_000)

    app.dependency_overrides[authenticated] = someone_else
    try:
        response = await client.get("/api/v1/users/me", headers=account.headers)
    finally:
        app.dependency_overrides.clear()

    assert response.status_code == 404  # the override's user, who does not exist
    assert (await client.get("/api/v1/users/me", headers=account.headers)).json()["id"] == (
        account.id
    )
