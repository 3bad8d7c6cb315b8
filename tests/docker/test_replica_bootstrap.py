"""docker/postgres/bootstrap-replica.sh, run for real against the throwaway primary."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import PostgresServer, ServerStack, free_ports

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docker" / "postgres" / "bootstrap-replica.sh"


@pytest.fixture
def bootstrapped_replica(stack: ServerStack) -> Iterator[PostgresServer]:
    name = f"bootstrapped-{uuid.uuid4().hex[:6]}"
    slot = name.replace("-", "_")
    (port,) = free_ports(1)
    replica = PostgresServer(
        name=name,
        port=port,
        data_dir=stack.root / name,
        bin_dir=stack.primary.bin_dir,
        socket_dir=stack.primary.socket_dir,
        log_file=stack.root / "log" / f"{name}.log",
        os_user=stack.primary.os_user,
    )
    env = {
        "PATH": f"{replica.bin_dir}:{os.environ['PATH']}",
        "PGDATA": str(replica.data_dir),
        "PRIMARY_HOST": stack.primary.host,
        "PRIMARY_PORT": str(stack.primary.port),
        "REPLICATION_USER": stack.primary.superuser,
        "REPLICATION_SLOT": slot,
    }
    process = subprocess.Popen(
        [
            *("bash", str(SCRIPT)),
            *("-p", str(port), "-k", str(replica.socket_dir)),
            *("-c", f"listen_addresses={replica.host}"),
        ],
        env=env,
        cwd=stack.root,
        stdout=replica.log_file.open("wb") if replica.os_user is None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        user=replica.os_user,
        group=replica.os_user,
        extra_groups=[] if replica.os_user is not None else None,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not replica.is_ready():
            assert process.poll() is None, "the bootstrap script exited"
            assert time.monotonic() < deadline, "the replica did not come up"
            time.sleep(0.1)
        yield replica
    finally:
        replica.stop()
        process.wait(timeout=30)
        stack.primary.psql(f"SELECT pg_drop_replication_slot('{slot}')")


def test_the_bootstrap_script_makes_a_streaming_replica(
    stack: ServerStack, bootstrapped_replica: PostgresServer
) -> None:
    slot = bootstrapped_replica.name.replace("-", "_")

    assert bootstrapped_replica.psql("SELECT pg_is_in_recovery()") == "t"
    table = f"probe_{uuid.uuid4().hex[:8]}"
    stack.primary.psql(f"CREATE TABLE {table} AS SELECT 42 AS answer")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (
            bootstrapped_replica.psql(f"SELECT count(*) FROM pg_class WHERE relname = '{table}'")
            == "1"
        ):
            break
        time.sleep(0.1)
    assert bootstrapped_replica.psql(f"SELECT answer FROM {table}") == "42"
    assert (
        stack.primary.psql(f"SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'")
        == "t"
    )
    assert "streaming" in stack.primary.psql("SELECT state FROM pg_stat_replication")
    stack.primary.psql(f"DROP TABLE {table}")
