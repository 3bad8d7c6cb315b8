from fastapi import APIRouter

from api.v1.auth import router as auth_router
from api.v1.roles import router as roles_router
from api.v1.tasks import router as tasks_router
from api.v1.users import router as users_router

router = APIRouter(prefix="/api/v1")
router.include_router(auth_router)
router.include_router(users_router)
router.include_router(roles_router)
router.include_router(tasks_router)

__all__ = ["router"]
