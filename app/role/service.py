from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError

from app.role.exceptions import (
    DuplicateRoleException,
    RoleNotFoundException,
    UnknownPermissionException,
    UnknownRoleException,
)
from app.role.models import Role
from app.role.repository import RoleRepository
from app.role.schemas import (
    PermissionRead,
    RoleCreate,
    RoleRead,
    RoleUpdate,
    UserRolesRead,
    UserRolesUpdate,
)
from app.user import user_service
from core.db import Transactional
from core.fastapi.dependencies import declared_permissions
from core.fastapi.lists import ListQuery, Page
from core.security.auth_state import forget_all_auth_states, forget_auth_state


class RoleService:
    def __init__(self, repository: RoleRepository | None = None) -> None:
        self.repository = repository or RoleRepository()

    @Transactional()
    async def create(self, data: RoleCreate) -> Role:
        _check_declared(data.permissions)
        role = Role(name=data.name, description=data.description, permissions=data.permissions)
        try:
            return await self.repository.add(role)
        except IntegrityError as error:
            raise DuplicateRoleException() from error

    async def list(self, query: ListQuery) -> Page[RoleRead]:
        return await self.repository.list(query)

    def permissions(self) -> Sequence[PermissionRead]:
        """Every permission code the modules declare."""
        return [PermissionRead(code=c, description=d) for c, d in declared_permissions().items()]

    @Transactional()
    async def update(self, role_id: int, data: RoleUpdate) -> Role:
        role = await self.repository.get(role_id)
        if role is None:
            raise RoleNotFoundException()
        if data.description is not None:
            role.description = data.description
        if data.permissions is not None:
            _check_declared(data.permissions)
            role.permissions = data.permissions
            # Holders have the permissions cached with their auth state: one removal for all,
            # whatever the role's size, that also reaches someone given the role meanwhile. Even
            # when unchanged, so a retry after a 503 CHANGE_NOT_PROPAGATED removes them.
            await forget_all_auth_states()
        await self.repository.flush()
        return role

    @Transactional()
    async def set_user_roles(self, user_id: int, data: UserRolesUpdate) -> UserRolesRead:
        # Locked, so concurrent assignments to one user take turns instead of colliding.
        await user_service.lock(user_id)
        roles = await self.repository.get_by_names(data.roles)
        if len(roles) != len(data.roles):
            missing = sorted(set(data.roles) - {role.name for role in roles})
            raise UnknownRoleException(f"No such roles: {', '.join(missing)}.")
        await self.repository.replace_user_roles(user_id, [role.id for role in roles])
        # The user's permissions are cached with their auth state; the next request reloads it.
        await forget_auth_state(user_id)
        return UserRolesRead(user_id=user_id, roles=data.roles)


def _check_declared(codes: Sequence[str]) -> None:
    if unknown := sorted(set(codes) - declared_permissions().keys()):
        raise UnknownPermissionException(f"No module declares: {', '.join(unknown)}.")


role_service = RoleService()
