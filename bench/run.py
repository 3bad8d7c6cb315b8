"""`make bench`: the old code and the new side by side, and both against bare and raw-limit apps.

The old code is a git worktree of OLD_REF; the new code is this checkout's working tree. Each
tree gets its own database (migrated and seeded by its own code, with the same data) on one
PostgreSQL primary + streaming replica, and its own Redis, so neither hears the other's change
announcements. Servers run on core 0 (uvicorn, one worker, httptools, no access log); wrk,
PostgreSQL, Redis and this script on core 1. Every load gets a warm-up, then ROUNDS interleaved
rounds (old and new back to back, in alternating order); the table shows medians, and
bench/results/<timestamp>.json keeps every figure. See bench/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from tests.servers import RedisServer, ServerStack, find_binaries, free_ports, start_stack

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
LUA = BENCH / "lua" / "requests.lua"
SERVER_CORE, LOAD_CORE = "0", "1"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
CELERY_TASKS = int(os.environ.get("BENCH_TASKS", "500"))
OLD_REF = os.environ.get("BENCH_OLD_REF", "cba0989")
NEW_TREE = Path(os.environ.get("BENCH_NEW_TREE", str(ROOT))).resolve()
# The new code once more with METRICS_ENABLED=false, on the loads named in metrics_off().
METRICS = os.environ.get("BENCH_METRICS", "1") != "0"
METRICS_TARGET = 0.90
WARMUP_SECONDS = 2
CONNECTIONS = 64
USERS = 1000
POSTS = 2000
# Every refresh token is single use: enough for a run of the fastest server seen, and then some.
REFRESH_TOKENS_PER_RUN = max(15000, 3000 * SECONDS)
SECRET = "bench-secret-that-is-long-enough-for-hs256-0123456789"
TREES = ("old", "new")
READ_TARGET, WRITE_TARGET = 0.75, 0.35
# Auth states expire after a minute; a live API's active users keep theirs warm.
PRIME_EVERY_SECONDS = 30
# More requests at once than any pool has connections, so every connection serves one.
FLUSHING_REQUESTS = CONNECTIONS


@dataclass
class Run:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    rss_mb: float
    users_scans_per_request: float | None = None
    redis_script_calls_per_request: float | None = None


@dataclass
class Load:
    """One wrk load against one server, and its runs."""

    server: str  # old, new, off (new without metrics), bare or limit
    path: str
    entries: str | None = None  # users, admin or refresh: the file requests.lua reads
    mode: str = "bearer"
    hold: str | None = None  # a cache namespace kept on hold: every read misses
    cursors: bool = False  # a random cursor per request
    vacuum: tuple[str, ...] = ()  # the tables it writes, vacuumed after each run
    runs: list[Run] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return float(statistics.median(getattr(run, attribute) for run in self.runs))


@dataclass
class Row:
    """A line of the table: one scenario on the old and the new code, and its baseline."""

    name: str
    kind: str  # read, write or other: which target, if any, applies
    baseline: str | None  # a key of baselines()
    old: Load | None  # None: the old code has no such route
    new: Load

    def load(self, tree: str) -> Load | None:
        return self.old if tree == "old" else self.new


@dataclass
class Tree:
    name: str
    path: Path
    database: str
    redis: RedisServer
    loop: str
    python: str
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    cursor_parameter: str = "cursor"


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    report: dict[str, Any]


def baselines() -> dict[str, tuple[str, Load]]:
    return {
        "bare": ("bare FastAPI /ping", Load("bare", "/ping")),
        "limit me": ("limit app: token + one row", Load("limit", "/api/v1/users/me", "users")),
        "limit list": (
            "limit app: admin check + 10 rows",
            Load("limit", "/api/v1/users?limit=10", "admin", "list", cursors=True),
        ),
        "limit posts": (
            "limit app: 20 posts, anonymous",
            Load("limit", "/api/v1/posts?limit=20"),
        ),
        "limit patch": (
            "limit app: UPDATE + PUBLISH",
            Load("limit", "/api/v1/users", "users", "patch", vacuum=("users",)),
        ),
    }


def metrics_off() -> dict[str, Load]:
    """The new code's loads measured again without metrics, by the name of their row."""
    if not METRICS:
        return {}
    return {
        "/health": Load("off", "/health"),
        "/users/me cached": Load("off", "/api/v1/users/me", "users"),
    }


SCRIPT_COMMANDS = ("cmdstat_evalsha", "cmdstat_eval")
# The new code's PATCH scenario served with RATE_LIMIT_ENABLED=false: the limiter's cost.
LIMITS_OFF = "PATCH /users/{id}, limits off"
WITH_LIMITS = "PATCH /users/{id} nickname"


