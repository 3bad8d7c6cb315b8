from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, String, Table, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, BigIntId, TimestampMixin

# A user's tier; users without a row are in DEFAULT_TIER. A table of the tier module's own, so
# the user module does not depend on this one.
user_tiers = Table(
    "user_tiers",
    Base.metadata,
    Column("user_id", BigIntId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("tier_id", BigIntId, ForeignKey("tiers.id", ondelete="CASCADE"), nullable=False),
    Index("ix_user_tiers_tier_id", "tier_id"),
)


class Tier(Base, TimestampMixin):
    __tablename__ = "tiers"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(255), default="")


class TierRateLimit(Base, TimestampMixin):
    """`limit` requests per `period_seconds` on the route with path template `path`."""

    __tablename__ = "tier_rate_limits"
    # One limit per path and tier; the unique index also serves "limits of a tier".
    __table_args__ = (UniqueConstraint("tier_id", "path"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    tier_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("tiers.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(255))
    limit: Mapped[int]
    period_seconds: Mapped[int]
