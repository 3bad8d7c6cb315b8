from __future__ import annotations

from sqlalchemy import String, false
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, BigIntId, SoftDeleteMixin, TimestampMixin


class User(Base, TimestampMixin, SoftDeleteMixin):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    # Stored lower-cased (see UserCreate), so the unique constraint is case-insensitive.
    # A soft-deleted account keeps its address reserved.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    nickname: Mapped[str] = mapped_column(String(64))
    is_admin: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Bumped when every token of the user must die: password change, deletion.
    token_version: Mapped[int] = mapped_column(default=0, server_default="0")

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, email={self.email!r})"
