"""Domain events with fastapi-event's API (`await event_handler.store(Event, parameter)`). Every
stored event runs, several of one class too, after the commit and never after a rollback; a
failing handler is logged, never turned into an error; no middleware is needed."""

from __future__ import annotations

import logging

from fastapi_event import BaseEvent
from fastapi_event.handler import EventHandlerValidator
from pydantic import BaseModel

from core.db import after_commit, in_unit_of_work

logger = logging.getLogger(__name__)


class EventOutsideUnitOfWorkError(RuntimeError):
    """An event was stored where nothing could ever dispatch it."""


class EventDispatcher:
    def __init__(self) -> None:
        self._validator = EventHandlerValidator()

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


event_handler = EventDispatcher()

__all__ = ["BaseEvent", "EventDispatcher", "EventOutsideUnitOfWorkError", "event_handler"]
