"""The throwaway-server harness itself: replication, restarts and clean shutdown."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import servers
from tests.servers import MissingServerBinaries, ServerStack, start_stack


# Its own stack rather than the suite's shared one, because these tests stop and restart servers.
@pytest.fixture(scope="module")
def harness() -> Iterator[ServerStack]:
    stack = start_stack()
    try:
        yield stack
    finally:
        stack.stop()


def _redis_command(port: int, command: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(command)
        return sock.recv(1024)


def test_primary_is_writable_and_replica_is_in_recovery(harness: ServerStack) -> None:
    assert harness.primary.psql("SELECT pg_is_in_recovery()") == "f"
    assert harness.replica.psql("SELECT pg_is_in_recovery()") == "t"
    assert not harness.primary.is_replica
    assert harness.replica.is_replica
    assert (
        harness.primary.dsn()
        == f"postgresql+asyncpg://postgres@127.0.0.1:{harness.primary.port}/app"
    )
    assert harness.replica.dsn("postgres", driver="postgresql").startswith("postgresql://")
    assert harness.redis.url == f"redis://127.0.0.1:{harness.redis.port}/0"
    assert harness.redis.url_for(3).endswith("/3")


def test_rows_written_on_primary_reach_the_replica(harness: ServerStack) -> None:
    harness.primary.psql("CREATE TABLE replicated (id int PRIMARY KEY, note text)")
    harness.primary.psql("INSERT INTO replicated VALUES (1, 'first')")

    harness.wait_for_replica()

    # A fresh harness's first write has once been seen replayed a moment before it was
    # visible there: the row must arrive within a deadline, not in the same instant.
    deadline = time.monotonic() + 10
    while True:
        try:
            assert harness.replica.psql("SELECT note FROM replicated WHERE id = 1") == "first"
            break
        except servers.ServerError:
            assert time.monotonic() < deadline, "the row never reached the replica"
            time.sleep(0.05)
    with pytest.raises(servers.ServerError, match="read-only transaction"):
        harness.replica.psql("INSERT INTO replicated VALUES (2, 'nope')")


def test_replica_catches_up_after_being_stopped(harness: ServerStack) -> None:
    harness.primary.psql("CREATE TABLE while_down (id int)")
    harness.replica.stop()
    harness.replica.stop()
    assert not harness.replica.is_running()
    with pytest.raises(servers.ServerError):
        harness.replica.psql("SELECT 1")

    harness.primary.psql("INSERT INTO while_down SELECT generate_series(1, 1000)")
    harness.replica.start()
    harness.replica.start()
    harness.wait_for_replica()

    assert harness.replica.is_running()
    assert harness.replica.psql("SELECT count(*) FROM while_down") == "1000"


def test_replica_follows_a_restarted_primary(harness: ServerStack) -> None:
    for attempt in range(3):
        harness.primary.restart()
        harness.primary.psql(f"CREATE TABLE after_restart_{attempt} (id int)")
        harness.wait_for_replica()
        assert harness.replica.psql(f"SELECT count(*) FROM after_restart_{attempt}") == "0"


def test_redis_answers_after_stop_and_start(harness: ServerStack) -> None:
    assert _redis_command(harness.redis.port, b"PING\r\n") == b"+PONG\r\n"
    harness.redis.stop()
    harness.redis.stop()
    assert not harness.redis.is_running()
    assert not harness.redis.ping()

    harness.redis.start()

    assert harness.redis.is_running()
    assert _redis_command(harness.redis.port, b"PING\r\n") == b"+PONG\r\n"


def test_stop_leaves_no_processes_or_files_behind() -> None:
    stack = start_stack()
    pids = [stack.primary.postmaster_pid(), stack.replica.postmaster_pid()]
    assert stack.redis.process is not None
    redis_pid = stack.redis.process.pid
    root = stack.root

    stack.stop()
    stack.stop()

    assert not root.exists()
    assert not stack.primary.is_running()
    assert not stack.replica.is_running()
    for pid in [*pids, redis_pid]:
        assert pid is not None
        assert not _alive(pid)


def _alive(pid: int) -> bool:
    # A postmaster is reparented to init once pg_ctl exits, so it may linger as a zombie
    # until init reaps it; that counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


def test_missing_binaries_are_all_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(servers, "_candidate_pg_bindirs", lambda: [tmp_path])
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(MissingServerBinaries) as excinfo:
        servers.find_binaries()

    message = str(excinfo.value)
    for name in ("initdb", "postgres", "pg_ctl", "pg_basebackup", "redis-server"):
        assert name in message
    assert "postgresql-15" in message
    assert isinstance(excinfo.value, RuntimeError)


def test_binaries_found_on_this_machine() -> None:
    binaries = servers.find_binaries()
    assert os.access(binaries.pg_bindir / "postgres", os.X_OK)
    assert os.access(binaries.redis_server, os.X_OK)
