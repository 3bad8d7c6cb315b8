from core.db.base import Base, BigIntId, SoftDeleteMixin, TimestampMixin
from core.db.engines import databases
from core.db.session import (
    NoSessionScopeError,
    RoutingSession,
    Transactional,
    TransactionRolledBackError,
    after_commit,
    has_written,
    in_transaction,
    in_unit_of_work,
    on_commit,
    session,
    session_factory,
    session_scope,
    use_writer,
)

__all__ = [
    "Base",
    "BigIntId",
    "NoSessionScopeError",
    "RoutingSession",
    "SoftDeleteMixin",
    "TimestampMixin",
    "TransactionRolledBackError",
    "Transactional",
    "after_commit",
    "databases",
    "has_written",
    "in_transaction",
    "in_unit_of_work",
    "on_commit",
    "session",
    "session_factory",
    "session_scope",
    "use_writer",
]
