from __future__ import annotations

from core.config import config
from core.helpers.cache.base import BaseBackend
from core.helpers.cache.memory_backend import InMemoryBackend
from core.helpers.cache.redis_backend import RedisBackend


class CacheManager:
    """The process's cache: a backend chosen by settings, or set with `init()`."""

    def __init__(self) -> None:
        self._backend: BaseBackend | None = None

    def init(self, backend: BaseBackend) -> None:
        self._backend = backend

    @property
    def backend(self) -> BaseBackend:
        if self._backend is None:
            if config.CACHE_BACKEND == "redis" and config.REDIS_URL:
                self._backend = RedisBackend(config.REDIS_URL)
            else:
                self._backend = InMemoryBackend()
        return self._backend

    async def close(self) -> None:
        """Close the backend's connections; the next use builds it from settings again."""
        if self._backend is not None:
            backend, self._backend = self._backend, None
            await backend.close()


Cache = CacheManager()
