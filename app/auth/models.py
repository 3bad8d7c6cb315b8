from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, BigIntId
from core.db.base import UTCDateTime, utcnow


class AuthSession(Base):
    """One login: the family of refresh tokens that descend from it.

    Only the newest refresh token of a session is valid (`refresh_jti`). Presenting an older
    one means it was stolen or replayed, and the whole session is revoked.
    """

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    refresh_jti: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # The user's token version at login: a session of an older version has ended (password
    # change, reset, logout everywhere).
    token_version: Mapped[int] = mapped_column(default=0, server_default="0")
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(255), default=None)
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    # The refresh token rotated away last, and when (whole seconds): within the reuse grace it
    # is answered with the very same new pair, re-signed from the same claims.
    previous_jti: Mapped[str | None] = mapped_column(String(32), default=None)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
