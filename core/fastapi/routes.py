"""The template of the route a request matched, with the prefixes it was included under: what
metrics label a request with and what a tier's rate limit names."""

from __future__ import annotations

import functools
import re
from typing import Any

from fastapi.routing import iter_route_contexts
from starlette.routing import compile_path
from starlette.types import Scope

# id(route) -> (route, template). Holding the route keeps its id from being reused.
_templates: dict[int, tuple[Any, str]] = {}


def route_template(scope: Scope) -> str | None:
    """ "/api/v1/users/{user_id}" for the route that matched the request, or whose path it has
    when it was refused before routing (a bad token, a body too large); None for no route."""
    route = scope.get("route")
    if route is None:
        path, method = scope.get("path", ""), scope.get("method")
        return next(
            (
                template
                for regex, methods, template in _path_templates(scope["app"])
                if regex.match(path) and (methods is None or method in methods)
            ),
            None,
        )
    known = _templates.get(id(route))
    if known is None:
        # The matched route no longer knows the prefixes it was included under
        # (FastAPI >= 0.137); the app's route contexts do.
        template = next(
            (
                context.path_format
                for context in iter_route_contexts(scope["app"].routes)
                if context.original_route is route and context.path_format
            ),
            getattr(route, "path_format", ""),
        )
        known = _templates[id(route)] = (route, template)
    return known[1]


@functools.lru_cache(maxsize=8)
def _path_templates(app: Any) -> tuple[tuple[re.Pattern[str], set[str] | None, str], ...]:
    # Built once per app, at its first request refused before routing: routes are set by then.
    return tuple(
        (compile_path(context.path)[0], context.methods, context.path_format)
        for context in iter_route_contexts(app.routes)
        if context.path and context.path_format
    )
