"""The routes are registered on the app itself; they must serve what include_router would."""

from __future__ import annotations

from fastapi import FastAPI, Request
from httpx import AsyncClient

from api.health import router as health_router
from api.v1 import V1_PREFIX, v1_routers
from core.fastapi.schemas.current_user import CurrentUser
from tests.helpers import signed_up


def test_the_api_is_described_as_include_router_would_describe_it(app: FastAPI) -> None:
    reference = FastAPI(title=app.title)
    reference.include_router(health_router)
    for router in v1_routers:
        reference.include_router(router, prefix=V1_PREFIX)

    assert app.openapi() == reference.openapi()


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
