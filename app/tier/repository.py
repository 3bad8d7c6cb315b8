from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, insert, select

from app.tier.models import Tier, TierRateLimit, user_tiers
from core.db import session


class TierRepository:
    async def add(self, row: Tier | TierRateLimit) -> None:
        session.add(row)
        await session.flush()

    async def list(self) -> Sequence[Tier]:
        return (await session.scalars(select(Tier).order_by(Tier.name))).all()

    async def get_by_name(self, name: str) -> Tier | None:
        return await session.scalar(select(Tier).where(Tier.name == name))

    async def rate_limits(self, tier_id: int) -> Sequence[TierRateLimit]:
        query = select(TierRateLimit).where(TierRateLimit.tier_id == tier_id)
        return (await session.scalars(query.order_by(TierRateLimit.path))).all()

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
