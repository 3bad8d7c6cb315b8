from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    CompoundSelect,
    Integer,
    Select,
    Text,
    case,
    cast,
    func,
    literal_column,
    null,
    select,
    union_all,
    update,
)

from app.auth.models import AuthSession
from app.auth.schemas import SessionRead
from app.role import Role, user_roles
from app.tier import Tier, TierRateLimit, user_tiers
from app.user import User
from core.config import config
from core.db import session
from core.db.base import utcnow
from core.fastapi.lists import ListField, ListQuery, ListSpec, Page
from core.security.auth_state import INACTIVE, AuthState

_sessions = AuthSession.__table__.c
# What GET /api/v1/auth/sessions sorts and filters by; newest first unless asked otherwise.
SESSION_LIST = ListSpec(
    {
        "id": ListField(_sessions.id, sort=True),
        "created_at": ListField(_sessions.created_at, sort=True, filters=("gte", "lte")),
    },
    key="id",
    default_sort="-created_at",
)
_SESSION_COLUMNS = (
    _sessions.id,
    _sessions.created_at,
    _sessions.last_used_at,
    _sessions.user_agent,
    _sessions.ip,
)


class AuthSessionRepository:
    async def add(self, auth_session: AuthSession) -> None:
        session.add(auth_session)
        await session.flush()

    async def get(self, session_id: str) -> AuthSession | None:
        return await session.get(AuthSession, session_id)

    async def rotate(
        self, session_id: str, used_jti: str, new_jti: str, expires_at: datetime, now: datetime
    ) -> int | None:
        """Swap the session's refresh token id if `used_jti` is still the current one.

        One statement, so of two concurrent refreshes with the same token only one matches.
        Returns the session's user id, or None when nothing matched.
        """
        statement = (
            update(AuthSession)
            .where(
                AuthSession.id == session_id,
                AuthSession.refresh_jti == used_jti,
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > utcnow(),
            )
            .values(
                refresh_jti=new_jti,
                expires_at=expires_at,
                previous_jti=used_jti,
                rotated_at=now,
                last_used_at=now,
            )
            .returning(AuthSession.user_id)
            .execution_options(synchronize_session=False)
        )
        return (await session.execute(statement)).scalar_one_or_none()

    async def live(
        self, user_id: int, current_id: str | None, query: ListQuery
    ) -> Page[SessionRead]:
        """The user's sessions that can still refresh, `current_id`'s marked as the current one."""
        base = (
            select(*_SESSION_COLUMNS, (_sessions.id == (current_id or "")).label("current"))
            .join(User, User.id == AuthSession.user_id)
            .where(
                AuthSession.user_id == user_id,
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > utcnow(),
                AuthSession.token_version == User.token_version,
            )
        )
        return await SESSION_LIST.fetch(base, query, SessionRead)

    async def revoke_owned(self, session_id: str, user_id: int) -> bool:
        """End the session if it is `user_id`'s (one already ended keeps its time); whether it
        is theirs."""
        statement = (
            update(AuthSession)
            .where(AuthSession.id == session_id, AuthSession.user_id == user_id)
            .values(revoked_at=func.coalesce(AuthSession.revoked_at, utcnow()))
            .returning(AuthSession.id)
            .execution_options(synchronize_session=False)
        )
        return (await session.execute(statement)).first() is not None

    async def revoke(self, session_id: str) -> None:
        await session.execute(
            update(AuthSession)
            .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .execution_options(synchronize_session=False)
        )

    async def user_state(self, user_id: int) -> tuple[int, bool] | None:
        """The user's token version and whether the account is live, or None."""
        query = select(User.token_version, User.deleted_at).where(User.id == user_id)
        row = (await session.execute(query)).one_or_none()
        return None if row is None else (row.token_version, row.deleted_at is None)

    async def auth_state(self, user_id: int, revoked_since: datetime) -> AuthState | None:
        """Everything a user's auth state is made of, in one statement: one round trip, and one
        snapshot (no change can fall between its parts)."""
        rows = (await session.execute(_auth_state_rows(user_id, revoked_since))).all()
        user: tuple[int, bool, str | None] | None = None
        permissions: set[str] = set()
        revoked: set[str] = set()
        tier: str | None = None
        limits: list[tuple[str, int, int]] = []
        for kind, number, flag, text, period in rows:
            if kind == "user":
                user = (number, flag, text)
            elif kind == "permissions":
                permissions.update(orjson.loads(text))
            elif kind == "tier":
                tier = text
            elif kind == "limit":
                limits.append((text, number, period))
            else:
                revoked.add(text)
        if user is None:
            return None
        token_version, is_admin, liveness = user
        if liveness is None:
            return INACTIVE
        return AuthState(
            active=True,
            token_version=token_version,
            is_admin=is_admin,
            is_verified=liveness == "verified",
            permissions=frozenset(permissions),
            revoked_sessions=frozenset(revoked),
            tier=tier,
            rate_limits=tuple(sorted(limits)),
        )


def _auth_state_rows(user_id: int, revoked_since: datetime) -> CompoundSelect[Any]:
    """Rows of (kind, number, flag, text, period): one "user" row (token version, admin flag,
    "verified" or "live" unless deleted), a "permissions" row per role (its JSON list), a
    "revoked" row per session revoked since `revoked_since`, a "tier" row (its name) unless the
    user has none, and a "limit" row (requests, path, period) per limit of the user's tier, else
    of DEFAULT_TIER."""
    users, roles, sessions = User.__table__.c, Role.__table__.c, AuthSession.__table__.c
    tiers, limits = Tier.__table__.c, TierRateLimit.__table__.c
    user = select(
        literal_column("'user'").label("kind"),
        users.token_version.label("number"),
        users.is_admin.label("flag"),
        case(
            (users.deleted_at.is_not(None), null()),
            (users.is_verified, literal_column("'verified'")),
            else_=literal_column("'live'"),
        ).label("text"),
        # Typed: Postgres would make a column of NULLs text before it meets the limits' row.
        cast(null(), Integer).label("period"),
    ).where(users.id == user_id)
    permissions: Select[str, None, None, str, None] = (
        select(
            literal_column("'permissions'"), null(), null(), cast(roles.permissions, Text), null()
        )
        .join_from(Role.__table__, user_roles, user_roles.c.role_id == roles.id)
        .where(user_roles.c.user_id == user_id)
    )
    revoked = select(literal_column("'revoked'"), null(), null(), sessions.id, null()).where(
        sessions.user_id == user_id, sessions.revoked_at > revoked_since
    )
    tier = (
        select(literal_column("'tier'"), null(), null(), tiers.name, null())
        .join_from(user_tiers, Tier.__table__, user_tiers.c.tier_id == tiers.id)
        .where(user_tiers.c.user_id == user_id)
    )
    own_tier = select(user_tiers.c.tier_id).where(user_tiers.c.user_id == user_id)
    default_tier = select(tiers.id).where(tiers.name == config.DEFAULT_TIER)
    tier_limits = select(
        literal_column("'limit'"), limits.limit, null(), limits.path, limits.period_seconds
    ).where(
        limits.tier_id == func.coalesce(own_tier.scalar_subquery(), default_tier.scalar_subquery())
    )
    return union_all(user, permissions, revoked, tier, tier_limits)
