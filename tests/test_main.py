"""The command line: `python3 main.py --env ...`."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from pydantic import ValidationError

import main
from core.config import ConfigError, Settings, load_config, reset_config
from tests.servers import ServerStack

ROOT = Path(__file__).resolve().parent.parent
SETTING_NAMES = (
    "ENV",
    "WRITER_DB_URL",
    "READER_DB_URL",
    "JWT_SECRET_KEY",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_BACKEND_URL",
    "DEBUG",
    "MAIL_BACKEND",
    "FRONTEND_URL",
)


def bare_environment() -> dict[str, str]:
    """The environment of a machine where nothing has been configured."""
    return {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}


PROD_SECRET = "a-production-secret-that-is-long-enough-0123456789"


def set_prod_settings(monkeypatch: pytest.MonkeyPatch, *, secret: str) -> None:
    """Every setting prod requires, with the given JWT secret."""
    monkeypatch.setenv("JWT_SECRET_KEY", secret)
    monkeypatch.setenv("WRITER_DB_URL", "postgresql+asyncpg://a@h/db")
    monkeypatch.setenv("READER_DB_URL", "postgresql+asyncpg://a@h/db")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("FRONTEND_URL", "https://app.example")


@pytest.fixture
def unconfigured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env to pick up
    yield
    reset_config()


@pytest.mark.usefixtures("unconfigured")
def test_prod_refuses_to_start_and_names_every_missing_setting() -> None:
    result = CliRunner().invoke(main.main, ["--env", "prod"])

    assert result.exit_code == 2
    for name in ("JWT_SECRET_KEY", "WRITER_DB_URL", "READER_DB_URL", "REDIS_URL", "FRONTEND_URL"):
        assert name in result.output


@pytest.mark.usefixtures("unconfigured")
def test_env_from_the_environment_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENV", "prod")

    result = CliRunner().invoke(main.main, [])

    assert result.exit_code == 2
    assert "refusing to start in prod" in result.output


@pytest.mark.usefixtures("unconfigured")
def test_env_from_the_env_file_is_honoured(tmp_path: Path) -> None:
    # What alembic and the workers read too: the server must not run as another environment.
    (tmp_path / ".env").write_text("ENV=prod\n")

    result = CliRunner().invoke(main.main, [])

    assert result.exit_code == 2
    assert "refusing to start in prod" in result.output


@pytest.mark.usefixtures("unconfigured")
def test_prod_refuses_a_short_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    set_prod_settings(monkeypatch, secret="short")

    result = CliRunner().invoke(main.main, ["--env", "prod"])

    assert result.exit_code == 2
    assert "JWT_SECRET_KEY is shorter" in result.output
    assert "WRITER_DB_URL" not in result.output


@pytest.mark.usefixtures("unconfigured")
def test_prod_refuses_to_believe_every_client_s_forwarded_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_prod_settings(monkeypatch, secret="s" * 64)

    with pytest.raises(ConfigError, match=r"FORWARDED_ALLOW_IPS is \*"):
        load_config(ENV="prod", FORWARDED_ALLOW_IPS="10.0.0.2, *")
    assert load_config(ENV="prod", FORWARDED_ALLOW_IPS="10.0.0.2").ENV == "prod"


@pytest.mark.usefixtures("unconfigured")
def test_prod_refuses_to_write_account_links_to_the_log(monkeypatch: pytest.MonkeyPatch) -> None:
    set_prod_settings(monkeypatch, secret="s" * 64)

    with pytest.raises(ConfigError, match="MAIL_BACKEND is console"):
        load_config(ENV="prod", MAIL_BACKEND="console")
    assert load_config(ENV="prod").MAIL_BACKEND == "smtp"


@pytest.mark.usefixtures("unconfigured")
def test_prod_refuses_to_run_tasks_inside_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    set_prod_settings(monkeypatch, secret="s" * 64)

    with pytest.raises(ConfigError, match="CELERY_TASK_ALWAYS_EAGER is on"):
        load_config(ENV="prod", CELERY_TASK_ALWAYS_EAGER=True)
    assert load_config(ENV="prod").CELERY_TASK_ALWAYS_EAGER is False


@pytest.mark.usefixtures("unconfigured")
def test_debug_means_debug_logs_unless_a_level_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    assert Settings(ENV="local", DEBUG=True).LOG_LEVEL == "DEBUG"
    assert Settings(ENV="local", DEBUG=True, LOG_LEVEL="warning").LOG_LEVEL == "WARNING"
    assert Settings(ENV="local").LOG_LEVEL == "INFO"


def test_a_blank_setting_means_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("METRICS_ENABLED", "METRICS_BASIC_AUTH", "CELERY_TASK_ALWAYS_EAGER"):
        monkeypatch.setenv(name, "")
    settings = Settings(ENV="local")
    assert settings.METRICS_ENABLED is True
    assert settings.METRICS_BASIC_AUTH is None


def test_default_tier_names_must_be_names_the_tiers_api_takes() -> None:
    with pytest.raises(ValidationError, match="DEFAULT_TIER"):
        Settings(ENV="local", DEFAULT_TIER="Pro Tier")
    with pytest.raises(ValidationError, match="RATE_LIMIT_ANONYMOUS_TIER"):
        Settings(ENV="local", RATE_LIMIT_ANONYMOUS_TIER="Guests")


def test_unknown_env_is_rejected() -> None:
    result = CliRunner().invoke(main.main, ["--env", "production"])

    assert result.exit_code == 2
    assert "'production' is not one of 'local', 'dev', 'prod', 'test'" in result.output


def test_prod_refusal_from_a_real_process(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--env", "prod"],
        cwd=tmp_path,
        env=bare_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "refusing to start in prod" in result.stderr
    assert "JWT_SECRET_KEY" in result.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(
    arguments: list[str], cwd: Path, env: dict[str, str], log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start `python <arguments>` in its own process group, so stop() ends its workers too;
    its output goes to `log` when given."""
    with open(log or os.devnull, "wb") as output:
        return subprocess.Popen(
            [sys.executable, *arguments],
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def serve_embedded(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    return start_server(
        [str(ROOT / "main.py"), "--env", "local", "--port", str(port)], workdir, bare_environment()
    )


def wait_until_serving(base_url: str, server: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited"
        try:
            httpx.get(f"{base_url}/health", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"the server did not start within {seconds:.0f} s")


def stop(server: subprocess.Popen[bytes], log: Path | None = None) -> None:
    """SIGTERM, as a process manager stops it; a server still running 30 s later is killed and
    the test fails with the end of its `log`."""
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        tail = log.read_text(errors="replace")[-4000:] if log else "(not kept)"
        message = f"the server ignored SIGTERM for 30 s; its log ends:\n{tail}"
        raise AssertionError(message) from None


@contextlib.contextmanager
def api_process(**dotenv: str) -> Iterator[str]:
    """Another API process on the suite's databases and Redis, started as `main.py --env test`
    from a directory whose `.env` holds `dotenv`; its base URL."""
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        (Path(workdir) / ".env").write_text("".join(f"{k}={v}\n" for k, v in dotenv.items()))
        log = Path(workdir) / "server.log"
        server = start_server(
            [str(ROOT / "main.py"), "--env", "test", "--host", "127.0.0.1", "--port", str(port)],
            Path(workdir),
            {**os.environ, "LOG_LEVEL": "INFO"},
            log,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until_serving(base_url, server)
            yield base_url
        finally:
            stop(server, log)


def test_a_fresh_clone_serves_at_once_and_persists_across_restarts(tmp_path: Path) -> None:
    """No configuration, no `make migrate`, started from another directory: serve, register,
    restart, the user is still there."""
    assert not (tmp_path / "app.db").exists()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"

    server = serve_embedded(tmp_path, port)
    try:
        wait_until_serving(base_url, server)
        assert httpx.get(f"{base_url}/docs").status_code == 200
        created = httpx.post(
            f"{base_url}/api/v1/users",
            json={"email": "first@example.com", "password": "correct horse", "nickname": "F"},
        )
        assert created.status_code == 201
    finally:
        stop(server)

    server = serve_embedded(tmp_path, port)
    try:
        wait_until_serving(base_url, server)
        tokens = httpx.post(
            f"{base_url}/api/v1/auth/login",
            json={"email": "first@example.com", "password": "correct horse"},
        ).json()
        again = httpx.get(
            f"{base_url}/api/v1/users/me",
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
        assert again.status_code == 200
        assert again.json() == created.json()
        # What an uptime check or a link checker sends: GET's status and headers, no body.
        head = httpx.head(f"{base_url}/api/v1/users/me", headers=again.request.headers)
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["etag"] == again.headers["etag"]
        assert head.headers["content-length"] == str(len(again.content))
        assert httpx.head(f"{base_url}/health").status_code == 200
    finally:
        stop(server)
    assert (tmp_path / "app.db").exists()


def test_an_sqlite_database_that_is_not_migrated_is_a_500_that_says_so(tmp_path: Path) -> None:
    """Only `local` migrates at startup; elsewhere a missing table is named in the log."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    env = {**bare_environment(), "WRITER_DB_URL": f"sqlite+aiosqlite:///{tmp_path / 'bare.db'}"}
    server = start_server(
        [str(ROOT / "main.py"), "--env", "test", "--no-reload", "--port", str(port)],
        tmp_path,
        env,
        log,
    )
    try:
        wait_until_serving(base_url, server)
        response = httpx.post(
            f"{base_url}/api/v1/users",
            json={"email": "first@example.com", "password": "correct horse", "nickname": "F"},
        )
    finally:
        stop(server)

    assert response.status_code == 500
    assert response.json()["error_code"] == "DATABASE_NOT_MIGRATED"
    assert "no such table" not in response.text
    output = log.read_text()
    assert "ERROR" in output
    assert "not migrated (run `make migrate`)" in output
    assert "no such table: users" in output


def start_prod_workers(
    tmp_path: Path, stack: ServerStack, **extra_env: str
) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`main.py --env prod --workers 2` on the stack: the server, its base URL and its log."""
    port = free_port()
    env = {
        **bare_environment(),
        "JWT_SECRET_KEY": PROD_SECRET,
        "WRITER_DB_URL": stack.primary.dsn(),
        "READER_DB_URL": stack.replica.dsn(),
        "REDIS_URL": stack.redis.url_for(0),
        "CELERY_BROKER_URL": stack.redis.url_for(1),
        "FRONTEND_URL": "https://app.example",
        **extra_env,
    }
    log = tmp_path / "server.log"
    server = start_server(
        [str(ROOT / "main.py"), "--env", "prod", "--workers", "2", "--port", str(port)],
        tmp_path,
        env,
        log,
    )
    return server, f"http://127.0.0.1:{port}", log


def test_prod_serves_with_several_workers_no_docs_and_stops_cleanly(
    tmp_path: Path, stack: ServerStack
) -> None:
    server, base_url, log = start_prod_workers(tmp_path, stack)
    try:
        wait_until_serving(base_url, server)
        health = httpx.get(f"{base_url}/health")
        assert health.status_code == 200
        assert health.headers["x-frame-options"] == "DENY"
        assert httpx.get(f"{base_url}/docs").status_code == 404
        assert httpx.get(f"{base_url}/openapi.json").status_code == 404
        assert httpx.get(f"{base_url}/ready").json()["status"] == "ok"
    finally:
        server.send_signal(signal.SIGTERM)
        code: int | None = None
        try:
            code = server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        assert code == 0, log.read_text()[-4000:]


def test_workers_that_start_slowly_are_not_killed_as_hung(
    tmp_path: Path, stack: ServerStack
) -> None:
    """On a loaded machine a new worker takes a while to answer the supervisor's health check:
    it must be waited for, not killed and replaced in a loop (never serving, stopping slowly)."""
    # A machine that slow, for the workers only: each spawned process sleeps before it starts.
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(
        "import sys, time\nif '--multiprocessing-fork' in sys.argv:\n    time.sleep(8)\n"
    )
    server, base_url, log = start_prod_workers(tmp_path, stack, PYTHONPATH=str(slow))
    try:
        wait_until_serving(base_url, server, seconds=60)
    finally:
        stop(server, log)
    output = log.read_text()
    # The supervisor's own lines are in the log, and none says a worker was replaced.
    assert "Started parent process" in output
    assert "died" not in output
    assert output.count("Application startup complete") == 2


@pytest.mark.usefixtures("unconfigured")
def test_reload_is_refused_in_prod(monkeypatch: pytest.MonkeyPatch) -> None:
    set_prod_settings(monkeypatch, secret=PROD_SECRET)

    result = CliRunner().invoke(main.main, ["--env", "prod", "--reload"])

    assert result.exit_code == 2
    assert "--reload" in result.output


@pytest.mark.usefixtures("unconfigured")
def test_several_workers_without_a_shared_cache_are_refused() -> None:
    # With the embedded in-memory cache, a logout in one worker would not reach the others.
    result = CliRunner().invoke(main.main, ["--env", "local", "--workers", "2", "--no-reload"])

    assert result.exit_code == 2
    assert "REDIS_URL" in result.output


@pytest.mark.usefixtures("unconfigured")
def test_the_test_env_without_a_database_names_the_missing_setting() -> None:
    result = CliRunner().invoke(main.main, ["--env", "test"])

    assert result.exit_code == 2
    assert "WRITER_DB_URL" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.usefixtures("unconfigured")
def test_dev_sends_tasks_where_the_compose_workers_listen() -> None:
    compose = (ROOT / "docker" / "docker-compose.yml").read_text()
    settings = Settings(ENV="dev")

    # The published port here, the service there; the Redis database must be the same.
    published = {"127.0.0.1:6379": "redis:6379", "127.0.0.1:6380": "broker:6379"}
    for name, url in (
        ("REDIS_URL", settings.REDIS_URL),
        ("CELERY_BROKER_URL", settings.CELERY_BROKER_URL),
        ("CELERY_BACKEND_URL", settings.CELERY_BACKEND_URL),
    ):
        assert url is not None
        host_port = url.removeprefix("redis://").split("/")[0]
        assert f"{name}: {url.replace(host_port, published[host_port])}\n" in compose
    assert '"127.0.0.1:6380:6379"' in compose
    # A REDIS_URL of your own still carries the tasks too.
    assert Settings(ENV="dev", REDIS_URL="redis://elsewhere:6379/0").CELERY_BROKER_URL == (
        "redis://elsewhere:6379/0"
    )


def test_flower_credentials_are_refused_where_flower_would_read_other_ones() -> None:
    # Flower splits the value at commas: "admin:pa,ss" would be a user "admin:pa" and "ss".
    with pytest.raises(ValidationError, match="FLOWER_BASIC_AUTH"):
        Settings(ENV="local", FLOWER_BASIC_AUTH="admin:pa,ss")
    assert Settings(ENV="local", FLOWER_BASIC_AUTH="a:b,c:d").FLOWER_BASIC_AUTH == "a:b,c:d"
