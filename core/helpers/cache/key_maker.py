from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_scoped_session
from sqlalchemy.orm import Session
from starlette.background import BackgroundTasks
from starlette.requests import HTTPConnection

from core.helpers.cache.base import BaseKeyMaker

# Arguments of these types say how a call runs, not what it computes.
INJECTED_TYPES: tuple[type, ...] = (
    HTTPConnection,
    AsyncSession,
    Session,
    async_scoped_session,
    BackgroundTasks,
)


@lru_cache(maxsize=1024)
def _signature(function: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(function)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(type(value).__name__)


class DefaultKeyMaker(BaseKeyMaker):
    """`module.qualname:digest`, the digest taken over the bound argument values.

    Defaults are applied, so `f(1)` and `f(1, limit=10)` share an entry when 10 is the default.
    `self`, `cls` and injected objects (requests, sessions) are left out, as is every name in
    `exclude`.
    """

    def make(
        self,
        function: Callable[..., Any],
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        exclude: frozenset[str],
    ) -> str:
        bound = _signature(function).bind(*args, **kwargs)
        bound.apply_defaults()
        values = {
            name: value
            for name, value in bound.arguments.items()
            if name not in exclude
            and name not in ("self", "cls")
            and not isinstance(value, INJECTED_TYPES)
        }
        options = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
        try:
            payload = orjson.dumps(values, default=_plain, option=options)
        except orjson.JSONEncodeError as error:
            raise TypeError(
                f"cannot build a cache key for {function.__qualname__}: {error}. Pass plain "
                "values (str, int, float, bool, None, lists, dicts, pydantic models) or name "
                "the argument in exclude="
            ) from error
        digest = hashlib.blake2b(payload, digest_size=16).hexdigest()
        return f"{function.__module__}.{function.__qualname__}:{digest}"
