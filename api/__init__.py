"""The HTTP routes: one `APIRouter` per resource, mounted on the app with `include_router`."""

from fastapi import FastAPI

from api.health import router as health_router
from api.v1 import V1_PREFIX, v1_routers


def include_routers(app: FastAPI) -> None:
    app.include_router(health_router)
    for router in v1_routers:
        app.include_router(router, prefix=V1_PREFIX)


__all__ = ["include_routers"]
