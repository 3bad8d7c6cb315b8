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


def test_the_app_serves_exactly_what_include_router_would() -> None:
    """The flat registration (api/__init__.py) against FastAPI's own include_router: the same
    operations, parameters, security, responses and schemas. A FastAPI release that changes
    what a route carries fails here."""
    from fastapi.routing import APIRoute

    from api import answer_head
    from api.health import router as health_router
    from api.v1 import V1_PREFIX, v1_routers
    from app.server import create_app

    served = create_app()
    included = FastAPI(title=served.title)
    included.include_router(health_router)
    for router in v1_routers:
        included.include_router(router, prefix=V1_PREFIX)
    answer_head(included)

    document, expected = served.openapi(), included.openapi()
    assert document["paths"] == expected["paths"]
    assert document["components"] == expected["components"]
    flat = [route for route in served.routes if isinstance(route, APIRoute)]
    gets = {route.path for route in flat if "GET" in (route.methods or ())}
    heads = [route for route in flat if route.methods == {"HEAD"}]
    assert sorted(route.path for route in heads) == sorted(gets)  # one HEAD per GET path
    assert len(flat) - len(heads) == sum(len(r.routes) for r in [health_router, *v1_routers])
    assert all(route.dependency_overrides_provider is served for route in flat)
