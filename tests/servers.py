"""Throwaway PostgreSQL (primary + streaming replica), Redis and SMTP servers for tests and
benchmarks.

Everything lives in one temporary directory and listens on free ports on 127.0.0.1, so several
stacks can run side by side and nothing touches the machine's own services.

    stack = start_stack()
    try:
        engine_url = stack.primary.dsn()
        ...
    finally:
        stack.stop()

Run ``python -m tests.servers`` for a smoke check.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from types import TracebackType

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = [
    "CeleryProcess",
    "MissingServerBinaries",
    "PostgresServer",
    "RedisServer",
    "ServerBinaries",
    "ServerError",
    "ServerStack",
    "SmtpServer",
    "beat_command",
    "find_binaries",
    "flower_command",
    "free_ports",
    "start_stack",
    "worker_command",
]

LOCALHOST = "127.0.0.1"
PG_SUPERUSER = "postgres"
APP_DATABASE = "app"
REPLICATION_SLOT = "replica"

_PG_BINARIES = ("initdb", "postgres", "pg_ctl", "pg_basebackup", "psql", "pg_isready")
_PG_BINDIR_GLOB = "/usr/lib/postgresql/*/bin"
_POLL_INTERVAL = 0.005
_START_TIMEOUT = 60.0
_COMMAND_TIMEOUT = 120.0

# Durability is pointless for a throwaway cluster; the replication knobs keep the replica's lag
# in the milliseconds and let it reconnect quickly after the primary restarts.
_PRIMARY_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "replica",
    "max_wal_senders": "5",
    "max_replication_slots": "5",
    "wal_keep_size": "'256MB'",
    "hot_standby": "on",
    "hot_standby_feedback": "on",
    "wal_receiver_status_interval": "'1s'",
    "wal_retrieve_retry_interval": "'100ms'",
    "wal_writer_delay": "'10ms'",
    "wal_writer_flush_after": "0",
    "logging_collector": "off",
}


class MissingServerBinaries(RuntimeError):
    """The PostgreSQL or Redis server programs are not installed on this machine."""


class ServerError(RuntimeError):
    """A server failed to start, stop or answer a command."""


@dataclass(frozen=True)
class ServerBinaries:
    pg_bindir: Path
    redis_server: Path


def _candidate_pg_bindirs() -> list[Path]:
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            if out:
                candidates.append(Path(out))

    def version(path: str) -> tuple[int, ...]:
        digits = Path(path).parent.name.split(".")
        return tuple(int(d) for d in digits if d.isdigit())

    candidates.extend(
        Path(p) for p in sorted(glob.glob(_PG_BINDIR_GLOB), key=version, reverse=True)
    )
    return candidates


def find_binaries() -> ServerBinaries:
    """Locate the server programs, or raise MissingServerBinaries naming everything missing."""
    bindirs = _candidate_pg_bindirs()
    pg_bindir = next(
        (d for d in bindirs if all((d / name).is_file() for name in _PG_BINARIES)), None
    )
    missing: list[str] = []
    packages: list[str] = []
    if pg_bindir is None:
        best = bindirs[0] if bindirs else None
        absent = [n for n in _PG_BINARIES if best is None or not (best / n).is_file()]
        where = f"in {best}" if best is not None else "(no pg_config, no /usr/lib/postgresql/*/bin)"
        missing.append(f"PostgreSQL {', '.join(absent)} {where}")
        packages.append("postgresql (or postgresql-15)")
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        missing.append("redis-server (not on PATH)")
        packages.append("redis-server")
    if missing:
        raise MissingServerBinaries(
            f"Cannot start throwaway test servers because these programs are missing: "
            f"{'; '.join(missing)} - install the Debian package(s) {' and '.join(packages)}, "
            f"e.g. `apt-get install -y {' '.join(p.split()[0] for p in packages)}`."
        )
    assert pg_bindir is not None
    assert redis_server is not None
    return ServerBinaries(pg_bindir=pg_bindir, redis_server=Path(redis_server))


def free_ports(count: int = 1) -> list[int]:
    """Ports free on 127.0.0.1 right now; all sockets stay open until the end so none repeat."""
    with contextlib.ExitStack() as stack:
        socks = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            for _ in range(count)
        ]
        for sock in socks:
            sock.bind((LOCALHOST, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def _pg_os_user() -> str | None:
    """PostgreSQL refuses to run as root, so as root everything runs as the postgres user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SUPERUSER)
    except KeyError:
        raise ServerError(
            "running as root, but there is no 'postgres' OS user to run PostgreSQL as"
        ) from None
    return PG_SUPERUSER


