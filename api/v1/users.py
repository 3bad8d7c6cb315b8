from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from api.v1.auth import client_address
from app.auth import PasswordRequest, QueuedTask, auth_service, login_throttle
from app.role import UserRolesRead, UserRolesUpdate, role_service
from app.tier import UserTierRead, UserTierUpdate, tier_service
from app.user import (
    USER_LIST,
    IsSelf,
    UserCreate,
    UserRead,
    UserUpdate,
    account_service,
    user_service,
)
from core.exceptions import invalid_field
from core.fastapi.conditional import etag, if_match_versions, with_etag
from core.fastapi.dependencies import (
    AnyOf,
    HasPermission,
    IsAdmin,
    IsAuthenticated,
    PermissionDependency,
    RateLimit,
    RowId,
)
from core.fastapi.idempotency import Idempotency
from core.fastapi.lists import ListQuery, Page
from core.fastapi.schemas.current_user import CurrentUser

router = APIRouter(prefix="/users", tags=["users"])

UserId = RowId

authenticated = PermissionDependency([IsAuthenticated])
admin = PermissionDependency([IsAuthenticated, IsAdmin])
self_or_reader = PermissionDependency([IsAuthenticated, AnyOf(IsSelf, HasPermission("users:read"))])
self_or_admin = PermissionDependency([IsAuthenticated, AnyOf(IsSelf, IsAdmin)])
deleter = PermissionDependency([IsAuthenticated, HasPermission("users:delete")])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    dependencies=[Depends(RateLimit())],
)
async def register_user(body: UserCreate, request: Request, idempotency: Idempotency) -> Response:
    """Register a new account; a verification link is mailed to it. Takes an Idempotency-Key."""
    address = client_address(request)
    return await idempotency.run(lambda: auth_service.register(body, address), UserRead, 201)


@router.get("/me", response_model=UserRead)
async def read_me(request: Request, user: CurrentUser = Depends(authenticated)) -> Response:
    """The caller's own account."""
    assert user.id is not None
    found = await user_service.get_read(user.id)
    return with_etag(request, found, found.version)


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT, dependencies=[Depends(RateLimit())])
async def delete_me(
    body: PasswordRequest, request: Request, user: CurrentUser = Depends(authenticated)
) -> Response:
    """Delete your own account (send your password); your tokens stop working at once."""
    assert user.id is not None
    await auth_service.check_password(user.id, body.password, client_address(request))
    versions = if_match_versions(request)
    await user_service.delete(user.id, by_admin=user.is_admin, versions=versions)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "",
    response_model=Page[UserRead],
    dependencies=[Depends(admin)],
    openapi_extra=USER_LIST.openapi,
)
async def list_users(query: Annotated[ListQuery, Depends(USER_LIST.dependency)]) -> Page[UserRead]:
    """List users: sort, filter, and page by `cursor` (from `next_cursor`) or by `page`."""
    return await user_service.list_page(query)


@router.get("/{user_id}", response_model=UserRead, dependencies=[Depends(self_or_reader)])
async def get_user(user_id: UserId, request: Request) -> Response:
    """Read one user (yourself, or anyone with `users:read`)."""
    found = await user_service.get_read(user_id)
    return with_etag(request, found, found.version)


@router.patch("/{user_id}", response_model=UserRead, dependencies=[Depends(RateLimit())])
async def update_user(
    user_id: UserId,
    body: UserUpdate,
    request: Request,
    response: Response,
    caller: CurrentUser = Depends(self_or_admin),
) -> UserRead:
    """Change nickname, password or email (your password and any email need current_password)."""
    versions = if_match_versions(request)
    if body.email is not None:
        # Refusing a taken email tells whether it is registered: on registration's budget.
        await login_throttle.reserve("register", body.email, client_address(request))
    if body.email is not None or body.password is not None:
        # What is refused cheaply is refused before the slow password check and hash.
        await account_service.refuse_early(user_id, body, versions)
    # A stolen access token must not become the account: admins prove it too.
    if body.email is not None or (caller.id == user_id and body.password is not None):
        if body.current_password is None:
            # Left out, not wrong: no failed login to count against the account.
            msg = "Field required to change your password or email."
            raise invalid_field(("body", "current_password"), msg, "missing")
        await auth_service.check_password(user_id, body.current_password, client_address(request))
    updated = await account_service.update(user_id, body, versions=versions)
    response.headers["ETag"] = etag(updated.version)
    return updated


@router.delete(
    "/{user_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[Depends(RateLimit())]
)
async def delete_user(
    user_id: UserId, request: Request, caller: CurrentUser = Depends(deleter)
) -> Response:
    """Soft-delete a user (admins only by admins; `If-Match` guards it); their tokens stop now."""
    versions = if_match_versions(request)
    await user_service.delete(user_id, by_admin=caller.is_admin, versions=versions)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{user_id}/verification-email",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=QueuedTask,
    dependencies=[Depends(admin), Depends(RateLimit())],
)
async def send_verification_email(user_id: UserId) -> QueuedTask:
    """Mail the user a new verification link; follow it at /api/v1/tasks/{task_id}."""
    return QueuedTask(task_id=await user_service.send_verification_email(user_id))


@router.put(
    "/{user_id}/roles",
    response_model=UserRolesRead,
    dependencies=[Depends(admin), Depends(RateLimit())],
)
async def set_user_roles(user_id: UserId, body: UserRolesUpdate) -> UserRolesRead:
    """Replace a user's roles; the change applies from their next request."""
    return await role_service.set_user_roles(user_id, body)


@router.put(
    "/{user_id}/tier",
    response_model=UserTierRead,
    dependencies=[Depends(admin), Depends(RateLimit())],
)
async def set_user_tier(user_id: UserId, body: UserTierUpdate) -> UserTierRead:
    """Put a user in a rate-limit tier; applies from their next request."""
    return await tier_service.set_user_tier(user_id, body)
