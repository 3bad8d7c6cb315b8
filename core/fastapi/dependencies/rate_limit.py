"""`Depends(RateLimit())` / `Depends(RateLimit("10/minute"))`: a route limited per caller (the
user, else the client address), at its caller's tier's limit for the route's path template, else
the route's own, else RATE_LIMIT_DEFAULT."""

from __future__ import annotations

import functools
import logging
from typing import Any

from fastapi import Request
from limits import RateLimitItem, RateLimitItemPerSecond

from core.config import config, parse_limit
from core.exceptions import TooManyRequestsException
from core.fastapi.routes import route_contexts, route_template
from core.fastapi.schemas.current_user import ANONYMOUS, CurrentUser, TierLimits
from core.helpers.rate_limiter import caller_address, rate_limiter
from core.security.auth_state import queries

logger = logging.getLogger(__name__)
# RATE_LIMIT_DEFAULT is read on each request (settings can be reloaded), but parsed once a value.
_parse = functools.lru_cache(maxsize=16)(parse_limit)

# Where the dependency leaves the headers for RequestContextMiddleware, which adds them to
# whatever response the route ends with (a Response it returns, an error).
HEADERS_SCOPE_KEY = "rate_limit_headers"


class RateLimitedException(TooManyRequestsException):
    error_code = "RATE_LIMITED"


class RateLimit:
    def __init__(self, limit: str | None = None) -> None:
        # Parsed here, so a malformed limit fails at import rather than on a request.
        self.limit = parse_limit(limit) if limit else None

    async def __call__(self, request: Request) -> None:
        if not config.RATE_LIMIT_ENABLED:
            return
        path = route_template(request.scope) or request.url.path
        # Anonymous too where no authentication middleware runs.
        user: CurrentUser = request.scope.get("user", ANONYMOUS)
        if user.is_authenticated:
            tier, caller = user.tier or config.DEFAULT_TIER, f"user:{user.id}"
            limits = user.rate_limits
        else:
            tier = config.RATE_LIMIT_ANONYMOUS_TIER
            caller = f"address:{request_address(request)}"
            limits = await _tier_limits(tier)
        policy, item = self._policy(tier, path, limits)
        # Per route: PATCH and DELETE of one path template do not share a count.
        hit = await rate_limiter.hit(item, request.method, path, caller)
        request.scope[HEADERS_SCOPE_KEY] = [
            (b"ratelimit-policy", f'"{policy}";q={item.amount};w={item.get_expiry()}'.encode()),
            (b"ratelimit", f'"{policy}";r={hit.remaining};t={hit.reset_in}'.encode()),
        ]
        if not hit.allowed:
            raise RateLimitedException(retry_after=hit.reset_in)

    def _policy(self, tier: str, path: str, limits: TierLimits) -> tuple[str, RateLimitItem]:
        for limited, requests, seconds in limits:
            if limited == path:
                return tier, RateLimitItemPerSecond(requests, seconds)
        return "default", self.limit or _parse(config.RATE_LIMIT_DEFAULT)


def request_address(request: Request) -> str:
    """The client's address as limits count it (one IPv6 /64 is one caller)."""
    return caller_address(request.client.host) if request.client else "unknown"


def is_rate_limited(route: Any) -> bool:
    """Whether a route (from `iter_route_contexts`) has a RateLimit among its dependencies."""
    dependant = getattr(route, "dependant", None)
    return dependant is not None and any(
        isinstance(dependency.call, RateLimit) for dependency in dependant.dependencies
    )


def rate_limited_templates(app: Any) -> set[str]:
    """The path templates a tier's limit can name: those RateLimit keys on, of the app's routes
    that have one (from the walk `route_template` reads)."""
    return {route.path_format for route in route_contexts(app) if is_rate_limited(route)}


async def _tier_limits(tier: str) -> TierLimits:
    try:
        return await queries.tier_limits(tier) if queries.tier_limits else ()
    except Exception:
        # Still limited, by the route's own limit: an outage never turns limits off.
        logger.exception("tier %s limits unavailable; the route's own limit applies", tier)
        return ()


__all__ = ["RateLimit", "RateLimitedException", "is_rate_limited", "rate_limited_templates"]