def limits_off() -> Load:
    return Load("limits-off", "/api/v1/users", "users", "patch", vacuum=("users",))


def rows() -> list[Row]:
    def row(name: str, kind: str, baseline: str | None, old: bool = True, **load: Any) -> Row:
        return Row(name, kind, baseline, Load("old", **load) if old else None, Load("new", **load))

    list_path = "/api/v1/users?limit=10"
    return [
        row("/health", "read", "bare", path="/health"),
        row(
            "/users/me uncached",
            "read",
            "limit me",
            path="/api/v1/users/me",
            entries="users",
            hold="user",
        ),
        row("/users/me cached", "read", "bare", path="/api/v1/users/me", entries="users"),
        row(
            "/users?limit=10 uncached",
            "read",
            "limit list",
            path=list_path,
            entries="admin",
            mode="list",
            hold="get_user_list",
            cursors=True,
        ),
        row("/users?limit=10 cached", "read", "bare", path=list_path, entries="admin"),
        # Posts came after the old code: measured against the limit app only.
        row(
            "/posts?limit=20 cached",
            "other",
            "limit posts",
            old=False,
            path="/api/v1/posts?limit=20",
        ),
        row(
            "POST /auth/refresh",
            "other",
            None,
            path="/api/v1/auth/refresh",
            entries="refresh",
            mode="refresh",
            vacuum=("auth_sessions",),
        ),
        row(
            "PATCH /users/{id} nickname",
            "write",
            "limit patch",
            path="/api/v1/users",
            entries="users",
            mode="patch",
            vacuum=("users",),
        ),
    ]


def script_calls(client: redis.Redis) -> int:
    """EVALSHA and EVAL calls so far: the limiter's reads and writes and the cache's reads are
    one script call each, so the difference with and without the limiter is its round trips."""
    stats = client.info("commandstats")
    return sum(int(stats.get(name, {}).get("calls", 0)) for name in SCRIPT_COMMANDS)


def run_checked(command: list[str], what: str, **options: Any) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False, **options)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def pin(pid: int, core: str) -> None:
    subprocess.run(["taskset", "-a", "-p", "-c", core, str(pid)], check=True, capture_output=True)


def pin_stack(stack: ServerStack, extra_redis: RedisServer) -> None:
    for postgres in (stack.primary, stack.replica):
        postmaster = postgres.postmaster_pid()
        assert postmaster is not None
        pin(postmaster, LOAD_CORE)
        children = subprocess.run(
            ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False
        ).stdout.split()
        for child in children:
            pin(int(child), LOAD_CORE)
    for redis_server in (stack.redis, extra_redis):
        assert redis_server.process is not None
        pin(redis_server.process.pid, LOAD_CORE)


def old_loop(tree: Path) -> str:
    """The loop the old main.py serves on, so the old code runs as it shipped."""
    if loop := os.environ.get("BENCH_OLD_LOOP"):
        return loop
    found = re.search(r'\bloop="([^"]+)"', (tree / "main.py").read_text())
    return found.group(1) if found else "uvloop"


