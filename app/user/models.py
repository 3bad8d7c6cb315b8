from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, false, text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, BigIntId, SoftDeleteMixin, TimestampMixin
from core.db.base import UTCDateTime, utcnow


class User(Base, TimestampMixin, SoftDeleteMixin):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    # Stored lower-cased (see UserCreate), so the unique constraint is case-insensitive.
    # A soft-deleted account keeps its address reserved.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    nickname: Mapped[str] = mapped_column(String(64))
    is_admin: Mapped[bool] = mapped_column(default=False, server_default=false())
    is_verified: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Bumped when every token of the user must die: password change, deletion.
    token_version: Mapped[int] = mapped_column(default=0, server_default="0")
    # What the API shows changed: the ETag. Raised in the UPDATE itself, so If-Match is atomic.
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    # The deleted few, which the posts catch-up task looks up every few minutes.
    __table_args__ = (
        Index(
            "ix_users_id_deleted",
            "id",
            postgresql_where=text("deleted_at IS NOT NULL"),
            sqlite_where=text("deleted_at IS NOT NULL"),
        ),
    )

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, email={self.email!r})"


class EmailToken(Base):
    """A single-use token sent by mail for one purpose; only its SHA-256 is stored."""

    __tablename__ = "email_tokens"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The address an email change moves to, once confirmed.
    new_email: Mapped[str | None] = mapped_column(String(320), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
