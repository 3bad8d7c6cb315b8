from __future__ import annotations

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, BigIntId, TimestampMixin


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
