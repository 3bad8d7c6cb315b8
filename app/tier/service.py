from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from app.tier.exceptions import (
    DuplicateRateLimitException,
    DuplicateTierException,
    RateLimitNotFoundException,
    TierNotFoundException,
    UnknownTierException,
)
from app.tier.models import Tier, TierRateLimit
from app.tier.repository import TierRepository
from app.tier.schemas import (
    RateLimitCreate,
    RateLimitRead,
    TierCreate,
    TierRead,
    UserTierRead,
    UserTierUpdate,
)
from app.user import user_service
from core.db import Transactional, session_scope, use_writer
from core.fastapi.lists import ListQuery, Page
from core.fastapi.schemas.current_user import TierLimits
from core.helpers.cache import Cache
from core.security.auth_state import forget_all_auth_states, forget_auth_state


class TierService:
    def __init__(self, repository: TierRepository | None = None) -> None:
        self.repository = repository or TierRepository()

    @Transactional()
    async def create(self, data: TierCreate) -> Tier:
        tier = Tier(name=data.name, description=data.description)
        try:
            await self.repository.add(tier)
        except IntegrityError as error:
            raise DuplicateTierException() from error
        return tier

    async def list(self, query: ListQuery) -> Page[TierRead]:
        return await self.repository.list(query)

    async def rate_limits(self, name: str, query: ListQuery) -> Page[RateLimitRead]:
        return await self.repository.rate_limits((await self._tier(name)).id, query)

    @Transactional()
    async def add_rate_limit(self, name: str, data: RateLimitCreate) -> TierRateLimit:
        tier = await self._tier(name)
        row = TierRateLimit(tier_id=tier.id, **data.model_dump())
        try:
            await self.repository.add(row)
        except IntegrityError as error:
            raise DuplicateRateLimitException() from error
        await self._forget_limits(name)
        return row

    @Transactional()
    async def delete_rate_limit(self, name: str, rate_limit_id: int) -> None:
        tier = await self._tier(name)
        if not await self.repository.delete_rate_limit(tier.id, rate_limit_id):
            raise RateLimitNotFoundException()
        await self._forget_limits(name)

    async def _forget_limits(self, name: str) -> None:
        # Users carry their tier's limits in their auth states; which states hold this tier is
        # not worth finding out for a rare admin change, so they all reload.
        await Cache.remove(self.limits_of, name)
        await forget_all_auth_states()

    @Cache.cached(prefix="tier_limits", ttl=60)
    async def limits_of(self, name: str) -> TierLimits:
        """The tier's limits: what RateLimit asks on every anonymous limited request."""
        # On the writer, in a unit of work of its own: a lagging replica must not hide a change.
        async with session_scope():
            use_writer()
            rows = await self.repository.limits_by_tier_name(name)
        return tuple((row.path, row.limit, row.period_seconds) for row in rows)

    @Transactional()
    async def set_user_tier(self, user_id: int, data: UserTierUpdate) -> UserTierRead:
        await user_service.lock(user_id)
        tier = await self.repository.get_by_name(data.tier)
        if tier is None:
            raise UnknownTierException(f"No such tier: {data.tier}.")
        await self.repository.set_user_tier(user_id, tier.id)
        # The tier travels with the auth state; the user's next request reloads it.
        await forget_auth_state(user_id)
        return UserTierRead(user_id=user_id, tier=tier.name)

    async def _tier(self, name: str) -> Tier:
        tier = await self.repository.get_by_name(name)
        if tier is None:
            raise TierNotFoundException()
        return tier


tier_service = TierService()
