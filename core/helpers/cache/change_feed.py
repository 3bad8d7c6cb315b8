"""Changes announced by any process and heard by all of them.

This is what lets a process keep local copies of shared data (auth states, cached reads) and
still never use one after it changed: whoever changes the data announces it, and every process
drops its copy when it hears the announcement.

Announcements go out through the cache backend's publish/listen; one listener task per process
hears them and hands each to the handler of its topic. Copies may be used only while `live()`:
the listener is subscribed, on the running event loop, and its subscription proved itself alive
within PROOF_SECONDS (everything announced before that proof has been heard). When the
subscription is lost, messages may have been missed, so every topic's `on_lost` drops all its
copies, and nothing is trusted again until the listener has subscribed anew.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from core.helpers.cache.base import BaseBackend, spread

logger = logging.getLogger(__name__)

# How long a local copy may be used at most, even while no change is heard. It is not what
# keeps copies correct: a subscription that stops answering is given up within seconds
# (redis_backend.ANSWER_SECONDS), and every copy with it. It only bounds the memory of things
# read once, and any change a bug would fail to announce.
LOCAL_COPY_SECONDS = 60.0
# How long a proof that the subscription is alive is trusted. The backend proves it about every
# second; an older proof means this loop did not run to hear (a Celery worker between tasks),
# and announcements may be waiting unread, so copies wait for the next proof.
PROOF_SECONDS = 3.0
# After losing the subscription, how long to wait before subscribing again.
RESUBSCRIBE_SECONDS = 1.0
# How long closing waits for the listener: it notices it was stopped within one wait for a
# message (at most redis_backend.ANSWER_SECONDS).
STOP_WAIT_SECONDS = 3.0


def local_copy_seconds(at_most: float = LOCAL_COPY_SECONDS) -> float:
    """How long to keep a copy made now: `at_most`, bounded by LOCAL_COPY_SECONDS, spread."""
    return spread(min(at_most, LOCAL_COPY_SECONDS))


class ChangeFeed:
    def __init__(self, backend: Callable[[], BaseBackend], channel: str = "changes") -> None:
        self._backend = backend
        self.channel = channel
        self._on_message: dict[bytes, Callable[[bytes], None]] = {}
        self._on_lost: dict[bytes, Callable[[], None]] = {}
        self._subscribed = False
        self._proven_at = float("-inf")  # the listener loop's time of the last proof
        self._listener: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def register(
        self, topic: bytes, on_message: Callable[[bytes], None], on_lost: Callable[[], None]
    ) -> None:
        """Call `on_message(payload)` for each announcement of `topic`, `on_lost()` whenever
        announcements may have been missed. A topic must not contain b":"."""
        self._on_message[topic] = on_message
        self._on_lost[topic] = on_lost

    def live(self) -> bool:
        """Whether every announcement reaches this process now; starts listening if needed."""
        if not self._subscribed:
            self._start()
            return False
        loop = asyncio.get_running_loop()
        return loop is self._loop and loop.time() - self._proven_at < PROOF_SECONDS

    async def announce(self, topic: bytes, payload: bytes) -> None:
        """Tell every process (this one included) that `payload` of `topic` changed."""
        backend = self._backend()
        if backend.broadcasts:
            await backend.publish(self.channel, topic + b":" + payload)

    def _start(self) -> None:
        if not self._backend().broadcasts:
            return
        if self._listener is not None and not self._listener.done():
            return
        self._loop = asyncio.get_running_loop()
        self._listener = self._loop.create_task(self._listen(), name="change-feed")

    async def _listen(self) -> None:
        # Also checked here, not only through cancellation: a cancel that coincides with a
        # socket read timing out inside the Redis client can come back as a timeout.
        while self._listener is asyncio.current_task():
            try:
                async for message in self._backend().listen(self.channel):
                    if self._listener is not asyncio.current_task():
                        return
                    if message is None:
                        self._subscribed = True
                        self._proven_at = asyncio.get_running_loop().time()
                    else:
                        self._deliver(message)
            except Exception as error:
                if self._subscribed:  # once per outage, not once per retry
                    logger.warning("not hearing changes (%r); local copies are off", error)
            self._lose()
            await asyncio.sleep(RESUBSCRIBE_SECONDS)

    def _deliver(self, message: bytes) -> None:
        topic, _, payload = message.partition(b":")
        handler = self._on_message.get(topic)
        if handler is None:
            return
        try:
            handler(payload)
        except Exception:
            # A copy that cannot be dropped must not be used: drop them all.
            logger.exception("could not apply a change of %r", topic)
            self._on_lost[topic]()

    def _lose(self) -> None:
        self._subscribed = False
        for on_lost in self._on_lost.values():
            on_lost()

    def stop(self) -> None:
        """Stop listening (the backend is being replaced); the next `live()` starts again."""
        listener, self._listener = self._listener, None
        self._lose()
        if listener is not None:
            listener.cancel()

    async def close(self) -> None:
        """Stop listening, when on the listener's loop (at shutdown)."""
        listener = self._listener
        if listener is None or self._loop is not asyncio.get_running_loop():
            return
        self.stop()
        await asyncio.wait({listener}, timeout=STOP_WAIT_SECONDS)

    def forget_inherited(self) -> None:
        """In a forked child: the parent's listener is not ours, and what the parent kept may
        have changed before this process could hear of it."""
        self._listener = None
        self._loop = None
        self._lose()