def tree_env(tree: Tree, stack: ServerStack) -> dict[str, str]:
    """The tree's settings, and a sys.path that starts with the tree, whatever the venv has."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(
        ENV="dev",
        WRITER_DB_URL=stack.primary.dsn(tree.database),
        READER_DB_URL=stack.replica.dsn(tree.database),
        REDIS_URL=tree.redis.url_for(0),
        CELERY_BROKER_URL=tree.redis.url_for(1),
        CELERY_BACKEND_URL=tree.redis.url_for(2),
        JWT_SECRET_KEY=SECRET,
        LOG_LEVEL="WARNING",
        DB_POOL_SIZE="10",
        FORWARDED_ALLOW_IPS="127.0.0.1",
        # Limited routes count every request but never refuse one: the cost, not the refusals
        # (the most one limit allows, over a window no load here fills).
        RATE_LIMIT_DEFAULT="10000/second",
        PYTHONPATH=str(tree.path),
        PYTHONSAFEPATH="1",
        METRICS_ENABLED="true",
    )
    return env


def prepare(tree: Tree, stack: ServerStack, workdir: Path) -> None:
    """Create, migrate and seed the tree's database with the tree's own code."""
    stack.primary.psql(f"CREATE DATABASE {tree.database}", database="postgres")
    options: dict[str, Any] = {"cwd": tree.path, "env": tree.env}
    run_checked(
        [tree.python, "-P", "-m", "alembic", "upgrade", "head"], f"{tree.name}: alembic", **options
    )
    out = workdir / tree.name
    run_checked(
        [
            *(tree.python, "-P", str(BENCH / "seed.py"), "--out", str(out)),
            *("--users", str(USERS), "--posts", str(POSTS), "--refresh-runs", str(ROUNDS + 1)),
            *("--refresh-tokens", str(REFRESH_TOKENS_PER_RUN), "user", "get_user_list"),
        ],
        f"{tree.name}: seed",
        **options,
    )
    tree.info = json.loads((out / "tree.json").read_text())
    tree.files = {"users": out / "users.txt", "admin": out / "admin.txt"}
    for run in range(ROUNDS + 1):
        tree.files[f"refresh-{run}"] = out / f"refresh-{run}.txt"
    check_imports(tree, tree.info["core_file"], "seed")


def check_imports(tree: Tree, core_file: str | None, what: str) -> None:
    if core_file is None or not Path(core_file).resolve().is_relative_to(tree.path):
        raise RuntimeError(f"{tree.name} {what} imported core from {core_file}, not {tree.path}")


def start_server(
    name: str,
    app: str,
    cwd: Path,
    env: dict[str, str],
    python: str,
    workdir: Path,
    loop: str = "uvloop",
) -> Server:
    port = free_ports(1)[0]
    log, report = workdir / f"{name}.log", workdir / f"{name}.json"
    command = [
        *("taskset", "-c", SERVER_CORE, python, "-P", str(BENCH / "serve.py"), app),
        *("--port", str(port), "--loop", loop, "--report", str(report)),
        *(["--factory"] if app.endswith(":create_app") else []),
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=output)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return Server(name, port, process, log, json.loads(report.read_text()))
        except OSError:
            time.sleep(0.2)
    process.terminate()
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    raise RuntimeError(f"the {name} server did not start; the end of its log:\n{tail}")


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(output: str, label: str) -> float:
    found = re.search(rf"{label}\s+([\d.]+)(us|ms|s|m)\b", output)
    return float(found.group(1)) * _UNITS[found.group(2)] if found else float("nan")


def wrk(
    url: str, seconds: int, arguments: list[str], label: str
) -> tuple[float, float, float, int, int]:
    command = [
        *("taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s"),
        *("--latency", "--timeout", "10s", "-s", str(LUA), url, "--", *arguments),
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=False).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rate is None:
        print(f"    {label}: wrk said:\n{output}")
    requests = re.search(r"(\d+) requests in", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if errors := re.search(r"Socket errors:.*", output):
        print(f"    {label}: {errors.group(0)}")
    return (
        float(rate.group(1)) if rate else 0.0,
        _ms(output, "50%"),
        _ms(output, "99%"),
        int(requests.group(1)) if requests else 0,
        int(non_2xx.group(1)) if non_2xx else 0,
    )


def tokens(tree: Tree) -> list[str]:
    return [line.split()[-1] for line in tree.files["users"].read_text().splitlines() if line]


def admin_token(files: dict[str, Path]) -> str:
    return files["admin"].read_text().split()[1]


def collect_cursors(port: int, token: str) -> tuple[str, list[str], list[str]]:
    """Real cursors of the user list, one after each user, from walking it one user a page;
    and the id each one comes after. Falls back to page numbers if the list has no cursors."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as client:

        def page(**params: Any) -> dict[str, Any]:
            response = client.get("/api/v1/users", params=params)
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body

        def walk(limit: int) -> tuple[list[str], list[str]]:
            cursors: list[str] = []
            after: list[str] = []
            body = page(limit=limit)
            while body.get("next_cursor"):
                cursors.append(body["next_cursor"])
                after.append(str(body["items"][-1]["id"]))
                body = page(limit=limit, cursor=cursors[-1])
            return cursors, after

        if "next_cursor" not in page(limit=1):
            return "page", [str(n) for n in range(1, USERS // 10 + 1)], []
        cursors, after = walk(1)
        if (
            cursors
            and client.get(
                "/api/v1/users", params={"limit": 10, "cursor": cursors[len(cursors) // 2]}
            ).is_success
        ):
            return "cursor", cursors, after
        print("    cursors from pages of 1 are refused with limit=10: using pages of 10")
        cursors, after = walk(10)
        return "cursor", cursors, after


def send(port: int, requests: list[tuple[str, str]], connections: int) -> None:
    """GET each (path, bearer token) over `connections` keep-alive connections; every answer
    must be a 2xx. Plain HTTP/1.1 on asyncio streams: an HTTP client library would spend more
    of the load generator's core per request than the servers under test do."""
    pending = list(reversed(requests))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while pending:
                path, token = pending.pop()
                writer.write(
                    f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Authorization: Bearer {token}\r\n\r\n".encode()
                )
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
                status = int(head.split(" ", 2)[1])
                length = re.search(r"\r\ncontent-length:\s*(\d+)", head)
                if not 200 <= status < 300 or length is None:
                    raise RuntimeError(f"GET {path}: {head.splitlines()[0]}")
                await reader.readexactly(int(length.group(1)))
        finally:
            writer.close()

    async def all_of_them() -> None:
        await asyncio.gather(*(connection() for _ in range(min(connections, len(requests)))))

    asyncio.run(all_of_them())


def vacuum(stack: ServerStack, database: str, tables: tuple[str, ...]) -> None:
    """Clean up after a write scenario at once. Left to autovacuum, the cleanup ran during a
    later scenario, on the load generator's core, and gave it a p99 tail that was not its own."""
    with psycopg.connect(stack.primary.dsn(database, driver="postgresql"), autocommit=True) as db:
        db.execute(f"VACUUM (ANALYZE) {', '.join(tables)}")
    stack.wait_for_replica()


class Holds:
    """Make every read of a cache namespace miss, in every process of a tree. The one place
    that knows the cache's key layout (cache:<namespace>:version and :hold), the same in both
    trees; the old tree's processes keep copies, so its removals are also announced."""

    def __init__(self, tree: Tree) -> None:
        self.cache = redis.Redis.from_url(tree.redis.url_for(0))
        self.announce = tree.info.get("announce")

    def hold(self, namespace: str, seconds: int) -> None:
        """What removing the namespace does (a new version, a hold, the announcement), with a
        hold that lasts the whole run: every read misses, and stores nothing."""
        self.cache.incr(f"cache:{namespace}:version")
        self.cache.set(f"cache:{namespace}:hold", b"1", px=seconds * 1000)
        self._announce(namespace)

    def release(self, namespace: str) -> None:
        """End a hold early (no real removal does), and tell every process so."""
        self.cache.delete(f"cache:{namespace}:hold")
        self._announce(namespace)

    def _announce(self, namespace: str) -> None:
        if self.announce:
            message = bytes.fromhex(self.announce["messages"][namespace])
            self.cache.publish(self.announce["channel"], message)

    def close(self) -> None:
        self.cache.close()


class Scans:
    """Scans of the users table on the primary and the replica: how often a request read it."""

    def __init__(self, stack: ServerStack, database: str) -> None:
        self.connections = [
            psycopg.connect(server.dsn(database, driver="postgresql"), autocommit=True)
            for server in (stack.primary, stack.replica)
        ]

    def count(self) -> int:
        total = 0
        for connection in self.connections:
            row = connection.execute(
                "SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) "
                "FROM pg_stat_user_tables WHERE relname = 'users'"
            ).fetchone()
            total += int(row[0]) if row else 0
        return total

    def close(self) -> None:
        for connection in self.connections:
            connection.close()


def versions() -> dict[str, str]:
    names = ["fastapi", "starlette", "uvicorn", "sqlalchemy", "asyncpg", "celery", "redis", "pyjwt"]
    found = {name: metadata.version(name) for name in names}
    found["python"] = platform.python_version()
    found["wrk"] = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[
        0
    ]
    return found


def describe_tree(path: Path, ref: str | None) -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(path), *args], capture_output=True, text=True, check=False
        ).stdout.strip()

    changed = [line for line in git("status", "--porcelain").splitlines() if line]
    return {"ref": ref, "commit": git("rev-parse", "HEAD"), "uncommitted_paths": len(changed)}


class Bench:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.stack: ServerStack | None = None
        self.old_redis: RedisServer | None = None
        self.worktree: Path | None = None
        self.servers: dict[str, Server] = {}
        self.trees: dict[str, Tree] = {}
        self.baselines = baselines()
        self.rows = rows()
        self.metrics_off = metrics_off()
        self.limits_off = limits_off()
        self.holds: dict[str, Holds] = {}
        self.scans: dict[str, Scans] = {}
        self.last_primed: dict[str, float] = {}
        self.limit_cursors: Path = workdir / "limit-cursors.txt"
        self.celery: dict[str, dict[str, list[float]]] = {}
        self.phases: dict[str, float] = {}

    def setup(self) -> None:
        self.worktree = self.workdir / "old"
        run_checked(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(self.worktree), OLD_REF],
            "git worktree add",
        )
        self.stack = stack = start_stack(self.workdir / "servers")
        self.old_redis = RedisServer(
            port=free_ports(1)[0],
            dir=self.workdir / "servers" / "redis-old",
            binary=find_binaries().redis_server,
        )
        self.old_redis.start()
        pin_stack(stack, self.old_redis)
        python = sys.executable
        self.trees = {
            "old": Tree(
                "old",
                self.worktree,
                "bench_old",
                self.old_redis,
                old_loop(self.worktree),
                os.environ.get("BENCH_OLD_PYTHON", python),
            ),
            "new": Tree("new", NEW_TREE, "bench_new", stack.redis, "uvloop", python),
        }
        for tree in self.trees.values():
            tree.env = tree_env(tree, stack)
            print(f"{tree.name}: migrating and seeding {tree.database} from {tree.path}...")
            prepare(tree, stack, self.workdir)
        stack.wait_for_replica()
        for tree in self.trees.values():
            server = start_server(
                tree.name,
                "app.server:create_app",
                tree.path,
                tree.env,
                tree.python,
                self.workdir,
                tree.loop,
            )
            self.servers[tree.name] = server
            check_imports(tree, server.report["core_file"], "server")
            print(f"{tree.name}: serving {server.report['core_file']} on loop {tree.loop}")
        if self.metrics_off:
            new = self.trees["new"]
            env = {**new.env, "METRICS_ENABLED": "false"}
            self.servers["off"] = start_server(
                "off", "app.server:create_app", new.path, env, new.python, self.workdir
            )
            check_imports(new, self.servers["off"].report["core_file"], "server")
        new = self.trees["new"]
        self.servers["limits-off"] = start_server(
            "limits-off",
            "app.server:create_app",
            new.path,
            {**new.env, "RATE_LIMIT_ENABLED": "false"},
            new.python,
            self.workdir,
            new.loop,
        )
        baseline_env = {**self.trees["new"].env, "PYTHONPATH": str(ROOT)}
        baseline_env["REDIS_URL"] = stack.redis.url_for(3)
        for name, app in (
            ("bare", "bench.baselines:bare_fastapi"),
            ("limit", "bench.baselines:limit_app"),
        ):
            self.servers[name] = start_server(name, app, ROOT, baseline_env, python, self.workdir)
        for name, tree in self.trees.items():
            parameter, cursors, after = collect_cursors(
                self.servers[name].port, admin_token(tree.files)
            )
            tree.cursor_parameter = parameter
            tree.files["cursors"] = self.workdir / name / "cursors.txt"
            tree.files["cursors"].write_text("\n".join(cursors) + "\n")
            if name == "new":
                self.limit_cursors.write_text("\n".join(after or ["0"]) + "\n")
            print(f"{name}: {len(cursors)} list {parameter}s collected")
            self.holds[name] = Holds(tree)
            self.scans[name] = Scans(stack, tree.database)

    def arguments(self, load: Load, run_index: int) -> list[str]:
        files = self.trees[load.server if load.server in TREES else "new"].files
        if load.entries is None:
            # A liveness probe or a public page carries no token: one would make the server
            # authenticate every request, and the row would measure that instead.
            return [str(files["users"]), "anonymous"]
        entries = f"refresh-{run_index}" if load.entries == "refresh" else load.entries
        arguments = [str(files[entries]), load.mode]
        if load.cursors:
            if load.server == "limit":
                arguments += [str(self.limit_cursors), "cursor"]
            else:
                tree = self.trees[load.server]
                arguments += [str(tree.files["cursors"]), tree.cursor_parameter]
        return arguments

    def measure(self, load: Load, seconds: int, run_index: int, label: str) -> Run:
        assert self.stack is not None
        server = self.servers[load.server]
        tree = self.trees.get("new" if load.server == "off" else load.server)
        if tree and load.entries == "users":
            since = time.monotonic() - self.last_primed.get(tree.name, -1e9)
            if since > PRIME_EVERY_SECONDS or (load.hold is None and load.mode == "bearer"):
                # Every user's auth state loaded, and what a cached scenario reads cached.
                with self.timed("prime"):
                    send(server.port, [("/api/v1/users/me", t) for t in tokens(tree)], 16)
                self.last_primed[tree.name] = time.monotonic()
        # The first round of an uncached load also counts how often it read the users table.
        counted = tree if load.hold and run_index == 1 else None
        if tree and load.hold:
            self.holds[tree.name].hold(load.hold, seconds + 10)
        with self.timed("count"):
            scans_before = self.flushed_scans(counted, load) if counted else 0
        # Script calls the new code makes to Redis, each one round trip.
        redis_client = None
        if load.server in ("new", "limits-off"):
            redis_client = redis.Redis(port=self.stack.redis.port)
            calls_before = script_calls(redis_client)
        rate, p50, p99, requests, non_2xx = wrk(
            f"http://127.0.0.1:{server.port}{load.path}",
            seconds,
            self.arguments(load, run_index),
            label,
        )
        run = Run(rate, p50, p99, requests, non_2xx, rss_mb(server.process.pid))
        if redis_client is not None:
            calls = script_calls(redis_client) - calls_before
            run.redis_script_calls_per_request = calls / max(1, requests)
            redis_client.close()
        if counted:
            with self.timed("count"):
                scans = self.flushed_scans(counted, load) - scans_before
            run.users_scans_per_request = scans / (requests + FLUSHING_REQUESTS)
        if tree and load.hold:
            self.holds[tree.name].release(load.hold)
        if load.vacuum:
            database = tree.database if tree else self.trees["new"].database
            with self.timed("vacuum"):
                vacuum(self.stack, database, load.vacuum)
        return run

    @contextlib.contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Time what a measurement does besides wrk, so a slow run can say where it went."""
        began = time.monotonic()
        try:
            yield
        finally:
            self.phases[phase] = self.phases.get(phase, 0.0) + time.monotonic() - began

    def flushed_scans(self, tree: Tree, load: Load) -> int:
        """The users-table scans so far, all of them: a backend publishes its statistics at a
        transaction's end at most once a second, and when idle only ten seconds later, so each
        pooled connection is given a request of the load's kind a second after the last."""
        time.sleep(1.1)
        if load.cursors:
            cursors = tree.files["cursors"].read_text().split()
            admin = admin_token(tree.files)
            separator = "&" if "?" in load.path else "?"
            requests = [
                (f"{load.path}{separator}{tree.cursor_parameter}={random.choice(cursors)}", admin)
                for _ in range(FLUSHING_REQUESTS)
            ]
        else:
            requests = [(load.path, token) for token in tokens(tree)[:FLUSHING_REQUESTS]]
        send(self.servers[tree.name].port, requests, FLUSHING_REQUESTS)
        return self.scans[tree.name].count()

    def schedule(self, round_index: int) -> list[tuple[str, Load]]:
        """Every load once: each baseline before the first row that uses it, then the row's
        old and new code back to back, the old first in odd rounds and the new in even ones."""
        scheduled: list[tuple[str, Load]] = []
        seen: set[str] = set()
        for row in self.rows:
            if row.baseline and row.baseline not in seen:
                seen.add(row.baseline)
                name, load = self.baselines[row.baseline]
                scheduled.append((name, load))
            loads = [(f"{row.name} [{tree}]", side) for tree in TREES if (side := row.load(tree))]
            if off := self.metrics_off.get(row.name):
                loads.append((f"{row.name} [metrics off]", off))
            if row.name == WITH_LIMITS:
                loads.append((LIMITS_OFF, self.limits_off))
            scheduled += loads if round_index % 2 else loads[::-1]
        return scheduled

    def measure_all(self) -> None:
        started = time.monotonic()
        print(f"warm-up ({WARMUP_SECONDS} s each)...")
        for label, load in self.schedule(0):
            self.measure(load, WARMUP_SECONDS, 0, label)
        for round_index in range(1, ROUNDS + 1):
            print(f"round {round_index}/{ROUNDS} ({SECONDS} s each)...")
            for label, load in self.schedule(round_index):
                began, self.phases = time.monotonic(), {}
                run = self.measure(load, SECONDS, round_index, label)
                load.runs.append(run)
                phases = "".join(
                    f", {name} {spent:.1f}" for name, spent in self.phases.items() if spent >= 0.05
                )
                print(
                    f"  {label:40} {run.requests_per_second:8.0f} req/s  p99 {run.p99_ms:7.2f} ms"
                    f"  ({time.monotonic() - began:.1f} s{phases})"
                )
        print(f"measured in {time.monotonic() - started:.0f} s")

    def stop_servers(self) -> None:
        for server in self.servers.values():
            server.process.terminate()
        for server in self.servers.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.process.wait(timeout=30)
        self.servers = {}

    def celery_round_trips(self) -> None:
        for name, tree in self.trees.items():
            print(f"{name}: celery round trip...")
            out = self.workdir / name / "celery.json"
            try:
                run_checked(
                    [
                        *(tree.python, "-P", str(BENCH / "celery_round_trip.py")),
                        *("--core", SERVER_CORE, "--rounds", str(ROUNDS)),
                        *("--tasks", str(CELERY_TASKS), "--users", str(USERS), "--out", str(out)),
                    ],
                    f"{name}: celery round trip",
                    cwd=tree.path,
                    env=tree.env,
                )
            except RuntimeError as error:
                # The HTTP figures are worth reporting without it.
                print(f"    {error}")
                continue
            self.celery[name] = json.loads(out.read_text())

    def close(self) -> None:
        for resource in [*self.holds.values(), *self.scans.values()]:
            with contextlib.suppress(Exception):
                resource.close()  # type: ignore[attr-defined]
        for server in self.servers.values():
            server.process.terminate()
        if self.old_redis is not None:
            self.old_redis.stop()
        if self.stack is not None:
            self.stack.stop()
        if self.worktree is not None and self.worktree.exists():
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(self.worktree)],
                capture_output=True,
                check=False,
            )
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=False)


