from core.db.base import Base, BigIntId, SoftDeleteMixin, TimestampMixin
from core.db.engines import databases
from core.db.session import (
    NoSessionScopeError,
    RoutingSession,
    Transactional,
    TransactionRolledBackError,
    after_commit,
    before_each_commit,
    close_session,
    commit_batch,
    in_unit_of_work,
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
    "before_each_commit",
    "close_session",
    "commit_batch",
    "databases",
    "in_unit_of_work",
    "session",
    "session_factory",
    "session_scope",
    "use_writer",
]
