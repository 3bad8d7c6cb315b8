"""`Cache`: the cached() decorator and its invalidation.

Key layout, for a function cached in namespace `ns` (its prefix or tag):

    cache:ns:version             a counter; removing the namespace increments it
    cache:ns:hold                present for a moment after a removal (see below)
    cache:ns:v<version>:<call>   an entry; <call> is the key maker's string

A hit costs one backend round trip (version, hold and entry are read together); removing a
namespace costs one increment, whatever its size, and never scans the keyspace: entries of older
versions are simply never read again and expire. With a backend that broadcasts (Redis), each
process also keeps copies of the entries it read, dropped whenever a removal is announced on
the change feed (local_entries.py): a repeated hit then costs no round trip at all.

After a removal, reads may still be served by a lagging replica. For READ_YOUR_WRITES_SECONDS
the namespace (or the removed entry) is "held": calls run the function but do not store what
it returns, so stale rows never make it back into the cache.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import typing
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, ParamSpec, TypeVar

from pydantic import TypeAdapter

from core.config import config
from core.db import after_commit
from core.helpers.cache.base import (
    BaseBackend,
    BaseKeyMaker,
    VersionedRead,
    bounded,
    spread,
    versioned_key,
)
from core.helpers.cache.cache_tag import CacheTag
from core.helpers.cache.change_feed import ChangeFeed
from core.helpers.cache.key_maker import DefaultKeyMaker
from core.helpers.cache.local_entries import (
    CACHE_TOPIC,
    LocalEntries,
    entry_removed,
    namespace_removed,
)
from core.helpers.cache.memory_backend import InMemoryBackend
from core.helpers.cache.redis_backend import RedisBackend
from core.helpers.single_flight import SingleFlight

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# An entry removed on purpose: a miss that must not be filled until it expires.
TOMBSTONE = b""
# A cache that does not answer within this is treated as down for the call.
BACKEND_TIMEOUT_SECONDS = 0.5
# An entry lives between 80 % and 100 % of its ttl: entries cached together (a warm-up, a
# popular page) are then not all computed again in the same moment.
ENTRY_TTL_SPREAD = 0.2


class CachedFunction:
    """What `Cache.cached` knows about one decorated function."""

    def __init__(
        self,
        function: Callable[..., Awaitable[Any]],
        namespace: str,
        ttl: float,
        exclude: frozenset[str],
    ) -> None:
        self.function = function
        self.namespace = namespace
        self.ttl = ttl
        self.exclude = exclude
        self._adapter: TypeAdapter[Any] | None = None

    @property
    def adapter(self) -> TypeAdapter[Any]:
        # Built on first use: return annotations may name classes defined after the function.
        if self._adapter is None:
            hints = typing.get_type_hints(self.function)
            if "return" not in hints:
                raise TypeError(
                    f"{self.function.__qualname__} needs a return annotation to be cached: "
                    "values are stored as JSON and read back as that type"
                )
            self._adapter = TypeAdapter(hints["return"])
        return self._adapter


class CacheManager:
    """The process's cache: a backend and a key maker, chosen by settings or by `init()`."""

    def __init__(self) -> None:
        self._backend: BaseBackend | None = None
        self._key_maker: BaseKeyMaker = DefaultKeyMaker()
        self._flights = SingleFlight()
        # Changes announced by any process: what keeps local copies of shared data honest.
        self.changes = ChangeFeed(lambda: self.backend)
        self._local = LocalEntries()
        self.changes.register(CACHE_TOPIC, self._local.heard, self._local.clear)
        # Cache writes under way; the loop itself holds tasks only weakly.
        self._writes: set[asyncio.Task[None]] = set()

    def init(
        self, backend: BaseBackend | None = None, key_maker: BaseKeyMaker | None = None
    ) -> None:
        if backend is not None:
            self.changes.stop()
            self._backend = backend
        if key_maker is not None:
            self._key_maker = key_maker

    @property
    def backend(self) -> BaseBackend:
        if self._backend is None:
            if config.CACHE_BACKEND == "redis" and config.REDIS_URL:
                self._backend = RedisBackend(config.REDIS_URL)
            else:
                self._backend = InMemoryBackend()
        return self._backend

    @property
    def key_maker(self) -> BaseKeyMaker:
        return self._key_maker

    async def write(self, write: Coroutine[Any, Any, None], *, copy_kept: bool) -> None:
        """Run a cache write of a value just computed; `write` logs its own failures.

        When this process kept a copy of the value, it answers from that copy: nobody here
        needs the write done, and on a busy loop each wait costs a whole turn of it, so it runs
        in the background. Otherwise it is awaited, so a call made right after is a hit.
        """
        if not copy_kept:
            await write
            return
        task = asyncio.get_running_loop().create_task(write)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def finish_writes(self) -> None:
        """Wait for the cache writes this event loop has under way."""
        loop = asyncio.get_running_loop()
        writes = [task for task in self._writes if task.get_loop() is loop]
        if writes:
            await asyncio.wait(writes)

    async def close(self) -> None:
        """Finish this event loop's cache writes and close its connections; it reconnects
        when used again."""
        await self.finish_writes()
        await self.changes.close()
        if self._backend is not None:
            await self._backend.close()

    def forget_inherited(self) -> None:
        """In a forked child process: drop the parent's connections without closing them."""
        self.changes.forget_inherited()
        if self._backend is not None:
            self._backend.forget_inherited()

    def reset(self) -> None:
        """Forget the backend; the next use builds one from the settings again."""
        self.changes.stop()
        self._backend = None

    # --- caching -------------------------------------------------------------------------

    def cached(
        self,
        prefix: str | None = None,
        *,
        tag: CacheTag | str | None = None,
        ttl: float = 60,
        exclude: Iterable[str] = (),
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Cache an async function's results per argument values, for `ttl` seconds.

        Give a `prefix` (one function's namespace) or a `tag` (shared by several functions);
        `remove_by_prefix` / `remove_by_tag` drop the whole namespace. `exclude` names
        arguments that must not be part of the key.
        """
        if (prefix is None) == (tag is None):
            raise ValueError("give exactly one of prefix= or tag=")
        namespace = str(prefix if prefix is not None else tag)

        def decorate(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            spec = CachedFunction(function, namespace, ttl, frozenset(exclude))

            @functools.wraps(function)
            async def cached_call(*args: P.args, **kwargs: P.kwargs) -> R:
                return typing.cast(R, await self._call(spec, args, kwargs))

            cached_call.__cached__ = spec  # type: ignore[attr-defined]
            return cached_call

        return decorate

    async def _call(self, spec: CachedFunction, args: Any, kwargs: Any) -> Any:
        call_key = self._key_maker.make(spec.function, args, kwargs, spec.exclude)
        local_copies = self.changes.live()
        if local_copies:
            copy = self._local.get(spec.namespace, call_key)
            if copy is not None:
                # Validated again on every use: callers may change what they are given.
                return spec.adapter.validate_json(copy)
        head = _namespace_key(spec.namespace)
        generation = self._local.generation
        if self._local.is_held(spec.namespace):
            return await self._compute_once(spec, args, kwargs, head, call_key, None, None)
        # One read per call at a time, and none that started before a removal this process heard.
        read = await self._flights.run(
            ("read", head, call_key, generation), lambda: self._read(spec, head, call_key)
        )
        if read is not None and read.held_for is not None:
            self._local.hold(spec.namespace, read.held_for)
        if read is not None and read.value and not read.held:
            try:
                value = spec.adapter.validate_json(read.value)
            except ValueError:
                logger.warning("unreadable cache entry for %s; recomputing", spec.namespace)
            else:
                if local_copies:
                    seconds = spec.ttl if read.expires_in is None else read.expires_in
                    self._local.keep(spec.namespace, call_key, read.value, seconds, generation)
                return value
        store_under = read.version if read is not None and _may_store(read) else None
        return await self._compute_once(
            spec, args, kwargs, head, call_key, store_under, generation if local_copies else None
        )

    async def _read(self, spec: CachedFunction, head: str, call_key: str) -> VersionedRead | None:
        backend = self.backend
        read = backend.get_versioned(f"{head}:version", f"{head}:hold", head, call_key)
        try:
            return await bounded(backend, read, BACKEND_TIMEOUT_SECONDS)
        except Exception as error:
            logger.warning("cache read failed for %s (%r); calling through", spec.namespace, error)
            return None

    async def _compute_once(
        self,
        spec: CachedFunction,
        args: Any,
        kwargs: Any,
        head: str,
        call_key: str,
        store_under: int | None,
        copy_generation: int | None,
    ) -> Any:
        """Run the function; concurrent misses of the same call in this process share one run.

        The result is stored under version `store_under` (not at all when None). With a
        `copy_generation` (local copies are in use), this process also keeps a copy of it, as
        of that generation, and stores it without waiting.
        """

        async def compute_and_store() -> Any:
            value = await spec.function(*args, **kwargs)
            if store_under is None:
                return value
            # Serialized now: the caller may change the value before a write in the background.
            payload = self._dump(spec, value)
            if payload is None:
                return value
            kept = copy_generation is not None and self._local.keep(
                spec.namespace, call_key, payload, spec.ttl, copy_generation
            )
            key = versioned_key(head, store_under, call_key)
            await self.write(self._store(spec, key, payload), copy_kept=kept)
            return value

        return await self._flights.run(("run", head, call_key), compute_and_store)

    @staticmethod
    def _dump(spec: CachedFunction, value: Any) -> bytes | None:
        try:
            return spec.adapter.dump_json(value)
        except Exception as error:
            logger.warning("cannot cache a value of %s (%r)", spec.namespace, error)
            return None

    async def _store(self, spec: CachedFunction, key: str, payload: bytes) -> None:
        try:
            backend = self.backend
            ttl = spread(spec.ttl, by=ENTRY_TTL_SPREAD)
            await bounded(backend, backend.set(key, payload, ttl), BACKEND_TIMEOUT_SECONDS)
        except Exception as error:
            logger.warning("cache write failed for %s (%r)", spec.namespace, error)

    # --- invalidation --------------------------------------------------------------------

    async def remove_by_prefix(self, prefix: str) -> None:
        """Drop every entry cached under `prefix`; inside a transaction, once it commits."""
        await after_commit(lambda: self._drop_namespace(prefix))

    async def remove_by_tag(self, tag: CacheTag | str) -> None:
        """Drop every entry cached under `tag`; inside a transaction, once it commits."""
        await after_commit(lambda: self._drop_namespace(str(tag)))

    async def remove(
        self, function: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> None:
        """Drop the one entry of `function(*args, **kwargs)`; inside a transaction, after it."""
        spec: CachedFunction | None = getattr(function, "__cached__", None)
        if spec is None:
            raise TypeError(f"{function.__qualname__} is not decorated with Cache.cached")
        if inspect.ismethod(function):
            args = (function.__self__, *args)
        call_key = self._key_maker.make(spec.function, args, kwargs, spec.exclude)
        await after_commit(lambda: self._drop_entry(spec.namespace, call_key))

    async def _drop_namespace(self, namespace: str) -> None:
        head = _namespace_key(namespace)
        self._local.drop_namespace(namespace)
        try:
            async with asyncio.timeout(BACKEND_TIMEOUT_SECONDS):
                await self.backend.incr(f"{head}:version")
                if _hold_seconds() > 0:
                    await self.backend.set(f"{head}:hold", b"1", _hold_seconds())
                await self.changes.announce(CACHE_TOPIC, namespace_removed(namespace))
        except Exception as error:
            logger.warning("could not drop cache namespace %s (%r)", namespace, error)

    async def _drop_entry(self, namespace: str, call_key: str) -> None:
        head = _namespace_key(namespace)
        self._local.drop_entry(namespace, call_key)
        try:
            async with asyncio.timeout(BACKEND_TIMEOUT_SECONDS):
                read = await self.backend.get_versioned(
                    f"{head}:version", f"{head}:hold", head, call_key
                )
                key = versioned_key(head, read.version, call_key)
                if _hold_seconds() > 0:
                    await self.backend.set(key, TOMBSTONE, _hold_seconds())
                else:
                    await self.backend.delete(key)
                await self.changes.announce(CACHE_TOPIC, entry_removed(namespace, call_key))
        except Exception as error:
            logger.warning("could not drop a cache entry of %s (%r)", namespace, error)


def _namespace_key(namespace: str) -> str:
    return f"cache:{namespace}"


def _hold_seconds() -> float:
    return float(config.READ_YOUR_WRITES_SECONDS)


def _may_store(read: VersionedRead) -> bool:
    return not read.held and read.value != TOMBSTONE


Cache = CacheManager()
