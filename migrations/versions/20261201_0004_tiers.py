"""rate-limit tiers, their per-path limits, user tiers; the anonymous and free tiers

Revision ID: 0004
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from core.config import config

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _timestamps() -> list[sa.Column[Any]]:
    return [
        sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)
        for name in ("created_at", "updated_at")
    ]


def upgrade() -> None:
    tiers = op.create_table(
        "tiers",
        sa.Column("id", BIGINT_ID, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tiers")),
        sa.UniqueConstraint("name", name=op.f("uq_tiers_name")),
    )
    op.create_table(
        "tier_rate_limits",
        sa.Column("id", BIGINT_ID, nullable=False),
        sa.Column("tier_id", BIGINT_ID, nullable=False),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("limit", sa.Integer(), nullable=False),
        sa.Column("period_seconds", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["tier_id"],
            ["tiers.id"],
            name=op.f("fk_tier_rate_limits_tier_id_tiers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tier_rate_limits")),
        sa.UniqueConstraint("tier_id", "path", name=op.f("uq_tier_rate_limits_tier_id")),
    )
    op.create_table(
        "user_tiers",
        sa.Column("user_id", BIGINT_ID, nullable=False),
        sa.Column("tier_id", BIGINT_ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["tier_id"], ["tiers.id"], name=op.f("fk_user_tiers_tier_id_tiers"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_tiers_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_tiers")),
    )
    op.create_index("ix_user_tiers_tier_id", "user_tiers", ["tier_id"])
    # The tiers RATE_LIMIT_ANONYMOUS_TIER and DEFAULT_TIER name, as set when migrating.
    seeded = {
        config.RATE_LIMIT_ANONYMOUS_TIER: "Callers without a token.",
        config.DEFAULT_TIER: "Users who were not given another tier.",
    }
    op.bulk_insert(tiers, [{"name": n, "description": d} for n, d in seeded.items()])


def downgrade() -> None:
    op.drop_index("ix_user_tiers_tier_id", table_name="user_tiers")
    op.drop_table("user_tiers")
    op.drop_table("tier_rate_limits")
    op.drop_table("tiers")
