"""The event loop the API serves on: uvloop, with listeners that take every waiting connection.

libuv, under uvloop, accepts one connection per turn of the loop (libuv PR #3696). A turn of a
busy loop lasts as long as it takes to serve every request that is ready, so the n-th of a
burst of new connections waits n such turns before its first request is even read: at 64
connections on one saturated worker, the last one waited 0.6 s while the requests of those
already accepted took 20 ms. asyncio's own loop accepts up to the backlog at once, and so does
this one. Accepted connections are ordinary uvloop transports; only accepting is done here.

`main.py` serves with it; for uvicorn's command line it is `--loop core.event_loop:ServerLoop`.
Unix-socket listeners (`--uds`) keep uvloop's own.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

import uvloop

logger = logging.getLogger(__name__)

# Out of file descriptors or memory: stop accepting for this long rather than spin (as asyncio).
ACCEPT_RETRY_SECONDS = 1.0
_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


class Listener(asyncio.AbstractServer):
    """Listening sockets watched by the loop; each time they are readable, all waiting
    connections (up to the backlog) are accepted and handed to uvloop."""

    def __init__(
        self,
        loop: ServerLoop,
        sockets: list[socket.socket],
        protocol_factory: ProtocolFactory,
        ssl: ssl_module.SSLContext | None,
        backlog: int,
        ssl_handshake_timeout: float | None,
    ) -> None:
        self._loop = loop
        self._sockets = sockets
        self._protocol_factory = protocol_factory
        self._ssl = ssl
        self._backlog = backlog
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._serving = False
        self._closed = asyncio.Event()
        # The loop holds tasks weakly: these keep the connections being set up alive.
        self._connecting: set[asyncio.Task[Any]] = set()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._sockets)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        self.listen()

    async def serve_forever(self) -> None:
        self.listen()
        await self._closed.wait()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._serving:
            self._stop_watching()
        for sock in self._sockets:
            sock.close()

    async def wait_closed(self) -> None:
        # The connections belong to the server that uses this listener (uvicorn closes its own).
        await self._closed.wait()

    def listen(self) -> None:
        if self._serving or self._closed.is_set():
            return
        for sock in self._sockets:
            sock.listen(self._backlog)
        self._watch()

    def _watch(self) -> None:
        self._serving = True
        for sock in self._sockets:
            self._loop.add_reader(sock.fileno(), self._accept_waiting, sock)

    def _stop_watching(self) -> None:
        self._serving = False
        for sock in self._sockets:
            self._loop.remove_reader(sock.fileno())

    def _accept_waiting(self, listening: socket.socket) -> None:
        for _ in range(self._backlog):
            try:
                connection, _ = listening.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # none left, or one gave up while waiting
            except OSError as error:
                if error.errno not in _RESOURCE_ERRORS:
                    raise
                logger.error(
                    "cannot accept connections (%s); trying again in %.0f s",
                    error,
                    ACCEPT_RETRY_SECONDS,
                )
                self._stop_watching()
                self._loop.call_later(ACCEPT_RETRY_SECONDS, self._resume)
                return
            self._hand_over(connection)

    def _resume(self) -> None:
        if not self._closed.is_set() and not self._serving:
            self._watch()

    def _hand_over(self, connection: socket.socket) -> None:
        connection.setblocking(False)
        task = self._loop.create_task(
            self._loop.connect_accepted_socket(
                self._protocol_factory,
                connection,
                ssl=self._ssl,
                ssl_handshake_timeout=self._ssl_handshake_timeout,
            )
        )
        self._connecting.add(task)
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[Any]) -> None:
        self._connecting.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self._loop.call_exception_handler(
                {"message": "could not set up an accepted connection", "exception": error}
            )


def _listening_sockets(host: str | None, port: int, reuse_port: bool) -> list[socket.socket]:
    """Bound, non-blocking sockets for every address `host` stands for (all when empty)."""
    addresses = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                # Each family gets its own socket, as asyncio does.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class ServerLoop(uvloop.Loop):
    """uvloop, except that TCP servers accept every waiting connection at once."""

    # The stubs overload this by argument combination; one signature covers what is served here.
    async def create_server(  # type: ignore[override]
        self,
        protocol_factory: ProtocolFactory,
        host: str | Iterable[str] | None = None,
        port: int | None = None,
        *,
        sock: socket.socket | None = None,
        backlog: int = 100,
        ssl: ssl_module.SSLContext | None = None,
        reuse_port: bool | None = None,
        ssl_handshake_timeout: float | None = None,
        start_serving: bool = True,
        **options: Any,
    ) -> asyncio.AbstractServer:
        if options or not (isinstance(host, str) or host is None):
            # Options this listener does not implement: uvloop's own server has them.
            uvloop_create_server = cast(
                Callable[..., Awaitable[asyncio.AbstractServer]], super().create_server
            )
            return await uvloop_create_server(
                protocol_factory,
                host,
                port,
                sock=sock,
                backlog=backlog,
                ssl=ssl,
                reuse_port=reuse_port,
                ssl_handshake_timeout=ssl_handshake_timeout,
                start_serving=start_serving,
                **options,
            )
        if sock is not None:
            sock.setblocking(False)
            sockets = [sock]
        else:
            sockets = _listening_sockets(host, port or 0, bool(reuse_port))
        listener = Listener(self, sockets, protocol_factory, ssl, backlog, ssl_handshake_timeout)
        if start_serving:
            listener.listen()
        return listener
