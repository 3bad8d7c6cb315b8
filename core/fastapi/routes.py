"""The template of the route a request matched, with the prefixes it was included under: what
metrics label a request with and what a tier's rate limit names; and the methods a path answers."""

from __future__ import annotations

import functools
import re
from typing import Any, NamedTuple

from fastapi.routing import iter_route_contexts
from starlette.routing import compile_path
from starlette.types import Scope


class _Routes(NamedTuple):
    contexts: tuple[Any, ...]  # each route with the prefixes it was included under
    by_route: dict[int, str]  # id(route) -> template; the app holds its routes, so ids stay
    by_path: tuple[tuple[re.Pattern[str], set[str] | None, str], ...]


def route_contexts(app: Any) -> tuple[Any, ...]:
    """The app's routes as `route_template` sees them (FastAPI's route contexts: `path_format`,
    `dependant`, ...), so what names a route elsewhere agrees with it."""
    return _routes(app).contexts


def route_template(scope: Scope) -> str | None:
    """ "/api/v1/users/{user_id}" for the route that matched the request, or whose method and
    path it has when it was refused before routing (a bad token, a body too large); None for no
    route."""
    routes = _routes(scope["app"])
    route = scope.get("route")
    if route is not None:
        # The matched route no longer knows the prefixes it was included under
        # (FastAPI >= 0.137); the app's route contexts do.
        return routes.by_route.get(id(route)) or getattr(route, "path_format", "")
    path, method = scope.get("path", ""), scope.get("method")
    return next(
        (
            template
            for regex, methods, template in routes.by_path
            if regex.match(path) and (methods is None or method in methods)
        ),
        None,
    )


def allowed_methods(scope: Scope) -> set[str]:
    """Every method some route at the request's path answers: the `Allow` of a 405, which
    Starlette takes from the first such route alone."""
    path = scope.get("path", "")
    return {
        method
        for regex, methods, _ in _routes(scope["app"]).by_path
        if methods and regex.match(path)
        for method in methods
    }


@functools.lru_cache(maxsize=8)
def _routes(app: Any) -> _Routes:
    # Built at an app's first request: its routes are all in place by then.
    contexts = tuple(iter_route_contexts(app.routes))
    by_route: dict[int, str] = {}
    by_path = []
    for context in contexts:
        if context.path and context.path_format:
            by_route.setdefault(id(context.original_route), context.path_format)
            by_path.append((compile_path(context.path)[0], context.methods, context.path_format))
    return _Routes(contexts, by_route, tuple(by_path))
