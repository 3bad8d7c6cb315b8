"""The HTTP routes, registered on the app's own router.

Each resource keeps its own `APIRouter` (prefix, tags, guards), but the app does not
`include_router` them: FastAPI keeps an included router as a node whose routes every request
walks with scope bookkeeping per route, which `make bench` shows costing a cached read more than
any of our middleware. Registering each route on the app with its prefix prepended gives the
same operations, dependencies, OpenAPI and override behaviour, matched in one flat list
(tests/api/test_routes.py holds it to that).
"""

import inspect

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from api.health import router as health_router
from api.v1 import V1_PREFIX, v1_routers

# Every option of add_api_route is kept on the APIRoute under the same name; a FastAPI release
# that stops doing so fails at startup rather than dropping an option silently.
_ROUTE_OPTIONS = [
    name
    for name in inspect.signature(APIRouter.add_api_route).parameters
    if name not in ("self", "path", "endpoint", "route_class_override")
]


def include_routers(app: FastAPI) -> None:
    add_routes(app, health_router)
    for router in v1_routers:
        add_routes(app, router, prefix=V1_PREFIX)
    answer_head(app)


def add_routes(app: FastAPI, router: APIRouter, prefix: str = "") -> None:
    """What `app.include_router(router, prefix=prefix)` serves, as routes of the app itself."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"{route!r}: only API routes can be added; include it instead")
        app.router.add_api_route(
            prefix + route.path,
            route.endpoint,
            route_class_override=type(route),
            **{name: getattr(route, name) for name in _ROUTE_OPTIONS},
        )


def answer_head(app: FastAPI) -> None:
    """A HEAD route for each GET route at a path with none (RFC 9110: whoever answers GET
    answers HEAD; FastAPI, unlike Starlette, adds none): the same route out of the schema, whose
    body the server leaves out. Added last, so a route's own HEAD comes first."""
    routes = [(r, r.methods or set()) for r in app.router.routes if isinstance(r, APIRoute)]
    answered = {route.path for route, methods in routes if "HEAD" in methods}
    for route, methods in routes:
        if "GET" in methods and route.path not in answered:
            options = {name: getattr(route, name) for name in _ROUTE_OPTIONS}
            options |= {"methods": ["HEAD"], "include_in_schema": False}
            app.router.add_api_route(
                route.path, route.endpoint, route_class_override=type(route), **options
            )


__all__ = ["add_routes", "answer_head", "include_routers"]
