from __future__ import annotations

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, BigIntId, SoftDeleteMixin, TimestampMixin


class Post(Base, TimestampMixin, SoftDeleteMixin):
    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    author_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    # Counts the changes: the ETag clients send back in If-Match. SQLAlchemy bumps it on
    # every UPDATE and refuses one made against a version that is no longer current.
    version: Mapped[int] = mapped_column(nullable=False)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's own convention
    __table_args__ = (
        # Lists are read newest first.
        Index("ix_posts_created_at_id", "created_at", "id"),
        # Live posts by author: what the catch-up for deleted authors looks for, without
        # reading every post they ever deleted.
        Index(
            "ix_posts_author_id_live",
            "author_id",
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
    )

    def __repr__(self) -> str:
        return f"Post(id={self.id!r}, author_id={self.author_id!r})"
