from api.v1.auth import router as auth_router
from api.v1.permissions import router as permissions_router
from api.v1.posts import router as posts_router
from api.v1.roles import router as roles_router
from api.v1.tasks import router as tasks_router
from api.v1.tiers import router as tiers_router
from api.v1.users import router as users_router

V1_PREFIX = "/api/v1"
v1_routers = [
    auth_router,
    users_router,
    roles_router,
    tasks_router,
    tiers_router,
    permissions_router,
    posts_router,
]

__all__ = ["V1_PREFIX", "v1_routers"]
