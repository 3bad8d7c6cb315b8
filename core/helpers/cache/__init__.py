from core.helpers.cache.base import BaseBackend, CacheUnavailableError
from core.helpers.cache.cache_manager import Cache, CacheManager
from core.helpers.cache.memory_backend import InMemoryBackend
from core.helpers.cache.redis_backend import RedisBackend

__all__ = [
    "BaseBackend",
    "Cache",
    "CacheManager",
    "CacheUnavailableError",
    "InMemoryBackend",
    "RedisBackend",
]
