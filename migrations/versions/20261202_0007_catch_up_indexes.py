"""partial indexes for the deleted-authors catch-up

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DELETED = sa.text("deleted_at IS NOT NULL")
LIVE = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_users_id_deleted", "users", ["id"], postgresql_where=DELETED, sqlite_where=DELETED
    )
    op.create_index(
        "ix_posts_author_id_live", "posts", ["author_id"], postgresql_where=LIVE, sqlite_where=LIVE
    )


def downgrade() -> None:
    op.drop_index("ix_posts_author_id_live", table_name="posts")
    op.drop_index("ix_users_id_deleted", table_name="users")
