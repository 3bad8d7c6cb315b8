from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status
from pydantic import BaseModel

from app.role import UserRolesRead, UserRolesUpdate, role_service
from app.user import IsSelf, User, UserCreate, UserPage, UserRead, UserUpdate, user_service
from core.fastapi.dependencies import (
    AnyOf,
    HasPermission,
    IsAdmin,
    IsAuthenticated,
    PermissionDependency,
)
from core.fastapi.schemas.current_user import CurrentUser

router = APIRouter(prefix="/users", tags=["users"])

UserId = Annotated[int, Path(ge=1, le=2**63 - 1)]

authenticated = PermissionDependency([IsAuthenticated])
admin = PermissionDependency([IsAuthenticated, IsAdmin])
self_or_reader = PermissionDependency([IsAuthenticated, AnyOf(IsSelf, HasPermission("users:read"))])
self_or_admin = PermissionDependency([IsAuthenticated, AnyOf(IsSelf, IsAdmin)])
deleter = PermissionDependency([IsAuthenticated, HasPermission("users:delete")])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=UserRead)
async def register_user(body: UserCreate) -> User:
    """Register a new account."""
    return await user_service.register(body)


@router.get("/me", response_model=UserRead)
async def read_me(user: CurrentUser = Depends(authenticated)) -> UserRead:
    """The caller's own account."""
    assert user.id is not None
    return await user_service.get_read(user.id)


@router.get("", response_model=UserPage, dependencies=[Depends(admin)])
async def list_users(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> UserPage:
    """List users in a stable order; pass `next_cursor` back as `cursor` for the next page."""
    return await user_service.list_page(limit, cursor)


@router.get("/{user_id}", response_model=UserRead, dependencies=[Depends(self_or_reader)])
async def get_user(user_id: UserId) -> UserRead:
    """Read one user (yourself, or anyone with `users:read`)."""
    return await user_service.get_read(user_id)


@router.patch("/{user_id}", response_model=UserRead)
async def update_user(
    user_id: UserId, body: UserUpdate, caller: CurrentUser = Depends(self_or_admin)
) -> UserRead:
    """Change nickname or password (yours needs current_password); ends the user's sessions."""
    own_password = caller.id == user_id and not caller.is_admin
    return await user_service.update(user_id, body, require_current_password=own_password)


@router.delete(
    "/{user_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[Depends(deleter)]
)
async def delete_user(user_id: UserId) -> Response:
    """Soft-delete a user; their tokens stop working at once."""
    await user_service.delete(user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class QueuedTask(BaseModel):
    task_id: str


@router.post(
    "/{user_id}/welcome-email",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=QueuedTask,
    dependencies=[Depends(admin)],
)
async def resend_welcome_email(user_id: UserId) -> QueuedTask:
    """Queue the welcome mail again; follow it at /api/v1/tasks/{task_id}."""
    return QueuedTask(task_id=await user_service.send_welcome_email(user_id))


@router.put("/{user_id}/roles", response_model=UserRolesRead, dependencies=[Depends(admin)])
async def set_user_roles(user_id: UserId, body: UserRolesUpdate) -> UserRolesRead:
    """Replace a user's roles; the change applies from their next request."""
    return await role_service.set_user_roles(user_id, body)
