from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, insert, select

from app.tier.models import Tier, TierRateLimit, user_tiers
from app.tier.schemas import RateLimitRead, TierRead
from core.db import session
from core.fastapi.lists import ListField, ListQuery, ListSpec, Page

_tiers, _limits = Tier.__table__.c, TierRateLimit.__table__.c
# What GET /api/v1/tiers sorts and filters by.
TIER_LIST = ListSpec(
    {
        "id": ListField(_tiers.id, sort=True),
        "name": ListField(_tiers.name, sort=True, filters=("eq", "in", "contains")),
        "created_at": ListField(_tiers.created_at, sort=True, filters=("gte", "lte")),
    },
    key="id",
    default_sort="name",
)
# Every sortable column is selected: a page's cursor is made of the last row's sort values.
_TIER_COLUMNS = select(_tiers.id, _tiers.name, _tiers.description, _tiers.created_at)
# What GET /api/v1/tiers/{name}/rate-limits sorts and filters by.
RATE_LIMIT_LIST = ListSpec(
    {
        "id": ListField(_limits.id, sort=True),
        "path": ListField(_limits.path, sort=True, filters=("eq", "contains")),
        "created_at": ListField(_limits.created_at, sort=True, filters=("gte", "lte")),
    },
    key="id",
    default_sort="path",
)
_RATE_LIMIT_COLUMNS = select(
    _limits.id, _limits.path, _limits.limit, _limits.period_seconds, _limits.created_at
)


class TierRepository:
    async def add(self, row: Tier | TierRateLimit) -> None:
        session.add(row)
        await session.flush()

    async def list(self, query: ListQuery) -> Page[TierRead]:
        return await TIER_LIST.fetch(_TIER_COLUMNS, query, TierRead)

    async def get_by_name(self, name: str) -> Tier | None:
        return await session.scalar(select(Tier).where(Tier.name == name))

    async def rate_limits(self, tier_id: int, query: ListQuery) -> Page[RateLimitRead]:
        of_tier = _RATE_LIMIT_COLUMNS.where(_limits.tier_id == tier_id)
        return await RATE_LIMIT_LIST.fetch(of_tier, query, RateLimitRead)

    async def limits_by_tier_name(self, name: str) -> Sequence[TierRateLimit]:
        query = select(TierRateLimit).join(Tier).where(Tier.name == name)
        return (await session.scalars(query)).all()

    async def delete_rate_limit(self, tier_id: int, rate_limit_id: int) -> bool:
        statement = delete(TierRateLimit).where(
            TierRateLimit.id == rate_limit_id, TierRateLimit.tier_id == tier_id
        )
        return bool((await session.execute(statement)).rowcount)  # type: ignore[attr-defined]

    async def set_user_tier(self, user_id: int, tier_id: int) -> None:
        await session.execute(delete(user_tiers).where(user_tiers.c.user_id == user_id))
        await session.execute(insert(user_tiers).values(user_id=user_id, tier_id=tier_id))
