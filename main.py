"""Start the API: `python3 main.py --env local|dev|prod [--debug] [--host] [--port] [--workers]`."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import click
import uvicorn
from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy.engine import make_url

from core.config import ENVS, ConfigError, Settings, load_config
from core.logging import configure_logging

# alembic.ini and migrations/ are found beside this file, wherever the server is started from.
PROJECT_ROOT = Path(__file__).resolve().parent

# How long the supervisor of `--workers N` waits for a worker to answer its health check before
# killing it as hung. A new worker answers only once its process has imported this module, which
# on a loaded machine takes longer than uvicorn's 5 s: it would be killed and replaced in a loop.
WORKER_HEALTHCHECK_SECONDS = 30


def migrate_embedded_database(settings: Settings) -> None:
    """Bring a local SQLite database to the newest revision, so a fresh clone serves at once.

    PostgreSQL databases are shared and migrated on purpose (`make migrate`, compose's migrate
    service), never as a side effect of starting one server.
    """
    url = make_url(settings.writer_db_url)
    if settings.ENV != "local" or url.get_backend_name() != "sqlite":
        return
    if url.database in (None, "", ":memory:"):
        # It would live and die in this process; the server's process gets its own.
        return
    alembic_config = Config(str(PROJECT_ROOT / "alembic.ini"))
    # ConfigParser reads "%" as interpolation.
    alembic_config.set_main_option("sqlalchemy.url", settings.writer_db_url.replace("%", "%%"))
    # The server configures logging itself; alembic's file config would replace it.
    alembic_config.attributes["configure_logger"] = False
    click.echo(f"migrating {url.database} to the newest revision", err=True)
    try:
        command.upgrade(alembic_config, "head")
    except CommandError as error:
        click.echo(f"error: cannot migrate {url.database}: {error}", err=True)
        sys.exit(1)


def prepare_metrics_directory(settings: Settings, workers: int) -> str | None:
    """Several workers share their metrics through files in PROMETHEUS_MULTIPROC_DIR: empty it
    (figures of an earlier run would be added in), or make one. Returns a directory made here."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not settings.METRICS_ENABLED or (directory is None and workers == 1):
        return None
    made = None
    if directory is None:
        made = directory = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp("-metrics")
    Path(directory).mkdir(parents=True, exist_ok=True)
    for stale in Path(directory).glob("*.db"):
        stale.unlink()
    return made


@click.command()
@click.option(
    "--env",
    "env",
    type=click.Choice(ENVS),
    default=None,
    help="local: embedded defaults and reload; dev: the compose stack; prod: no reload, no docs. "
    "Defaults to ENV from the environment, then from .env, then local.",
)
@click.option("--debug", is_flag=True, help="Debug mode and DEBUG logs.")
@click.option("--host", default=None, help="Bind address (default: APP_HOST).")
@click.option("--port", type=int, default=None, help="Port (default: APP_PORT).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--reload/--no-reload",
    default=None,
    help="Restart on code changes (default: on for local with one worker; never in prod).",
)
def main(
    env: str | None,
    debug: bool,
    host: str | None,
    port: int | None,
    workers: int,
    reload: bool | None,
) -> None:
    # The server's processes (reloader, workers) read their settings from the environment,
    # so the choices made here are passed on through it.
    if env is not None:
        os.environ["ENV"] = env
    if debug:
        os.environ["DEBUG"] = "true"
    try:
        # Without --env, ENV is read as every other setting is (and as alembic and the workers
        # read it): the environment, then .env.
        settings = load_config()
    except (ConfigError, ValueError) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    os.environ["ENV"] = settings.ENV

    if reload is None:
        reload = settings.ENV == "local" and workers == 1
    if reload and (settings.ENV == "prod" or workers > 1):
        click.echo("error: --reload runs one process and is not for prod", err=True)
        sys.exit(2)
    if workers > 1 and settings.CACHE_BACKEND == "memory":
        # Each worker would keep its own cache: a logout or role change in one would not reach
        # the others until their entries expire.
        click.echo("error: --workers > 1 needs a shared cache: set REDIS_URL", err=True)
        sys.exit(2)
    try:
        # Before serving: the first request finds its tables.
        migrate_embedded_database(settings)
    except ConfigError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    metrics_directory = prepare_metrics_directory(settings, workers)
    # The supervisor's and the reloader's own lines (a worker died, a restart) go where the
    # workers' lines go.
    configure_logging()
    try:
        uvicorn.run(
            "app.server:create_app",
            factory=True,
            host=host or settings.APP_HOST,
            port=port or settings.APP_PORT,
            workers=None if reload else workers,
            reload=reload,
            log_level=settings.LOG_LEVEL.lower(),
            loop="uvloop",
            # The app configures logging itself (core/logging.py), the same way in every process.
            log_config=None,
            # X-Forwarded-* are believed from these proxies only.
            proxy_headers=True,
            forwarded_allow_ips=settings.FORWARDED_ALLOW_IPS,
            # On SIGTERM: stop accepting, let in-flight requests finish (up to this), then run
            # the lifespan shutdown, which closes the pools.
            timeout_graceful_shutdown=30,
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        )
    finally:
        if metrics_directory is not None:
            shutil.rmtree(metrics_directory, ignore_errors=True)


if __name__ == "__main__":
    main()
