"""Domain events: fastapi-event's API, dispatched after commit, every one, failures contained."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from core.db import Transactional, session_scope
from core.helpers.cache import Cache
from core.helpers.event import (
    BaseEvent,
    DomainEvent,
    EventOutsideUnitOfWorkError,
    event_handler,
)

ran: list[str] = []


class Note(BaseModel):
    text: str


class Noted(BaseEvent):
    async def run(self, parameter: Note | None = None) -> None:
        assert parameter is not None
        ran.append(parameter.text)


class Broken(BaseEvent):
    async def run(self, parameter: Note | None = None) -> None:
        raise RuntimeError("handler broke")


class Announced(DomainEvent):
    """Stored by one module, handled by others."""


@Announced.subscribe
async def broken_subscriber(parameter: Note) -> None:
    raise RuntimeError("subscriber broke")


@Announced.subscribe
async def noting_subscriber(parameter: Note) -> None:
    ran.append(f"heard {parameter.text}")


@pytest.fixture(autouse=True)
def clear() -> None:
    ran.clear()


async def test_events_run_after_commit_and_every_one_of_a_class_runs() -> None:
    @Transactional()
    async def work() -> None:
        await event_handler.store(Noted, Note(text="first"))
        await event_handler.store(Noted, Note(text="second"))
        assert ran == []  # not before the commit

    async with session_scope():
        await work()

    assert ran == ["first", "second"]


async def test_events_of_a_rolled_back_transaction_never_run() -> None:
    @Transactional()
    async def work() -> None:
        await event_handler.store(Noted, Note(text="never"))
        raise RuntimeError("roll back")

    async with session_scope():
        with pytest.raises(RuntimeError):
            await work()

    assert ran == []


async def test_a_failing_handler_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @Transactional()
    async def work() -> None:
        await event_handler.store(Broken, Note(text="x"))
        await event_handler.store(Noted, Note(text="after the broken one"))

    async with session_scope():
        await work()

    assert ran == ["after the broken one"]
    assert "event handler Broken failed" in caplog.text


async def test_outside_a_transaction_events_run_at_once() -> None:
    async with session_scope():
        await event_handler.store(Noted, Note(text="now"))

    assert ran == ["now"]


async def test_storing_outside_any_unit_of_work_says_so() -> None:
    with pytest.raises(EventOutsideUnitOfWorkError, match="outside a request, a task"):
        await event_handler.store(Noted, Note(text="lost"))


async def test_fastapi_event_validation_still_applies() -> None:
    class NotAnEvent:
        pass

    async with session_scope():
        with pytest.raises(Exception, match="Event must inherit BaseEvent"):
            await event_handler.store(NotAnEvent)


async def test_every_subscriber_of_a_domain_event_runs_after_commit_despite_one_failing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @Transactional()
    async def work() -> None:
        await event_handler.store(Announced, Note(text="news"))
        assert ran == []

    async with session_scope():
        await work()

    assert ran == ["heard news"]
    assert "Announced handler broken_subscriber failed" in caplog.text
    # Subscribers belong to their event class only.
    assert Announced.handlers == [broken_subscriber, noting_subscriber]
    assert DomainEvent.handlers == []


@Cache.cached(prefix="events-order", ttl=60)
async def cached_note() -> str:
    return "old"


async def test_a_handler_runs_once_every_process_heard_the_change_it_follows() -> None:
    class Changed(BaseEvent):
        async def run(self, parameter: Note | None = None) -> None:
            # A removal that was carried out holds the entry: the handler sees it held.
            ran.append(f"held: {(await Cache.fetch(cached_note)).held}")

    @Transactional()
    async def change() -> None:
        await event_handler.store(Changed)  # stored first, as a service may
        await Cache.remove(cached_note)

    async with session_scope():
        assert await cached_note() == "old"
        await change()

    assert ran == ["held: True"]
