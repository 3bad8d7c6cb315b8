"""`Cache`: the cached() decorator and its invalidation.

Key layout, for a function cached in namespace `ns` (its prefix or tag):

    cache:ns:version             a counter; removing the namespace increments it
    cache:ns:hold                present for a while after the namespace was removed
    cache:ns:hold:<call>         present for a while after the entry was removed or held
    cache:ns:v<version>:<call>   an entry; <call> is the key maker's string

A hit costs one backend round trip (version, holds and entry are read together). Removing a
namespace costs one increment whatever its size, and never scans the keyspace: entries of older
versions are never read again and expire. Every removal a commit causes goes to the backend in
one round trip, after the commit.

One hold rule: what a change touched is held for `hold_seconds()`; a call that meets a hold
stores nothing and reports `Fetched.held` (so its caller can read from the writer). A removal
also drops the entry, so rows read from a lagging replica never make it back; `hold` alone keeps
it. A result is stored only where nothing is (never over a TOMBSTONE), and only by a call
shorter than the hold. With a Redis backend, hits are also copied per process (local_copies.py).
"""

from __future__ import annotations

import functools
import inspect
import logging
import random
import time
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, ParamSpec, TypeVar

from pydantic import TypeAdapter

from core.config import config
from core.db import commit_batch, in_transaction, reads_on_writer
from core.exceptions import ServiceUnavailableException
from core.helpers.cache.base import (
    BaseBackend,
    BaseKeyMaker,
    CacheUnavailableError,
    VersionedRead,
    bounded,
    versioned_key,
)
from core.helpers.cache.cache_tag import CacheTag
from core.helpers.cache.key_maker import DefaultKeyMaker
from core.helpers.cache.local_copies import LocalCopies
from core.helpers.cache.memory_backend import InMemoryBackend
from core.helpers.cache.redis_backend import RedisBackend
from core.helpers.single_flight import SingleFlight
from core.metrics import CACHE_REQUESTS, series

logger = logging.getLogger(__name__)


P = ParamSpec("P")
R = TypeVar("R")

# An entry lives between 80 % and 100 % of its ttl: entries cached together (a warm-up, a
# popular page) are then not all computed again in the same moment.
ENTRY_TTL_SPREAD = 0.2
# The shortest hold, whatever READ_YOUR_WRITES_SECONDS says: it also bounds how long a read
# that started before a change may take and still store what it read.
MIN_HOLD_SECONDS = 1.0


def hold_seconds() -> float:
    return max(float(config.READ_YOUR_WRITES_SECONDS), MIN_HOLD_SECONDS)


class ChangeNotPropagatedException(ServiceUnavailableException):
    error_code = "CHANGE_NOT_PROPAGATED"
    detail = "The change was saved, but not every server may see it yet; retry the request."


class Fetched(NamedTuple, Generic[R]):
    """A cached call's value, whether it came from the cache (False: the function ran), and
    whether what it was read from is held (a change came a moment ago)."""

    value: R
    hit: bool
    held: bool


@dataclass
class CachedFunction:
    """What `Cache.cached` knows about one decorated function."""

    function: Callable[..., Awaitable[Any]]
    namespace: str
    ttl: float
    exclude: frozenset[str]
    keep: Callable[[Any], bool] | None = None

    @functools.cached_property
    def adapter(self) -> TypeAdapter[Any]:
        # Built on first use: return annotations may name classes defined after the function.
        hints = typing.get_type_hints(self.function)
        if "return" not in hints:
            raise TypeError(
                f"{self.function.__qualname__} needs a return annotation to be cached: "
                "values are stored as JSON and read back as that type"
            )
        return TypeAdapter(hints["return"])

    @property
    def head(self) -> str:
        return f"cache:{self.namespace}"


@dataclass(frozen=True)
class Removal:
    head: str
    tail: str | None = None  # None: the whole namespace
    # A hold only keeps the entry: its value is still right, but a change came near it.
    hold_only: bool = False


