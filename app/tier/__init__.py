from app.tier.exceptions import (
    DuplicateRateLimitException,
    DuplicateTierException,
    RateLimitNotFoundException,
    TierNotFoundException,
    UnknownTierException,
)
from app.tier.models import Tier, TierRateLimit, user_tiers
from app.tier.repository import RATE_LIMIT_LIST, TIER_LIST
from app.tier.schemas import (
    RateLimitCreate,
    RateLimitRead,
    TierCreate,
    TierRead,
    UserTierRead,
    UserTierUpdate,
)
from app.tier.service import TierService, tier_service

__all__ = [
    "RATE_LIMIT_LIST",
    "TIER_LIST",
    "DuplicateRateLimitException",
    "DuplicateTierException",
    "RateLimitCreate",
    "RateLimitNotFoundException",
    "RateLimitRead",
    "Tier",
    "TierCreate",
    "TierNotFoundException",
    "TierRateLimit",
    "TierRead",
    "TierService",
    "UnknownTierException",
    "UserTierRead",
    "UserTierUpdate",
    "tier_service",
    "user_tiers",
]
