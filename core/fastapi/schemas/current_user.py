from __future__ import annotations

from dataclasses import dataclass, field

# A tier's limits: (path template, requests, period in seconds) per route it limits.
TierLimits = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True, slots=True)
class CurrentUser:
    """`request.user`: `id=None` when anonymous; `is_admin` and `permissions` come from the
    user's current roles (cached, refreshed when they change), not from the token."""

    id: int | None = None
    is_admin: bool = False
    is_verified: bool = False
    permissions: frozenset[str] = field(default_factory=frozenset)
    session_id: str | None = None
    # The rate-limit tier (None: DEFAULT_TIER) and its limits, both from the auth state.
    tier: str | None = None
    rate_limits: TierLimits = ()

    @property
    def is_authenticated(self) -> bool:
        return self.id is not None

    def has_permission(self, code: str) -> bool:
        return self.is_admin or code in self.permissions


ANONYMOUS = CurrentUser()
