"""Sessions routed between the writer and the reader, and the transaction boundary.

A unit of work (one HTTP request, one task run, one `session_factory()` block) starts on the
reader and moves to the writer for good as soon as it does anything that is not a plain read:
entering `@Transactional`, a flush, an INSERT/UPDATE/DELETE, `SELECT ... FOR UPDATE`, raw SQL.
From then on its reads go to the writer too, so it always sees its own writes.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import CompoundSelect, Select, event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession, async_scoped_session, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session

from core.db.engines import databases

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
AfterCommit = Callable[[], Awaitable[Any]]


class NoSessionScopeError(RuntimeError):
    """`session` was used where no request, task or `session_scope()` set one up."""


class TransactionRolledBackError(RuntimeError):
    """An inner `@Transactional` failed, so the outer one cannot commit what is left.

    The inner error is its `__cause__`.
    """


@dataclass
class RoutingState:
    """Per-session routing and transaction bookkeeping, kept in `Session.info`."""

    use_writer: bool = False
    in_transaction: bool = False
    rollback_only: BaseException | None = None
    read_from_reader: bool = False
    after_commit: list[AfterCommit] = field(default_factory=list)
    # Per key: the batch's flush and its items; flushed before the plain callbacks.
    batches: dict[str, tuple[Callable[[list[Any]], Awaitable[Any]], list[Any]]] = field(
        default_factory=dict
    )


_STATE_KEY = "routing_state"


def routing_state(sync_session: Session) -> RoutingState:
    state: RoutingState | None = sync_session.info.get(_STATE_KEY)
    if state is None:
        state = sync_session.info[_STATE_KEY] = RoutingState()
    return state


def _is_plain_read(clause: Any) -> bool:
    # SQLAlchemy has no public accessor for a SELECT's FOR UPDATE clause; this is the one place
    # that reads it, and tests/core/test_db_routing.py fails if an upgrade renames it.
    return isinstance(clause, Select | CompoundSelect) and clause._for_update_arg is None


class RoutingSession(Session):
    def get_bind(self, mapper: Any = None, *, clause: Any = None, **kwargs: Any) -> Engine:
        # A flush asks with its INSERT/UPDATE/DELETE, or with no clause at all: never a plain read.
        state = routing_state(self)
        if not state.use_writer:
            if _is_plain_read(clause):
                state.read_from_reader = True
                return databases.reader.sync_engine
            state.use_writer = True
        return databases.writer.sync_engine


@event.listens_for(RoutingSession, "do_orm_execute")
def _reload_rows_that_may_be_stale(execute_state: ORMExecuteState) -> None:
    # Objects loaded earlier in this unit of work keep their old values in the identity map: a
    # locking select must see the row it locked, and a transaction re-selecting rows first read
    # on the replica must see the writer's values.
    if not execute_state.is_select:
        return
    state = routing_state(execute_state.session)
    if not _is_plain_read(execute_state.statement) or (
        state.in_transaction and state.read_from_reader
    ):
        execute_state.update_execution_options(populate_existing=True)


# Built once: a sessionmaker per call shows up in profiles. Objects stay usable after commit
# so a route can return what it just wrote without another query.
_make_session = async_sessionmaker(sync_session_class=RoutingSession, expire_on_commit=False)

_scope_id: ContextVar[int | None] = ContextVar("db_session_scope", default=None)
_scope_ids = itertools.count(1)


def _current_scope() -> int:
    scope = _scope_id.get()
    if scope is None:
        raise NoSessionScopeError(
            "no database session scope is active here: HTTP requests and Celery tasks get one "
            "automatically; elsewhere wrap the code in `async with session_scope():` or use "
            "`async with session_factory() as session:`"
        )
    return scope


session: async_scoped_session[AsyncSession] = async_scoped_session(
    _make_session, scopefunc=_current_scope
)
"""The session of the current unit of work (request or task): one per scope, made on first use."""


class session_scope:  # noqa: N801 - used like a function: `async with session_scope():`
    """Give the code inside its own `session`; close it (returning its connections) at the end.

    Creating the scope costs nothing: a session, and a connection, appear only when used. A
    class rather than a generator: every request enters one.
    """

    __slots__ = ("_token",)

    async def __aenter__(self) -> None:
        self._token = _scope_id.set(next(_scope_ids))

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await close_session()
        finally:
            _scope_id.reset(self._token)


async def close_session() -> None:
    """Close this scope's session if it has one; the next use of `session` opens a new one."""
    if session.registry.has():
        await session.remove()


