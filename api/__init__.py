"""The HTTP routes: every resource router is included into the app directly.

FastAPI matches included routers level by level on every request, so one flat level (rather
than an /api router holding a /v1 router holding the resources) keeps route matching short.
"""

from fastapi import FastAPI

from api.health import router as health_router
from api.v1 import V1_PREFIX, v1_routers


def include_routers(app: FastAPI) -> None:
    app.include_router(health_router)
    for router in v1_routers:
        app.include_router(router, prefix=V1_PREFIX)


__all__ = ["include_routers"]
