"""The server's event loop: uvloop whose listeners take every waiting connection at once."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Coroutine
from typing import Any, cast

from core.event_loop import ServerLoop

CONNECTIONS = 20


def run_on_server_loop(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    async def within_a_time_limit() -> None:
        async with asyncio.timeout(10):  # a connection never made must fail the test, not hang it
            await scenario()

    with asyncio.Runner(loop_factory=ServerLoop) as runner:
        runner.run(within_a_time_limit())


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


def test_a_busy_loop_takes_every_waiting_connection_in_one_turn() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        turns = 0

        def count_turns() -> None:
            # Rescheduled every time it runs: counts the turns of the loop.
            nonlocal turns
            turns += 1
            loop.call_soon(count_turns)

        made_at: list[int] = []
        all_made = asyncio.Event()

        class Counted(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                made_at.append(turns)
                if len(made_at) == CONNECTIONS:
                    all_made.set()

        server = await loop.create_server(Counted, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        # All of them wait in the backlog before the loop looks again, as a burst does while
        # the loop is busy serving.
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(CONNECTIONS)]
        count_turns()
        await all_made.wait()
        # uvloop's own server takes one per turn: the last would come 20 turns later.
        assert max(made_at) - min(made_at) <= 2
        server.close()
        await server.wait_closed()
        for client in clients:
            client.close()

    run_on_server_loop(scenario)


def test_connections_are_served_until_the_listener_is_closed() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        assert server.is_serving()
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"

        server.close()
        await server.wait_closed()
        assert not server.is_serving()
        try:
            await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            pass
        else:
            raise AssertionError("a closed listener still accepted a connection")
        # A connection accepted before stays with whoever serves it (uvicorn closes its own).
        writer.write(b"pong")
        assert await reader.readexactly(4) == b"pong"
        writer.close()

    run_on_server_loop(scenario)


def test_a_given_socket_is_served_as_uvicorn_passes_it_to_workers() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        sock = socket.create_server(("127.0.0.1", 0))
        server = await loop.create_server(Echo, sock=sock, backlog=16)
        assert server.sockets == (sock,)
        reader, writer = await asyncio.open_connection(*sock.getsockname())
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        writer.close()
        server.close()

    run_on_server_loop(scenario)


# Serves echoes with so few file descriptors that the third client finds none left.
OUT_OF_DESCRIPTORS_SERVER = textwrap.dedent(
    """
    import asyncio, os, resource
    from core.event_loop import ServerLoop
    from tests.core.test_event_loop import Echo

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        in_use = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 2, in_use + 2))
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.sleep(30)

    with asyncio.Runner(loop_factory=ServerLoop) as runner:
        runner.run(main())
    """
)


def test_running_out_of_file_descriptors_pauses_accepting_and_then_resumes() -> None:
    server = subprocess.Popen(
        [sys.executable, "-c", OUT_OF_DESCRIPTORS_SERVER],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(4)]
        answered = []
        for client in clients[:2]:
            client.sendall(b"x")
            answered.append(client.recv(1))
        assert answered == [b"x", b"x"]
        # The server has no descriptor left for the others: they wait in the backlog.
        for client in clients[:2]:
            client.close()
        # Their descriptors come free; once the pause is over the others are served.
        for client in clients[2:]:
            client.sendall(b"y")
            assert client.recv(1) == b"y"
            client.close()
        assert server.poll() is None
    finally:
        server.kill()
        _, errors = server.communicate()
    assert "cannot accept connections" in errors