def main() -> int:
    for tool in ("wrk", "taskset", "git"):
        if shutil.which(tool) is None:
            print(f"make bench needs {tool} (Debian: apt-get install -y wrk util-linux git)")
            return 2
    known = ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{OLD_REF}^{{commit}}"]
    if subprocess.run(known, capture_output=True, check=False).returncode != 0:
        print(f"BENCH_OLD_REF={OLD_REF} is not in this clone (a shallow one?): run")
        print("`git fetch --unshallow`, or name another commit with BENCH_OLD_REF")
        return 2
    os.sched_setaffinity(0, {int(LOAD_CORE)})
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    workdir.chmod(0o755)  # the servers run as the postgres user when this runs as root
    bench = Bench(workdir)
    started = time.monotonic()
    try:
        bench.setup()
        print(f"set up in {time.monotonic() - started:.0f} s")
        bench.measure_all()
        bench.stop_servers()
        if CELERY_TASKS > 0:
            bench.celery_round_trips()
        report(bench)
        print(f"{time.monotonic() - started:.0f} s in all")
        return 0
    finally:
        bench.close()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def report(bench: Bench) -> None:
    def figures(load: Load) -> str:
        return (
            f"{load.median('requests_per_second'):8.0f} {load.median('p50_ms'):6.2f} "
            f"{load.median('p99_ms'):6.2f}"
        )

    def rate(load: Load | None) -> float:
        return load.median("requests_per_second") if load else float("nan")

    header = f"{'req/s':>8} {'p50':>6} {'p99':>6}"
    print()
    print(f"{'':29} {'baseline':>22}  {'old':>22}  {'new':>22}")
    print(f"{'scenario':29} {header}  {header}  {header}  {'new/old':>7} {'new/base':>8}")
    ratios: dict[str, dict[str, float | None]] = {}
    for row in bench.rows:
        baseline = bench.baselines[row.baseline][1] if row.baseline else None
        ratios[row.name] = {
            "new_over_old": ratio(rate(row.new), rate(row.old)),
            "new_over_baseline": None if baseline is None else ratio(rate(row.new), rate(baseline)),
        }
        over_base = ratios[row.name]["new_over_baseline"]
        print(
            f"{row.name:29} {figures(baseline) if baseline else ' ' * 22}  "
            f"{figures(row.old) if row.old else ' ' * 22}  "
            f"{figures(row.new)}  {ratios[row.name]['new_over_old']:7.2f} "
            f"{'' if over_base is None else f'{over_base:.2f}':>8}"
        )
    print("(req/s; p50 and p99 in ms; medians of the rounds)")
    for key, (name, _) in bench.baselines.items():
        used_by = ", ".join(row.name for row in bench.rows if row.baseline == key)
        print(f"baseline {name}: {used_by}")

    metrics: dict[str, dict[str, float]] = {}
    if bench.metrics_off:
        print("\nmetrics on (new) against off (METRICS_ENABLED=false), req/s:")
    for name, off in bench.metrics_off.items():
        on = next(row.new for row in bench.rows if row.name == name)
        metrics[name] = {
            "on": rate(on),
            "off": rate(off),
            "on_over_off": ratio(rate(on), rate(off)),
        }
        print(
            f"  {name:29} on {rate(on):8.0f}  off {rate(off):8.0f}  "
            f"cost {1 - metrics[name]['on_over_off']:6.1%}"
        )

    with_limits = next(row.new for row in bench.rows if row.name == WITH_LIMITS)
    limiter = {
        "with": rate(with_limits),
        "without": rate(bench.limits_off),
        "with_over_without": ratio(rate(with_limits), rate(bench.limits_off)),
        "redis_script_calls_per_request_with": with_limits.median("redis_script_calls_per_request"),
        "redis_script_calls_per_request_without": bench.limits_off.median(
            "redis_script_calls_per_request"
        ),
    }
    extra = (
        limiter["redis_script_calls_per_request_with"]
        - limiter["redis_script_calls_per_request_without"]
    )
    print(
        f"\nrate limiter, new code, {WITH_LIMITS}: {limiter['with']:.0f} req/s with it, "
        f"{limiter['without']:.0f} without ({limiter['with_over_without']:.2f}); Redis script "
        f"calls per request {limiter['redis_script_calls_per_request_with']:.2f} with, "
        f"{limiter['redis_script_calls_per_request_without']:.2f} without: {extra:.2f} more "
        "round trips"
    )

    celery: dict[str, dict[str, float]] = {}
    if len(bench.celery) == len(TREES):
        print("\ncelery round trip, tasks/s:")
        for kind in ("async", "sync"):
            old, new = (statistics.median(bench.celery[tree][kind]) for tree in TREES)
            celery[kind] = {"old": old, "new": new, "new_over_old": ratio(new, old)}
            print(
                f"  {kind:5} task (one DB read)  old {old:6.0f}  new {new:6.0f}  "
                f"new/old {ratio(new, old):.2f}"
            )

    # The targets: no read slower than READ_TARGET of the old code, and writes within
    # WRITE_TARGET of what raw asyncpg and one PUBLISH do.
    targets: list[dict[str, Any]] = []
    for row in bench.rows:
        if row.kind == "read":
            value, threshold, what = ratios[row.name]["new_over_old"], READ_TARGET, "new/old"
        elif row.kind == "write":
            value, threshold, what = (
                ratios[row.name]["new_over_baseline"],
                WRITE_TARGET,
                "new/limit",
            )
        else:
            continue
        met = value is not None and value >= threshold
        targets.append(
            {"scenario": row.name, "ratio": what, "value": value, "target": threshold, "met": met}
        )
    # ... and metrics cost no more than 1 - METRICS_TARGET of the same code without them.
    for name, measured in metrics.items():
        on_over_off = measured["on_over_off"]
        targets.append(
            {
                "scenario": f"{name} metrics",
                "ratio": "on/off",
                "value": on_over_off,
                "target": METRICS_TARGET,
                "met": on_over_off >= METRICS_TARGET,
            }
        )
    print()
    for target in targets:
        print(
            f"target {target['scenario']:29} {target['ratio']:>9} {target['value']:5.2f} "
            f">= {target['target']:.2f}  {'met' if target['met'] else 'NOT MET'}"
        )
    print(f"targets: {'all met' if all(t['met'] for t in targets) else 'NOT all met'}")

    loads = [*bench.baselines.values()] + [
        (f"{row.name} [{tree}]", load)
        for row in bench.rows
        for tree in TREES
        if (load := row.load(tree))
    ]
    loads += [(f"{name} [metrics off]", load) for name, load in bench.metrics_off.items()]
    loads.append((LIMITS_OFF, bench.limits_off))
    refused = {name: sum(run.non_2xx for run in load.runs) for name, load in loads}
    refused = {name: count for name, count in refused.items() if count}
    print(f"\ncheck: non-2xx responses: {refused or 'none'}")
    for row in bench.rows:
        if row.old and row.old.hold:
            scans = [row.old.runs[0].users_scans_per_request or 0.0]
            scans += [row.new.runs[0].users_scans_per_request or 0.0]
            print(
                f"check: {row.name}, users-table scans per request in round 1 (a miss makes one): "
                f"old {scans[0]:.2f}, new {scans[1]:.2f}"
            )
            if min(scans) < 0.5:
                print("  WARNING: one of these reads is served from a cache: the hold did not hold")
    for name, tree in bench.trees.items():
        where = OLD_REF if name == "old" else str(tree.path)
        print(f"{name}: {where}, loop {tree.loop}, core from {tree.info.get('core_file')}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{stamp}.json"
    trees = {
        name: {
            **describe_tree(tree.path, OLD_REF if name == "old" else None),
            "loop": tree.loop,
            "core_file": tree.info.get("core_file"),
            "list_parameter": tree.cursor_parameter,
        }
        for name, tree in bench.trees.items()
    }
    results = {
        "date": stamp,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": versions(),
        "settings": {
            "rounds": ROUNDS,
            "seconds": SECONDS,
            "warmup_seconds": WARMUP_SECONDS,
            "connections": CONNECTIONS,
            "users": USERS,
        },
        "trees": trees,
        "baselines": {
            key: {"name": name, "path": load.path, "runs": [asdict(run) for run in load.runs]}
            for key, (name, load) in bench.baselines.items()
        },
        "scenarios": [
            {
                "name": row.name,
                "kind": row.kind,
                "path": row.new.path,
                "mode": row.new.mode,
                "baseline": row.baseline,
                "old": [asdict(run) for run in row.old.runs] if row.old else [],
                "new": [asdict(run) for run in row.new.runs],
                **ratios[row.name],
            }
            for row in bench.rows
        ],
        "rate_limiter": {**limiter, "without_runs": [asdict(r) for r in bench.limits_off.runs]},
        "celery_tasks_per_second": bench.celery,
        "celery": celery,
        "metrics": metrics,
        "targets": targets,
    }
    path.write_text(json.dumps(results, indent=2))
    print(f"\nwritten: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
