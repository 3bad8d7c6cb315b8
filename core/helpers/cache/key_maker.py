from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

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


class _Parameters(NamedTuple):
    names: tuple[str, ...]
    defaults: dict[str, Any]


@lru_cache(maxsize=1024)
def _signature(function: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(function)


@lru_cache(maxsize=1024)
def _simple_parameters(function: Callable[..., Any]) -> _Parameters | None:
    """The parameters when each may be passed by position or by name, as nearly every cached
    function's are; None for any other signature."""
    parameters = _signature(function).parameters.values()
    if any(p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters):
        return None
    defaults = {p.name: p.default for p in parameters if p.default is not p.empty}
    return _Parameters(tuple(p.name for p in parameters), defaults)


def _arguments(
    function: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> Mapping[str, Any]:
    """Each parameter's value in the call, defaults applied. Bound here for the usual signature,
    several times faster than inspect; any other call (or a wrong one, which then raises the
    TypeError it deserves) by `Signature.bind`."""
    simple = _simple_parameters(function)
    if simple is not None and len(args) <= len(simple.names):
        values = dict(zip(simple.names, args, strict=False))
        if values.keys().isdisjoint(kwargs):
            values.update(kwargs)
            for name in simple.names[len(args) :]:
                if name not in values:
                    if name not in simple.defaults:
                        break
                    values[name] = simple.defaults[name]
            else:
                if len(values) == len(simple.names):  # no name the function does not take
                    return values
    bound = _signature(function).bind(*args, **kwargs)
    bound.apply_defaults()
    return bound.arguments


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
        values = {
            name: value
            for name, value in _arguments(function, args, kwargs).items()
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