def _chown_for(path: Path, os_user: str | None) -> None:
    if os_user is not None:
        entry = pwd.getpwnam(os_user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _describe_failure(what: str, result: subprocess.CompletedProcess[str]) -> str:
    output = "\n".join(part.strip() for part in (result.stdout, result.stderr) if part.strip())
    return f"{what} failed with exit code {result.returncode}:\n{output}"


@dataclass(eq=False)
class PostgresServer:
    """One PostgreSQL instance; its binaries run as ``os_user`` when that is set."""

    name: str
    port: int
    data_dir: Path
    bin_dir: Path
    socket_dir: Path
    log_file: Path
    os_user: str | None = None
    host: str = LOCALHOST
    superuser: str = PG_SUPERUSER

    def dsn(self, database: str = APP_DATABASE, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{self.superuser}@{self.host}:{self.port}/{database}"

    @property
    def is_replica(self) -> bool:
        return (self.data_dir / "standby.signal").exists()

    def run(
        self, program: str, *args: str | Path, timeout: float = _COMMAND_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """Run one of the PostgreSQL programs with this instance's OS user and a clean env."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        if self.os_user is not None:
            home = pwd.getpwnam(self.os_user).pw_dir
            env.update(HOME=home, USER=self.os_user, LOGNAME=self.os_user)
        return subprocess.run(
            [str(self.bin_dir / program), *map(str, args)],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
            # The caller's cwd may not be readable by the postgres user.
            cwd=self.socket_dir.parent,
            env=env,
            timeout=timeout,
            user=self.os_user,
            group=self.os_user,
            extra_groups=[] if self.os_user is not None else None,
        )

    def _check(self, what: str, result: subprocess.CompletedProcess[str]) -> str:
        if result.returncode != 0:
            raise ServerError(f"{self.name}: " + _describe_failure(what, result))
        return result.stdout

    def psql_commands(self, *commands: str, database: str = APP_DATABASE) -> str:
        """Each command runs in its own transaction, in one session; returns stripped stdout."""
        args: list[str] = ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        args += ["-h", str(self.socket_dir), "-p", str(self.port), "-U", self.superuser]
        args += ["-d", database]
        for command in commands:
            args += ["-c", command]
        return self._check(f"psql {commands!r}", self.run("psql", *args)).strip()

    def psql(self, sql: str, database: str = APP_DATABASE) -> str:
        return self.psql_commands(sql, database=database)

    def postmaster_pid(self) -> int | None:
        """The live postmaster's pid according to postmaster.pid, else None."""
        try:
            first_line = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first_line.strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return pid
        return None if state in {"Z", "X"} else pid

    def is_running(self) -> bool:
        return self.postmaster_pid() is not None

    def is_ready(self) -> bool:
        """Accepting connections right now (a starting or consistent-recovery server is not)."""
        result = self.run(
            "pg_isready", "-q", "-h", self.socket_dir, "-p", str(self.port), timeout=10
        )
        return result.returncode == 0

    def start(self) -> None:
        if self.is_running():
            return
        result = self.run(
            "pg_ctl", "start", "-w", "-t", str(int(_START_TIMEOUT)),
            "-D", self.data_dir, "-l", self.log_file,
        )  # fmt: skip
        if result.returncode != 0:
            raise ServerError(
                f"{self.name}: "
                + _describe_failure("pg_ctl start", result)
                + f"\n--- tail of {self.log_file} ---\n{_tail(self.log_file)}"
            )
        # pg_ctl -w returns once the postmaster says it is ready, but a hot standby can report
        # that a moment before it takes connections.
        deadline = time.monotonic() + _START_TIMEOUT
        while not self.is_ready():
            if not self.is_running():
                raise ServerError(
                    f"{self.name} exited right after starting"
                    f"\n--- tail of {self.log_file} ---\n{_tail(self.log_file)}"
                )
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{self.name} does not accept connections after {_START_TIMEOUT:.0f}s"
                    f"\n--- tail of {self.log_file} ---\n{_tail(self.log_file)}"
                )
            time.sleep(_POLL_INTERVAL)

    def stop(self) -> None:
        """Fast shutdown; escalates to immediate, then SIGKILL. No-op when not running."""
        if not self.is_running():
            return
        for mode in ("fast", "immediate"):
            self.run("pg_ctl", "stop", "-w", "-t", "30", "-m", mode, "-D", self.data_dir)
            if not self.is_running():
                return
        pid = self.postmaster_pid()
        if pid is not None:
            # Backends notice the postmaster's death on their own and exit.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while self.is_running() and time.monotonic() < deadline:
                time.sleep(_POLL_INTERVAL)
        if self.is_running():
            raise ServerError(f"{self.name} (pid {pid}) would not stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def _processes(self) -> list[int]:
        """The postmaster and its children (backends, walsender or walreceiver, ...)."""
        postmaster = self.postmaster_pid()
        assert postmaster is not None, f"{self.name} is not running"
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(stat.parent.name))
        return [postmaster, *children]

    def freeze(self) -> None:
        """Hang the server (SIGSTOP): connections stay open, nothing is answered."""
        for pid in self._processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def write_settings(self, settings: dict[str, str]) -> None:
        # Appended, so these win over anything earlier in the file (including initdb's defaults
        # and, on a replica, the primary's copied values).
        lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# throwaway server settings\n" + lines)

    def initdb(self) -> None:
        """Create a fresh cluster in data_dir, configured as a replication primary."""
        result = self.run(
            "initdb", "-D", self.data_dir, "-U", self.superuser, "--auth=trust",
            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip
        self._check("initdb", result)
        self.write_settings(
            {
                **_PRIMARY_SETTINGS,
                "port": str(self.port),
                "unix_socket_directories": f"'{self.socket_dir}'",
            }
        )
        hba = self.data_dir / "pg_hba.conf"
        replication_line = f"host replication all {LOCALHOST}/32 trust"
        if replication_line.split() not in (line.split() for line in hba.read_text().splitlines()):
            with hba.open("a") as f:
                f.write(replication_line + "\n")

    def basebackup_from(self, primary: PostgresServer) -> None:
        """Clone primary into data_dir as a streaming standby (standby.signal + conninfo)."""
        result = self.run(
            "pg_basebackup", "-D", self.data_dir, "-h", primary.host, "-p", str(primary.port),
            "-U", primary.superuser, "-R", "-X", "stream", "-c", "fast",
            "-C", "-S", REPLICATION_SLOT, "--no-sync", "--no-manifest",
        )  # fmt: skip
        self._check("pg_basebackup", result)
        self.write_settings({"port": str(self.port)})


@dataclass(eq=False)
class RedisServer:
    port: int
    dir: Path
    binary: Path
    host: str = LOCALHOST
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    @property
    def log_file(self) -> Path:
        return self.dir / "redis.log"

    def ping(self, timeout: float = 1.0) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> None:
        """Launch without waiting, so the caller can do other work while Redis boots."""
        if self.is_running():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.binary),
                    "--port", str(self.port), "--bind", self.host,
                    "--save", "", "--appendonly", "no",
                    "--dir", str(self.dir), "--daemonize", "no",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                # Keeps a Ctrl-C meant for the parent away; stop()/atexit shut it down instead.
                start_new_session=True,
            )  # fmt: skip

    def wait_ready(self, timeout: float = _START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self.ping():
            if not self.is_running():
                raise ServerError(
                    f"redis-server exited while starting\n--- tail of {self.log_file} ---\n"
                    + _tail(self.log_file)
                )
            if time.monotonic() > deadline:
                raise ServerError(f"redis-server does not answer PING after {timeout:.0f}s")
            time.sleep(_POLL_INTERVAL)

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def freeze(self) -> None:
        """Stop answering without closing anything, like a hung server: no error ever comes."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# Celery processes run exactly as `make worker [Q=...]`, `make flower` and `make beat` (and the
# compose services) run them: the venv's `celery` console script, which puts nothing on
# sys.path, so a test sees what a deployment sees.
_VENV_BIN = Path(sys.executable).parent
CELERY_APP = "celery_task:celery_app"


def worker_command(queues: str | None = None) -> list[str]:
    """`make worker`, or `make worker Q=queues`."""
    command = [str(_VENV_BIN / "celery"), "-A", CELERY_APP, "worker", "--loglevel=INFO"]
    return command + ([f"--queues={queues}"] if queues else [])


def flower_command() -> list[str]:
    """`make flower`."""
    return [str(_VENV_BIN / "python"), "-m", "celery_task.flower"]


def beat_command() -> list[str]:
    """`make beat`."""
    return [str(_VENV_BIN / "celery"), "-A", CELERY_APP, "beat", "--loglevel=INFO"]


@dataclass(eq=False)
class CeleryProcess:
    """A worker, Flower or beat process in its own session, logging to a file."""

    command: list[str]
    log_file: Path
    cwd: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_running(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM to the whole process group (a worker's pool too), SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


_live_stacks: list[ServerStack] = []


class SmtpServer:
    """A real SMTP server (aiosmtpd) on a thread of this process; it keeps what it receives."""

    def __init__(self, port: int, *, smtputf8: bool = True) -> None:
        self.port = port
        self.smtputf8 = smtputf8  # False: a server that takes ASCII addresses only
        # Each message with the envelope's recipients: where it goes, whatever its To header says.
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.refusals: dict[str, list[str]] = {}
        self._controller: Controller | None = None

    def refuse(self, address: str, count: int, reply: str = "451 4.3.0 Try again later") -> None:
        """Answer the next `count` deliveries to `address` with `reply` instead of accepting."""
        self.refusals[address] = [reply] * count

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.refusals.get(address):
            return self.refusals[address].pop()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        message = message_from_bytes(content, _class=EmailMessage, policy=default)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def start(self) -> None:
        self._controller = Controller(
            self, hostname=LOCALHOST, port=self.port, enable_SMTPUTF8=self.smtputf8
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def sent_to(self, address: str) -> list[EmailMessage]:
        return [message for recipients, message in self.messages if address in recipients]


@dataclass(eq=False)
class ServerStack:
    primary: PostgresServer
    replica: PostgresServer
    redis: RedisServer
    smtp: SmtpServer
    root: Path
    remove_root: bool = True
    startup_seconds: float = 0.0

    def wait_for_replica(self, timeout: float = 10.0) -> None:
        """Block until the replica has replayed everything the primary has committed so far."""
        # With synchronous_commit=off the newest commit may still sit in WAL buffers, and the
        # walsender only ships flushed WAL; a synchronous commit of a throwaway xid flushes it.
        target = self.primary.psql_commands(
            "SET synchronous_commit = on",
            "SELECT txid_current()",
            "SELECT pg_current_wal_flush_lsn()",
            database="postgres",
        ).splitlines()[-1]
        query = f"SELECT coalesce(pg_last_wal_replay_lsn() >= '{target}'::pg_lsn, false)"
        deadline = time.monotonic() + timeout
        while self.replica.psql(query, database="postgres") != "t":
            if time.monotonic() > deadline:
                replayed = self.replica.psql("SELECT pg_last_wal_replay_lsn()", database="postgres")
                raise TimeoutError(
                    f"replica replayed WAL up to {replayed or 'nothing'}, primary is at {target},"
                    f" after {timeout}s\n--- tail of {self.replica.log_file} ---\n"
                    + _tail(self.replica.log_file)
                )
            time.sleep(_POLL_INTERVAL)

    def stop(self) -> None:
        """Stop all servers and remove the directory; idempotent."""
        errors: list[Exception] = []
        for server in (self.replica, self.primary):
            try:
                server.stop()
            except Exception as exc:
                errors.append(exc)
        self.redis.stop()
        self.smtp.stop()
        if self in _live_stacks:
            _live_stacks.remove(self)
        if self.remove_root and not any(
            server.is_running() for server in (self.replica, self.primary)
        ):
            shutil.rmtree(self.root, ignore_errors=True)
        if errors:
            raise errors[0]

    def __enter__(self) -> ServerStack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_stack(root: Path | None = None) -> ServerStack:
    """Start primary, replica and Redis under root (a new temp dir when None).

    stop() deletes root only when it was created here. On failure everything already started is
    stopped before the exception propagates.
    """
    started_at = time.perf_counter()
    binaries = find_binaries()
    os_user = _pg_os_user()
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="test-servers-"))
        remove_root = True
    else:
        root = root.resolve()
        root.mkdir(parents=True, exist_ok=True)
        remove_root = False
    socket_dir, log_dir = root / "run", root / "log"
    for directory in (socket_dir, log_dir):
        directory.mkdir(mode=0o700, exist_ok=True)
    for directory in (root, socket_dir, log_dir):
        _chown_for(directory, os_user)

    primary_port, replica_port, redis_port, smtp_port = free_ports(4)

    def postgres(name: str, port: int) -> PostgresServer:
        return PostgresServer(
            name=name,
            port=port,
            data_dir=root / name,
            bin_dir=binaries.pg_bindir,
            socket_dir=socket_dir,
            log_file=log_dir / f"{name}.log",
            os_user=os_user,
        )

    stack = ServerStack(
        primary=postgres("primary", primary_port),
        replica=postgres("replica", replica_port),
        redis=RedisServer(port=redis_port, dir=root / "redis", binary=binaries.redis_server),
        smtp=SmtpServer(smtp_port),
        root=root,
        remove_root=remove_root,
    )
    _live_stacks.append(stack)
    try:
        stack.redis.spawn()
        stack.smtp.start()
        stack.primary.initdb()
        stack.primary.start()
        stack.primary.psql(f"CREATE DATABASE {APP_DATABASE}", database="postgres")
        stack.replica.basebackup_from(stack.primary)
        stack.replica.start()
        stack.redis.wait_ready()
    except BaseException:
        with contextlib.suppress(Exception):
            stack.stop()
        raise
    stack.startup_seconds = time.perf_counter() - started_at
    return stack


@atexit.register
def _stop_leftover_stacks() -> None:
    for stack in list(_live_stacks):
        with contextlib.suppress(Exception):
            stack.stop()


def main() -> int:
    stack = start_stack()
    try:
        print(f"started in {stack.startup_seconds:.2f}s under {stack.root}")
        print(f"primary  {stack.primary.dsn()}")
        print(f"replica  {stack.replica.dsn()}")
        print(f"redis    {stack.redis.url}")
        in_recovery = {
            server.name: server.psql("SELECT pg_is_in_recovery()")
            for server in (stack.primary, stack.replica)
        }
        print(f"pg_is_in_recovery: {in_recovery}")
        ok = in_recovery == {"primary": "f", "replica": "t"} and stack.redis.ping()
    finally:
        stop_started = time.perf_counter()
        stack.stop()
        print(f"stopped in {time.perf_counter() - stop_started:.2f}s")
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
