"""`make bench`: the project against a bare FastAPI app and a raw asyncpg app, in one run.

Servers run on core 0 (uvicorn, one worker, uvloop, httptools, no access log); wrk, PostgreSQL,
Redis and this script on core 1. All three are served as main.py serves the project: on uvloop
with listeners that accept every waiting connection at once (core/event_loop.py). Every
scenario gets a warm-up, then ROUNDS interleaved rounds; the table shows medians, and
bench/results/<timestamp>.json keeps every figure.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

import asyncpg
import httpx
import psycopg
import redis

from tests.servers import ServerStack, free_ports, start_stack

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LUA = ROOT / "bench" / "lua" / "tokens.lua"
SERVER_CORE, LOAD_CORE = "0", "1"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
WARMUP_SECONDS = 2
CONNECTIONS = 64
USERS = 1000
REFRESH_TOKENS_PER_RUN = 15000
CELERY_TASKS = int(os.environ.get("BENCH_TASKS", "1000"))
SECRET = "bench-secret-that-is-long-enough-for-hs256-0123456789"


@dataclass
class Run:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    rss_mb: float


@dataclass
class Scenario:
    name: str
    server: str
    path: str
    tokens: str | None = None  # a token file for tokens.lua
    mode: str = "bearer"
    hold: str | None = None  # a cache namespace kept on hold: every read misses
    runs: list[Run] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return float(statistics.median(getattr(run, attribute) for run in self.runs))


def pin(pid: int, core: str) -> None:
    subprocess.run(["taskset", "-a", "-p", "-c", core, str(pid)], check=True, capture_output=True)


def pin_stack(stack: ServerStack) -> None:
    for server in (stack.primary, stack.replica):
        postmaster = server.postmaster_pid()
        assert postmaster is not None
        pin(postmaster, LOAD_CORE)
        children = subprocess.run(
            ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False
        ).stdout.split()
        for child in children:
            pin(int(child), LOAD_CORE)
    redis_pids = subprocess.run(
        ["pgrep", "-f", f"redis-server.*:{stack.redis.port}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    for pid in redis_pids:
        pin(int(pid), LOAD_CORE)


def server_env(stack: ServerStack) -> dict[str, str]:
    return {
        **os.environ,
        "ENV": "dev",
        "WRITER_DB_URL": stack.primary.dsn(),
        "READER_DB_URL": stack.replica.dsn(),
        "REDIS_URL": stack.redis.url_for(0),
        "CELERY_BROKER_URL": stack.redis.url_for(1),
        "CELERY_BACKEND_URL": stack.redis.url_for(2),
        "JWT_SECRET_KEY": SECRET,
        "LOG_LEVEL": "WARNING",
        "DB_POOL_SIZE": "10",
        "PYTHONPATH": str(ROOT),
    }


async def seed(stack: ServerStack, workdir: Path) -> dict[str, Path]:
    """1,000 users (the first an admin), tokens for each, and single-use refresh tokens."""
    from core.config import load_config
    from core.security.passwords import hash_password
    from core.security.tokens import encode_token, new_token_id

    load_config(
        ENV="dev",
        JWT_SECRET_KEY=SECRET,
        WRITER_DB_URL=stack.primary.dsn(),
        READER_DB_URL=stack.replica.dsn(),
    )
    password_hash = await hash_password("benchmark password")
    connection = await asyncpg.connect(stack.primary.dsn(driver="postgresql"))
    now = datetime.now(UTC)
    await connection.copy_records_to_table(
        "users",
        columns=["email", "password_hash", "nickname", "is_admin", "created_at", "updated_at"],
        records=[
            (f"user{n}@bench.example", password_hash, f"user {n}", n == 0, now, now)
            for n in range(USERS)
        ],
    )
    user_ids = [row["id"] for row in await connection.fetch("SELECT id FROM users ORDER BY id")]
    files: dict[str, Path] = {}

    def write(name: str, tokens: list[str]) -> None:
        files[name] = workdir / f"{name}.txt"
        files[name].write_text("\n".join(tokens) + "\n")

    def access(user_id: int) -> str:
        token, _ = encode_token(
            user_id=user_id, token_type="access", session_id=new_token_id(), token_version=0
        )
        return token

    write("users", [access(user_id) for user_id in user_ids])
    write("admin", [access(user_ids[0])])
    expires = now + timedelta(days=14)
    for run in range(ROUNDS + 1):
        sessions = [
            (new_token_id(), user_ids[n % USERS], new_token_id())
            for n in range(REFRESH_TOKENS_PER_RUN)
        ]
        await connection.copy_records_to_table(
            "auth_sessions",
            columns=["id", "user_id", "refresh_jti", "created_at", "expires_at"],
            records=[(sid, uid, jti, now, expires) for sid, uid, jti in sessions],
        )
        refresh_tokens = []
        for sid, uid, jti in sessions:
            token, _ = encode_token(
                user_id=uid, token_type="refresh", session_id=sid, token_version=0, jti=jti
            )
            refresh_tokens.append(token)
        write(f"refresh-{run}", refresh_tokens)
    await connection.close()
    stack.wait_for_replica()
    return files


def start_server(
    app: str, port: int, env: dict[str, str], factory: bool = False
) -> subprocess.Popen[bytes]:
    command = [
        *("taskset", "-c", SERVER_CORE, sys.executable, "-m", "uvicorn", app),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        *("--loop", "core.event_loop:ServerLoop", "--http", "httptools"),
        *("--no-access-log", "--log-level", "warning"),
        *(["--factory"] if factory else []),
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{app} did not start")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(output: str, label: str) -> float:
    found = re.search(rf"{label}\s+([\d.]+)(us|ms|s|m)\b", output)
    return float(found.group(1)) * _UNITS[found.group(2)] if found else float("nan")


def wrk(
    url: str, seconds: int, scenario: Scenario, token_file: Path | None
) -> tuple[float, float, float, int]:
    command = [
        *("taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s"),
        *("--latency", "--timeout", "10s"),
    ]
    if token_file is not None:
        command += ["-s", str(LUA), url, "--", str(token_file), scenario.mode]
    else:
        command.append(url)
    output = subprocess.run(command, capture_output=True, text=True, check=False).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rate is None:
        print(f"    {scenario.name}: wrk said:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:.*", output)
    if errors:
        print(f"    {scenario.name}: {errors.group(0)}")
    return (
        float(rate.group(1)) if rate else 0.0,
        _ms(output, "50%"),
        _ms(output, "99%"),
        int(non_2xx.group(1)) if non_2xx else 0,
    )


def vacuum(stack: ServerStack) -> None:
    """Clean up after a write scenario at once. Left to autovacuum, the cleanup of its 15,000
    updated rows ran during a later scenario, on the load generator's core, and gave whatever
    was measured then a p99 of 300-500 ms (with autovacuum off, the spikes were gone)."""
    with psycopg.connect(stack.primary.dsn(driver="postgresql"), autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE)")
    stack.wait_for_replica()


def prime(url: str, token_file: Path) -> None:
    with httpx.Client(timeout=30) as client:
        for token in token_file.read_text().split():
            response = client.get(url, headers={"Authorization": f"Bearer {token}"})
            response.raise_for_status()


def celery_round_trip(env: dict[str, str]) -> dict[str, list[float]]:
    """Tasks per second through one worker process: enqueue, run (one DB read), get result."""
    os.environ.update(env)
    from core.config import load_config

    load_config()
    import bench.tasks as bench_tasks
    from celery_task import celery_app

    worker = subprocess.Popen(
        [
            *("taskset", "-c", SERVER_CORE, sys.executable, "-m", "celery"),
            *("-A", "celery_task:celery_app", "worker", "--concurrency=1", "--pool=prefork"),
            *("--queues=default", "--include=bench.tasks", "--without-gossip"),
            *("--without-mingle", "--loglevel=WARNING", "--hostname=bench@localhost"),
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not celery_app.control.ping(destination=["bench@localhost"], timeout=0.5):
            if time.monotonic() > deadline:
                raise RuntimeError("the bench worker did not start")
        rates: dict[str, list[float]] = {"async": [], "sync": []}
        tasks = {"async": bench_tasks.read_user_async, "sync": bench_tasks.read_user_sync}
        for task in tasks.values():  # warm-up
            [outcome.get(timeout=60) for outcome in [task.delay(n + 1) for n in range(100)]]
        for _ in range(ROUNDS):
            for kind, task in tasks.items():
                started = time.perf_counter()
                outcomes = [task.delay(n % USERS + 1) for n in range(CELERY_TASKS)]
                for outcome in outcomes:
                    outcome.get(timeout=120)
                rates[kind].append(CELERY_TASKS / (time.perf_counter() - started))
        return rates
    finally:
        worker.terminate()
        worker.wait(timeout=60)


def hold(cache: redis.Redis, namespace: str, seconds: int) -> None:
    """Make every read of a cache namespace miss for `seconds`, in every process: the hold a
    removal sets, and the announcement that drops what the processes know of the namespace."""
    cache.set(f"cache:{namespace}:hold", b"1", px=seconds * 1000)
    _announce_removal(cache, namespace)


def release(cache: redis.Redis, namespace: str) -> None:
    """End a hold early (no real removal does), and tell every process so."""
    cache.delete(f"cache:{namespace}:hold")
    _announce_removal(cache, namespace)


def _announce_removal(cache: redis.Redis, namespace: str) -> None:
    from core.helpers.cache import Cache
    from core.helpers.cache.local_entries import CACHE_TOPIC, namespace_removed

    cache.publish(Cache.changes.channel, CACHE_TOPIC + b":" + namespace_removed(namespace))


def versions() -> dict[str, str]:
    names = ["fastapi", "starlette", "uvicorn", "sqlalchemy", "asyncpg", "celery", "redis", "pyjwt"]
    found = {name: metadata.version(name) for name in names}
    found["python"] = platform.python_version()
    found["wrk"] = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[
        0
    ]
    return found


def main() -> int:
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"make bench needs {tool} (Debian: apt-get install -y wrk util-linux)")
            return 2
    os.sched_setaffinity(0, {int(LOAD_CORE)})
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    workdir.chmod(0o755)  # the servers run as the postgres user when this runs as root
    stack = start_stack(workdir / "servers")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        pin_stack(stack)
        env = server_env(stack)
        subprocess.run(
            [sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True
        )
        files = asyncio.run(seed(stack, workdir))
        ours_port, bare_port, limit_port = free_ports(3)
        servers = {
            "ours": (
                start_server("app.server:create_app", ours_port, env, factory=True),
                ours_port,
            ),
            "bare": (start_server("bench.baselines:bare_fastapi", bare_port, env), bare_port),
            "limit": (start_server("bench.baselines:limit_app", limit_port, env), limit_port),
        }
        processes = [process for process, _ in servers.values()]
        scenarios = [
            Scenario("bare FastAPI /ping", "bare", "/ping"),
            Scenario("/health", "ours", "/health"),
            Scenario("limit app: token + one row", "limit", "/api/v1/users/me", "users"),
            Scenario("/users/me uncached", "ours", "/api/v1/users/me", "users", hold="user"),
            Scenario("/users/me cached", "ours", "/api/v1/users/me", "users"),
            Scenario(
                "limit app: admin check + 10 rows", "limit", "/api/v1/users?limit=10", "admin"
            ),
            Scenario(
                "/users?limit=10 uncached",
                "ours",
                "/api/v1/users?limit=10",
                "admin",
                hold="get_user_list",
            ),
            Scenario("/users?limit=10 cached", "ours", "/api/v1/users?limit=10", "admin"),
            Scenario(
                "POST /auth/refresh", "ours", "/api/v1/auth/refresh", "refresh", mode="refresh"
            ),
        ]
        cache = redis.Redis.from_url(stack.redis.url_for(0))

        def measure(
            scenario: Scenario, seconds: int, run_index: int
        ) -> tuple[float, float, float, int]:
            _, port = servers[scenario.server]
            if scenario.server == "ours" and scenario.tokens == "users":
                # Auth states expire after 60 s; a live API's active users keep theirs warm.
                prime(f"http://127.0.0.1:{port}/api/v1/users/me", files["users"])
            if scenario.hold:
                hold(cache, scenario.hold, seconds + 5)
            token_file = None
            if scenario.tokens == "refresh":
                token_file = files[f"refresh-{run_index}"]
            elif scenario.tokens:
                token_file = files[scenario.tokens]
            result = wrk(f"http://127.0.0.1:{port}{scenario.path}", seconds, scenario, token_file)
            if scenario.hold:
                release(cache, scenario.hold)
            if scenario.mode == "refresh":
                vacuum(stack)
            return result

        print(f"warm-up ({WARMUP_SECONDS} s each)...")
        for scenario in scenarios:
            measure(scenario, WARMUP_SECONDS, 0)
        for round_number in range(1, ROUNDS + 1):
            print(f"round {round_number}/{ROUNDS} ({SECONDS} s each)...")
            for scenario in scenarios:
                rate, p50, p99, non_2xx = measure(scenario, SECONDS, round_number)
                pid = servers[scenario.server][0].pid
                scenario.runs.append(Run(rate, p50, p99, non_2xx, rss_mb(pid)))
        cache.close()
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        processes = []
        print("celery round trip...")
        tasks_per_second = celery_round_trip(env)
        report(scenarios, tasks_per_second)
        return 0
    finally:
        for process in processes:
            process.terminate()
        stack.stop()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")


def report(scenarios: list[Scenario], tasks_per_second: dict[str, list[float]]) -> None:
    by_name = {scenario.name: scenario for scenario in scenarios}

    def rate(name: str) -> float:
        return by_name[name].median("requests_per_second")

    print()
    print(f"{'scenario':38} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'RSS MB':>7}")
    for scenario in scenarios:
        print(
            f"{scenario.name:38} {scenario.median('requests_per_second'):9.0f} "
            f"{scenario.median('p50_ms'):8.2f} {scenario.median('p99_ms'):8.2f} "
            f"{sum(run.non_2xx for run in scenario.runs):8d} {scenario.median('rss_mb'):7.1f}"
        )
    async_rate = statistics.median(tasks_per_second["async"])
    sync_rate = statistics.median(tasks_per_second["sync"])
    print(f"{'celery async task (DB read)':38} {async_rate:9.0f} tasks/s")
    print(f"{'celery sync task (same read)':38} {sync_rate:9.0f} tasks/s")
    ratios = {
        "/health vs bare FastAPI (>= 0.85)": rate("/health") / rate("bare FastAPI /ping"),
        "/users?limit=10 uncached vs limit (>= 0.40)": rate("/users?limit=10 uncached")
        / rate("limit app: admin check + 10 rows"),
        "/users/me uncached vs limit (>= 0.35)": rate("/users/me uncached")
        / rate("limit app: token + one row"),
        "/users/me cached vs bare FastAPI (>= 0.50)": rate("/users/me cached")
        / rate("bare FastAPI /ping"),
        "async vs sync task round trip (>= 0.80)": async_rate / sync_rate,
    }
    print()
    for name, value in ratios.items():
        print(f"{name:48} {value:5.2f}")
    tails = {s.name: s.median("p99_ms") / max(s.median("p50_ms"), 0.001) for s in scenarios}
    print(f"{'worst p99/p50 (<= 10)':48} {max(tails.values()):5.1f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{stamp}.json"
    path.write_text(
        json.dumps(
            {
                "date": stamp,
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                "versions": versions(),
                "settings": {"rounds": ROUNDS, "seconds": SECONDS, "connections": CONNECTIONS},
                "scenarios": [
                    {
                        "name": s.name,
                        "server": s.server,
                        "path": s.path,
                        "runs": [asdict(r) for r in s.runs],
                    }
                    for s in scenarios
                ],
                "celery_tasks_per_second": tasks_per_second,
                "ratios": ratios,
                "p99_over_p50": tails,
            },
            indent=2,
        )
    )
    print(f"\nwritten: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
