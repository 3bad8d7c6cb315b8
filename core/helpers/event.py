"""Domain events with fastapi-event's API (`await event_handler.store(Event, parameter)`). Every
stored event runs, several of one class too, after the commit and never after a rollback; a
failing handler is logged, never turned into an error; no middleware is needed. A `DomainEvent`
also runs the handlers other modules subscribed to it, so the module storing it knows none."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from fastapi_event import BaseEvent as BaseEvent  # re-exported: modules subclass it
from fastapi_event.handler import EventHandlerValidator
from pydantic import BaseModel

from core.db import after_commit, in_unit_of_work

logger = logging.getLogger(__name__)

Handler = TypeVar("Handler", bound=Callable[[Any], Awaitable[object]])


class EventOutsideUnitOfWorkError(RuntimeError):
    """An event was stored where nothing could ever dispatch it."""


class EventDispatcher:
    _validator = EventHandlerValidator()

    async def store(self, event: type[BaseEvent], parameter: BaseModel | None = None) -> None:
        """Run `event` once the current transaction commits (at once outside a transaction)."""
        if not in_unit_of_work():
            raise EventOutsideUnitOfWorkError(
                f"{event.__name__} was stored outside a request, a task or session_scope(): "
                "events run when the work they belong to commits, and here there is none"
            )
        await self._validator.validate(event=event, parameter=parameter)
        await after_commit(lambda: self._run(event, parameter))

    @staticmethod
    async def _run(event: type[BaseEvent], parameter: BaseModel | None) -> None:
        try:
            await event().run(parameter=parameter)
        except Exception:
            logger.exception("event handler %s failed", event.__name__)


class DomainEvent(BaseEvent):
    """An event other modules react to: `@UserDeleted.subscribe` on `async def f(parameter)`.
    Every handler runs; one that fails is logged and the others still run."""

    handlers: ClassVar[list[Callable[[Any], Awaitable[object]]]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.handlers = []

    @classmethod
    def subscribe(cls, handler: Handler) -> Handler:
        cls.handlers.append(handler)
        return handler

    async def run(self, parameter: BaseModel | None = None) -> None:
        for handler in self.handlers:
            try:
                await handler(parameter)
            except Exception:
                logger.exception("%s handler %s failed", type(self).__name__, handler.__qualname__)


event_handler = EventDispatcher()