def session_factory() -> AbstractAsyncContextManager[AsyncSession]:
    """An independent session routed like `session`, e.g. one per coroutine under
    `asyncio.gather`: committed when the block ends without an error, rolled back on one. Plain
    SQL only: after-commit work (tasks, cache removals, events) follows `@Transactional`'s
    commit, not this block's."""
    return _make_session.begin()


def use_writer() -> None:
    """Send the rest of this unit of work to the writer, e.g. reads that decide a login."""
    routing_state(session().sync_session).use_writer = True


def in_unit_of_work() -> bool:
    """Whether a session scope (a request, a task run, `session_scope()`) is active here."""
    return _scope_id.get() is not None


def _current_state() -> RoutingState | None:
    """The routing state of this unit of work's session, if it has one yet."""
    if _scope_id.get() is None or not session.registry.has():
        return None
    return routing_state(session().sync_session)


def _transaction_state() -> RoutingState | None:
    """The routing state of the `@Transactional` block the current code runs in, if any."""
    state = _current_state()
    return state if state is not None and state.in_transaction else None


def in_transaction() -> bool:
    """Whether the current code runs inside a `@Transactional` block."""
    return _transaction_state() is not None


def reads_on_writer() -> bool:
    """Whether this unit of work's reads go to the writer (it wrote, or asked to)."""
    state = _current_state()
    return state is not None and state.use_writer


async def after_commit(callback: AfterCommit) -> None:
    """Run `callback` once the current `@Transactional` block has committed, never on rollback;
    outside a transaction, now.

    Every callback runs even if one fails; the first error then reaches the caller of the
    transaction (the data stays committed), so a change that could not be carried through
    answers with an error instead of success.
    """
    state = _transaction_state()
    if state is None:
        await callback()
    else:
        state.after_commit.append(callback)


def commit_batch(key: str, flush: Callable[[list[Any]], Awaitable[Any]]) -> list[Any] | None:
    """A list that collects items for the current transaction and is handed to `flush` once,
    after it commits: what many calls ask for is then done in one go. None outside a
    transaction (do it now).

    Batches are flushed in the order they were started, before the `after_commit` callbacks:
    every process hears of a change (the cache's batch) before an event handler runs.
    """
    state = _transaction_state()
    if state is None:
        return None
    if key not in state.batches:
        state.batches[key] = (flush, [])
    return state.batches[key][1]


_before_commit: ContextVar[tuple[AfterCommit, ...]] = ContextVar("before_commit", default=())


@contextmanager
def before_each_commit(callback: AfterCommit) -> Iterator[None]:
    """Within the block, run `callback` inside every outermost transaction just before it
    commits: for what any write of this context implies (a user's write holds their auth
    state, which sends their next reads to the writer)."""
    token = _before_commit.set((*_before_commit.get(), callback))
    try:
        yield
    finally:
        _before_commit.reset(token)


async def _run_after_commit(callbacks: list[AfterCommit]) -> None:
    # The data is committed whatever happens here: every callback gets its turn.
    first_error: Exception | None = None
    for callback in callbacks:
        try:
            await callback()
        except Exception as error:
            logger.warning("an after-commit callback failed: %r", error)
            first_error = first_error or error
    if first_error is not None:
        raise first_error


class Transactional:
    """Run an async function in a transaction on the writer: commit on return, roll back on raise.

    Nested calls join the outermost transaction, and only the outermost one commits. If a nested
    call raises, the whole transaction is rolled back even if an outer function catches the
    error: what is left of a failed unit of work is never committed.
    """

    def __call__(self, func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(func)
        async def transactional(*args: P.args, **kwargs: P.kwargs) -> R:
            current = session()
            state = routing_state(current.sync_session)
            if state.in_transaction:  # nested: join the outer transaction
                try:
                    return await func(*args, **kwargs)
                except BaseException as error:
                    state.rollback_only = state.rollback_only or error
                    raise
            state.use_writer, state.in_transaction = True, True
            try:
                result = await func(*args, **kwargs)
                if state.rollback_only is not None:
                    raise TransactionRolledBackError(
                        "a nested @Transactional call failed; the transaction was rolled back"
                    ) from state.rollback_only
                for callback in _before_commit.get():
                    await callback()
                await current.commit()
            except BaseException:
                state.after_commit.clear()
                await current.rollback()
                raise
            finally:
                batches = state.batches.values()
                state.in_transaction, state.rollback_only, state.batches = False, None, {}
            callbacks: list[AfterCommit] = [
                functools.partial(flush, items) for flush, items in batches
            ]
            callbacks, state.after_commit = [*callbacks, *state.after_commit], []
            await _run_after_commit(callbacks)
            return result

        return transactional
