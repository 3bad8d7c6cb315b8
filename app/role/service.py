from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError

from app.role.exceptions import DuplicateRoleException, UnknownRoleException
from app.role.models import Role
from app.role.repository import RoleRepository
from app.role.schemas import RoleCreate, UserRolesRead, UserRolesUpdate
from app.user import user_service
from core.db import Transactional
from core.security.auth_state import forget_auth_state_after_commit


class RoleService:
    def __init__(self, repository: RoleRepository | None = None) -> None:
        self.repository = repository or RoleRepository()

    @Transactional()
    async def create(self, data: RoleCreate) -> Role:
        role = Role(name=data.name, description=data.description, permissions=data.permissions)
        try:
            return await self.repository.add(role)
        except IntegrityError as error:
            raise DuplicateRoleException() from error

    async def list(self) -> Sequence[Role]:
        return await self.repository.list()

    @Transactional()
    async def set_user_roles(self, user_id: int, data: UserRolesUpdate) -> UserRolesRead:
        await user_service.get(user_id)
        roles = await self.repository.get_by_names(data.roles)
        if len(roles) != len(data.roles):
            missing = sorted(set(data.roles) - {role.name for role in roles})
            raise UnknownRoleException(f"No such roles: {', '.join(missing)}.")
        await self.repository.replace_user_roles(user_id, [role.id for role in roles])
        # The user's permissions are cached with their auth state; the next request reloads it.
        forget_auth_state_after_commit(user_id)
        return UserRolesRead(user_id=user_id, roles=data.roles)


role_service = RoleService()