class CacheManager:
    """The process's cache: a backend and a key maker, chosen by settings or by `init()`."""

    def __init__(self) -> None:
        self._backend: BaseBackend | None = None
        self.key_maker: BaseKeyMaker = DefaultKeyMaker()
        self._flights = SingleFlight()
        self._copies = LocalCopies()

    def init(
        self, backend: BaseBackend | None = None, key_maker: BaseKeyMaker | None = None
    ) -> None:
        if backend is not None:
            if backend is not self._backend:
                self._copies.detach()  # copies of the old backend's entries, and its changes
            self._backend = backend
        if key_maker is not None:
            self.key_maker = key_maker

    @property
    def backend(self) -> BaseBackend:
        if self._backend is None:
            if config.CACHE_BACKEND == "redis" and config.REDIS_URL:
                self._backend = RedisBackend(config.REDIS_URL)
            else:
                self._backend = InMemoryBackend()
        return self._backend

    def follow_changes(self) -> None:
        """Keep local copies of hits on this event loop, for as long as every change is heard
        (an API process calls it at startup; only a Redis backend announces changes)."""
        if isinstance(self.backend, RedisBackend):
            self._copies.follow(self.backend)

    async def close(self) -> None:
        """Close this event loop's connections; the backend reconnects when used again."""
        try:
            await self._copies.stop()
        finally:
            if self._backend is not None:
                await self._backend.close()

    def forget_inherited(self) -> None:
        """In a forked child process: drop the parent's connections without closing them."""
        if self._backend is not None:
            self._backend.forget_inherited()

    def cached(
        self,
        prefix: str | None = None,
        *,
        tag: CacheTag | str | None = None,
        ttl: float = 60,
        exclude: Iterable[str] = (),
        keep: Callable[[Any], bool] | None = None,
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Cache an async function's results per argument values, for `ttl` seconds.

        Give a `prefix` (one function's namespace) or a `tag` (shared by several functions);
        `remove_by_prefix` / `remove_by_tag` drop the whole namespace, `remove` one call's
        entry. `exclude` names arguments that must not be part of the key; a value for which
        `keep` says False is returned but not stored.
        """
        if (prefix is None) == (tag is None):
            raise ValueError("give exactly one of prefix= or tag=")
        namespace = str(prefix if prefix is not None else tag)

        def decorate(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            spec = CachedFunction(function, namespace, ttl, frozenset(exclude), keep)

            @functools.wraps(function)
            async def cached_call(*args: P.args, **kwargs: P.kwargs) -> R:
                fetched = await self._fetch(spec, args, kwargs)
                return typing.cast(R, fetched.value)

            cached_call.__cached__ = spec  # type: ignore[attr-defined]
            return cached_call

        return decorate

    async def fetch(
        self, function: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs
    ) -> Fetched[R]:
        """Call a cached function and also learn whether its value came from the cache."""
        spec, args = _spec_of(function, args)
        return typing.cast(Fetched[R], await self._fetch(spec, args, kwargs))

    async def _fetch(self, spec: CachedFunction, args: Any, kwargs: Any) -> Fetched[Any]:
        on_writer = reads_on_writer()
        # A transaction reads on the writer: only then is the second question worth asking.
        if on_writer and in_transaction():
            # It must see the transaction's own writes, which may yet roll back: uncached.
            return Fetched(await spec.function(*args, **kwargs), False, False)
        call_key = self.key_maker.make(spec.function, args, kwargs, spec.exclude)
        copies = self._copies
        if copies.usable() and (copy := await copies.get(spec.head, call_key)) is not None:
            series(CACHE_REQUESTS, "hit").inc()
            return Fetched(spec.adapter.validate_json(copy), True, False)
        # Concurrent identical calls share one backend read and one run of the function (in the
        # first caller's unit of work): not one that began before a change with those after
        # it, nor one reading on the replica with a caller that must read on the writer.
        generation = copies.generation(spec.head)
        return await self._flights.run(
            (spec.head, call_key, generation, on_writer),
            lambda: self._read_or_run(spec, call_key, args, kwargs, generation),
        )

    async def _read_or_run(
        self,
        spec: CachedFunction,
        call_key: str,
        args: Any,
        kwargs: Any,
        generation: tuple[int, int],
    ) -> Fetched[Any]:
        backend = self.backend
        started = time.monotonic()
        read: VersionedRead | None
        try:
            read = await bounded(lambda: backend.get_versioned(spec.head, call_key))
        except CacheUnavailableError as error:
            logger.warning("cache read failed for %s (%s); calling through", spec.namespace, error)
            read = None
        if read is not None and read.value:
            try:
                value = spec.adapter.validate_json(read.value)
                series(CACHE_REQUESTS, "hit").inc()
                if not read.held:
                    # Never beyond the entry's own expiry: the bound on a change that got a 503.
                    ttl = read.ttl or spec.ttl
                    await self._copies.put(spec.head, call_key, read.value, ttl, generation)
                return Fetched(value, True, read.held)
            except ValueError:
                logger.warning("unreadable cache entry for %s; recomputing", spec.namespace)
                read = None
        series(CACHE_REQUESTS, "miss" if read is not None else "error").inc()
        value = await spec.function(*args, **kwargs)
        if (
            read is not None
            and read.value is None
            and not read.held
            and time.monotonic() - started < hold_seconds()
            and (spec.keep is None or spec.keep(value))
        ):
            await self._store(spec, versioned_key(spec.head, read.version, call_key), value)
        return Fetched(value, False, read is not None and read.held)

    async def _store(self, spec: CachedFunction, key: str, value: Any) -> None:
        try:
            payload = spec.adapter.dump_json(value)
            ttl = spec.ttl * random.uniform(1 - ENTRY_TTL_SPREAD, 1)
            # Only where nothing is stored: a TOMBSTONE there means a change came meanwhile.
            await bounded(lambda: self.backend.add(key, payload, ttl))
        except Exception as error:
            logger.warning("cache write failed for %s (%r)", spec.namespace, error)

    async def remove_by_prefix(self, prefix: str) -> None:
        """Drop every entry cached under `prefix`; inside a transaction, once it commits."""
        await self._remove(Removal(f"cache:{prefix}"))

    async def remove_by_tag(self, tag: CacheTag | str) -> None:
        """Drop every entry cached under `tag`; inside a transaction, once it commits."""
        await self._remove(Removal(f"cache:{tag}"))

    async def remove(
        self, function: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> None:
        """Drop the one entry of `function(*args, **kwargs)`; inside a transaction, after it."""
        await self._remove(self._entry(function, args, kwargs))

    async def hold(
        self, function: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> None:
        """Hold the entry of `function(*args, **kwargs)` without removing it: it is still
        served, with `Fetched.held` set, and nothing computed meanwhile is stored. Best effort:
        when the backend cannot be reached, the change still succeeds."""
        await self._remove(self._entry(function, args, kwargs, hold_only=True))

    def _entry(
        self, function: Callable[..., Any], args: Any, kwargs: Any, hold_only: bool = False
    ) -> Removal:
        spec, args = _spec_of(function, args)
        call_key = self.key_maker.make(spec.function, args, kwargs, spec.exclude)
        return Removal(spec.head, call_key, hold_only)

    async def _remove(self, removal: Removal) -> None:
        batch = commit_batch("cache", self._apply)
        if batch is None:
            await self._apply([removal])
        else:
            batch.append(removal)

    async def _apply(self, removals: list[Removal]) -> None:
        """Carry out removals and holds in one round trip; 503 when a removal cannot (the
        change is saved, but other processes may go on serving what it replaced)."""
        namespaces = sorted({r.head for r in removals if r.tail is None})
        entries = [r for r in removals if r.tail is not None and r.head not in namespaces]
        removed = sorted({(r.head, str(r.tail)) for r in entries if not r.hold_only})
        held = sorted({(r.head, str(r.tail)) for r in entries if r.hold_only} - set(removed))
        try:
            await bounded(lambda: self.backend.change(namespaces, removed, held, hold_seconds()))
        except CacheUnavailableError as error:
            logger.error("could not remove or hold %d cache entries (%s)", len(removals), error)
            if namespaces or removed:
                raise ChangeNotPropagatedException() from error
        finally:
            # After the change: a read of this process that began before it stores no copy.
            await self._copies.drop(namespaces, [*removed, *held])


def _spec_of(function: Callable[..., Any], args: Any) -> tuple[CachedFunction, Any]:
    spec: CachedFunction | None = getattr(function, "__cached__", None)
    if spec is None:
        raise TypeError(f"{function.__qualname__} is not decorated with Cache.cached")
    if inspect.ismethod(function):
        args = (function.__self__, *args)
    return spec, args


Cache = CacheManager()
