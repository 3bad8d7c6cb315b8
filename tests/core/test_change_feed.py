"""The change feed trusts its subscription only while the subscription keeps proving itself."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest

from celery_task.async_task import run_async_task
from core.helpers.cache import RedisBackend
from core.helpers.cache.change_feed import PROOF_SECONDS, ChangeFeed
from tests.servers import ServerStack


@pytest.fixture
def feed(stack: ServerStack) -> Iterator[ChangeFeed]:
    """A feed on the persistent loop tasks run on: it only runs while a task does."""
    backend = RedisBackend(stack.redis.url_for(5))
    feed = ChangeFeed(lambda: backend)
    yield feed

    async def close() -> None:
        await feed.close()
        await backend.close()

    run_async_task(close, (), {})


async def until_live(feed: ChangeFeed, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not feed.live():
        assert time.monotonic() < deadline, "the feed never became live"
        await asyncio.sleep(0.02)


async def live_throughout(feed: ChangeFeed, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not feed.live():
            return False
        await asyncio.sleep(0.1)
    return True


async def live_now(feed: ChangeFeed) -> bool:
    return feed.live()


def test_a_healthy_subscription_stays_live(feed: ChangeFeed) -> None:
    run_async_task(until_live, (feed,), {})
    # Several proofs' worth: each one renews the trust before the last one runs out.
    assert run_async_task(live_throughout, (feed, PROOF_SECONDS + 2), {})


def test_a_loop_that_did_not_run_waits_for_a_fresh_proof(
    feed: ChangeFeed, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        run_async_task(until_live, (feed,), {})
        time.sleep(PROOF_SECONDS + 0.5)  # a worker between tasks: nothing reads the socket

        # Announcements may be waiting unread: no copy may be used before they are heard...
        assert run_async_task(live_now, (feed,), {}) is False
        # ...which the next proof ensures, on the same subscription.
        run_async_task(until_live, (feed,), {})

    assert "not hearing changes" not in caplog.text
