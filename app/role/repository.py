from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, insert, select

from app.role.models import Role, user_roles
from app.role.schemas import RoleRead
from core.db import session
from core.fastapi.lists import ListField, ListQuery, ListSpec, Page

_roles = Role.__table__.c
# What GET /api/v1/roles sorts and filters by.
ROLE_LIST = ListSpec(
    {
        "id": ListField(_roles.id, sort=True),
        "name": ListField(_roles.name, sort=True, filters=("eq", "in", "contains")),
        "created_at": ListField(_roles.created_at, sort=True, filters=("gte", "lte")),
    },
    key="id",
    default_sort="name",
)
_ROLE_COLUMNS = select(
    _roles.id, _roles.name, _roles.description, _roles.permissions, _roles.created_at
)


class RoleRepository:
    async def add(self, role: Role) -> Role:
        session.add(role)
        await session.flush()
        return role

    async def list(self, query: ListQuery) -> Page[RoleRead]:
        return await ROLE_LIST.fetch(_ROLE_COLUMNS, query, RoleRead)

    async def get(self, role_id: int) -> Role | None:
        return await session.get(Role, role_id)

    async def flush(self) -> None:
        await session.flush()

    async def get_by_names(self, names: Sequence[str]) -> Sequence[Role]:
        if not names:
            return []
        return (await session.scalars(select(Role).where(Role.name.in_(names)))).all()

    async def replace_user_roles(self, user_id: int, role_ids: Sequence[int]) -> None:
        await session.execute(delete(user_roles).where(user_roles.c.user_id == user_id))
        if role_ids:
            await session.execute(
                insert(user_roles), [{"user_id": user_id, "role_id": r} for r in role_ids]
            )
