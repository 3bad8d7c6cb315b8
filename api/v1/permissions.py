from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Depends

from app.role import PermissionRead, role_service
from core.fastapi.dependencies import IsAdmin, IsAuthenticated, PermissionDependency

router = APIRouter(
    prefix="/permissions",
    tags=["roles"],
    dependencies=[Depends(PermissionDependency([IsAuthenticated, IsAdmin]))],
)


@router.get("", response_model=list[PermissionRead])
async def list_permissions() -> Sequence[PermissionRead]:
    """Every permission code the modules declare, for roles to hold."""
    return role_service.permissions()
