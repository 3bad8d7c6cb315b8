"""The writer and reader engines: built on first use, disposed on shutdown.

Pools are fixed-size (no overflow): a pool that grows and shrinks under load reconnects all the
time.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from core.config import config
from core.helpers.outage import Outage
from core.tracing import trace_engine

logger = logging.getLogger(__name__)

# Connection settings for every PostgreSQL session. JIT compilation only slows the short
# queries an API runs.
PG_SERVER_SETTINGS = {"jit": "off", "application_name": "api"}
# A pooled connection unused this long is pinged before use: any connection pooled across a
# server restart (which takes longer) is, while a busy process reuses its own sooner.
IDLE_PING_SECONDS = 0.1
# How much longer than its own statement timeout a server may take to say it cancelled one.
SILENT_SERVER_GRACE_SECONDS = 1.0
# Closing the pools waits this long for the servers' goodbyes; a server that has not answered
# by then has stopped answering, and waiting on it would only hold up a shutdown.
CLOSE_SECONDS = 2.0


def _is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def _libpq_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _connect_args() -> dict[str, Any]:
    limit_ms = str(int(config.DB_COMMAND_TIMEOUT * 1000))
    return {
        "timeout": config.DB_CONNECT_TIMEOUT,
        # The server cancels a statement (or a lock wait) that runs too long; the client gives
        # up a moment later only when the server says nothing at all: it is hung.
        "command_timeout": config.DB_COMMAND_TIMEOUT + SILENT_SERVER_GRACE_SECONDS,
        "server_settings": {**PG_SERVER_SETTINGS, "statement_timeout": limit_ms},
    }


def _engine_options(url: URL) -> dict[str, Any]:
    if _is_sqlite(url):
        # The embedded default: one file, many readers, one writer at a time. A busy writer
        # makes others wait (timeout) instead of failing at once with "database is locked".
        return {"connect_args": {"timeout": 30}}
    return {
        "pool_size": config.DB_POOL_SIZE,
        "max_overflow": 0,
        # The connection used last goes out first: a light load keeps reusing a few warm ones.
        "pool_use_lifo": True,
        "pool_timeout": config.DB_POOL_TIMEOUT,
        "pool_recycle": 1800,
        "connect_args": _connect_args(),
    }


def _discard_closed_connections(engine: AsyncEngine) -> None:
    """A connection the server closed (a restart, a failover) is replaced at checkout.

    asyncpg notices the server's close by itself while its event loop runs, so a busy process
    pays no round trip for this, unlike a ping per checkout. A loop that sat idle (a Celery
    worker between tasks) may not have noticed: a connection idle for over IDLE_PING_SECONDS is
    pinged first.
    """

    @event.listens_for(engine.sync_engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        if isinstance(context.original_exception, TimeoutError):
            # The server went silent, past its own statement timeout: none of the pool's
            # connections to it are trusted any more (the pool replaces them all).
            context.is_disconnect = True

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        idle = time.monotonic() - record.info.get("checked_in_at", time.monotonic())
        if dbapi_connection.driver_connection.is_closed() or (
            idle > IDLE_PING_SECONDS and not _answers(engine, dbapi_connection)
        ):
            # The pool discards this connection and checks out a new one.
            raise DisconnectionError("the server closed this connection")


def _answers(engine: AsyncEngine, dbapi_connection: Any) -> bool:
    try:
        return bool(engine.dialect.do_ping(dbapi_connection))
    except Exception:
        return False


def _enable_sqlite_pragmas(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()


class ReaderFallback:
    """Connects reads to the replica, and to the writer while the replica cannot be reached.

    A failed replica connect marks it down for `retry_seconds`; during that time the reader
    pool opens writer connections without trying the replica again. Once the time is up, one
    connect tries the replica (`Outage.trying`); when it gets through, the writer connections
    are discarded at checkout, so reads return to the replica by themselves.
    """

    def __init__(self, reader_url: URL, writer_url: URL, retry_seconds: float = 5.0) -> None:
        self.reader_dsn = _libpq_dsn(reader_url)
        self.writer_dsn = _libpq_dsn(writer_url)
        self.outage = Outage(retry_seconds)
        self._writer_connections: weakref.WeakSet[asyncpg.Connection] = weakref.WeakSet()

    async def connect(self) -> asyncpg.Connection:
        options = _connect_args()
        if not self.outage.ongoing:
            try:
                with self.outage.trying():
                    return await asyncpg.connect(self.reader_dsn, **options)
            except (TimeoutError, OSError, asyncpg.PostgresError) as error:
                self.mark_down(error)
        connection = await asyncpg.connect(self.writer_dsn, **options)
        self._writer_connections.add(connection)
        return connection

    def mark_down(self, error: BaseException) -> None:
        self.outage.begin()
        logger.warning(
            "read replica unreachable (%s: %s); reads use the writer for %.0f s",
            type(error).__name__,
            error,
            self.outage.seconds,
        )

    def on_writer(self, connection: asyncpg.Connection) -> bool:
        """Whether this reader connection was opened on the writer."""
        return connection in self._writer_connections

    def install(self, reader_engine: AsyncEngine) -> None:
        @event.listens_for(reader_engine.sync_engine, "handle_error")
        def _replica_went_silent(context: ExceptionContext) -> None:
            # A hung replica is treated as an unreachable one; the pool replaces its
            # connections through connect(), which then opens them on the writer.
            if isinstance(context.original_exception, TimeoutError) and not self.outage.ongoing:
                self.mark_down(context.original_exception)

        @event.listens_for(reader_engine.sync_engine, "checkout")
        def _leave_writer_when_replica_may_be_back(
            dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any
        ) -> None:
            if self.on_writer(dbapi_connection.driver_connection) and not self.outage.ongoing:
                # The pool discards this connection and opens a new one through connect().
                raise DisconnectionError("retrying the read replica")


@dataclass
class EnginePair:
    writer: AsyncEngine
    reader: AsyncEngine
    reader_fallback: ReaderFallback | None


def _build_engines() -> EnginePair:
    writer_url = make_url(config.writer_db_url)
    reader_url = make_url(config.reader_db_url)
    writer = create_async_engine(writer_url, **_engine_options(writer_url))
    if _is_sqlite(writer_url):
        _enable_sqlite_pragmas(writer)
    trace_engine(writer, "writer")
    if not _is_sqlite(writer_url):
        _discard_closed_connections(writer)
    if reader_url == writer_url or _is_sqlite(reader_url):
        return EnginePair(writer, writer, None)
    fallback = ReaderFallback(reader_url, writer_url)
    reader = create_async_engine(
        reader_url,
        async_creator=fallback.connect,
        # Only plain reads outside transactions come here, one statement at a time: without
        # BEGIN and ROLLBACK around each, a read costs one round trip instead of three.
        isolation_level="AUTOCOMMIT",
        # ... and nothing to roll back when a connection goes back to the pool.
        pool_reset_on_return=None,
        **_engine_options(reader_url),
    )
    fallback.install(reader)
    _discard_closed_connections(reader)
    trace_engine(reader, "reader", fallback.on_writer)
    return EnginePair(writer, reader, fallback)


class Databases:
    """The engines, one pair per event loop, built on first use there.

    Database connections belong to the event loop that opened them. An API process has one
    loop; a Celery worker process has its own; an eager task run from inside a request runs on
    another thread's loop. Each gets its own pools, so none ever touches another's connections.
    """

    def __init__(self) -> None:
        self._by_loop: dict[asyncio.AbstractEventLoop, EnginePair] = {}

    def _pair(self) -> EnginePair:
        loop = asyncio.get_running_loop()
        pair = self._by_loop.get(loop)
        if pair is None:
            pair = self._by_loop[loop] = _build_engines()
        return pair

    @property
    def writer(self) -> AsyncEngine:
        return self._pair().writer

    @property
    def reader(self) -> AsyncEngine:
        return self._pair().reader

    @property
    def reader_fallback(self) -> ReaderFallback | None:
        return self._pair().reader_fallback

    @property
    def has_separate_reader(self) -> bool:
        pair = self._pair()
        return pair.reader is not pair.writer

    async def dispose(self) -> None:
        """Close this loop's pooled connections; the next use there builds new engines."""
        pair = self._by_loop.pop(asyncio.get_running_loop(), None)
        if pair is None:
            return
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                await asyncio.gather(*(engine.dispose() for engine in {pair.writer, pair.reader}))
        except TimeoutError:
            logger.warning(
                "database connections did not close within %s s; dropped unclosed", CLOSE_SECONDS
            )

    def forget_inherited(self) -> None:
        """In a forked child: drop the parent's engines without touching their sockets."""
        self._by_loop.clear()


databases = Databases()
