from __future__ import annotations

from sqlalchemy import JSON, Column, ForeignKey, Index, String, Table
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, BigIntId, TimestampMixin

user_roles = Table(
    "user_roles",
    Base.metadata,
    Column("user_id", BigIntId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", BigIntId, ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
    # The primary key serves "roles of a user"; this serves "users of a role".
    Index("ix_user_roles_role_id", "role_id"),
)


class Role(Base, TimestampMixin):
    __tablename__ = "roles"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(255), default="")
    # Permission codes such as "users:read". A list in one column: they are always read whole.
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list)
