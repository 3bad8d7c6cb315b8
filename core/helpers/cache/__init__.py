from core.helpers.cache.base import BaseBackend, BaseKeyMaker, CacheUnavailableError
from core.helpers.cache.cache_manager import (
    Cache,
    CacheManager,
    ChangeNotPropagatedException,
    Fetched,
)
from core.helpers.cache.cache_tag import CacheTag
from core.helpers.cache.key_maker import DefaultKeyMaker
from core.helpers.cache.memory_backend import InMemoryBackend
from core.helpers.cache.redis_backend import RedisBackend

__all__ = [
    "BaseBackend",
    "BaseKeyMaker",
    "Cache",
    "CacheManager",
    "CacheTag",
    "CacheUnavailableError",
    "ChangeNotPropagatedException",
    "DefaultKeyMaker",
    "Fetched",
    "InMemoryBackend",
    "RedisBackend",
]
