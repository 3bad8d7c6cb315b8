from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Depends, status

from app.role import Role, RoleCreate, RoleRead, role_service
from core.fastapi.dependencies import IsAdmin, IsAuthenticated, PermissionDependency

router = APIRouter(
    prefix="/roles",
    tags=["roles"],
    dependencies=[Depends(PermissionDependency([IsAuthenticated, IsAdmin]))],
)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=RoleRead)
async def create_role(body: RoleCreate) -> Role:
    """Create a role with its permission codes, e.g. `users:read`."""
    return await role_service.create(body)


@router.get("", response_model=list[RoleRead])
async def list_roles() -> Sequence[Role]:
    """List every role."""
    return await role_service.list()
