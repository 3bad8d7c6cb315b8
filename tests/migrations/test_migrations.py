"""Every revision goes up and down cleanly, and the models agree with the migrations."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory

from core.config import load_config
from tests.conftest import alembic_config
from tests.servers import ServerStack


def revisions_oldest_first(url: str) -> list[str]:
    script = ScriptDirectory.from_config(alembic_config(url))
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


@pytest.fixture
def scratch_postgres(stack: ServerStack) -> Iterator[str]:
    stack.primary.psql("DROP DATABASE IF EXISTS stairway", database="postgres")
    stack.primary.psql("CREATE DATABASE stairway", database="postgres")
    yield stack.primary.dsn(database="stairway")
    stack.primary.psql("DROP DATABASE IF EXISTS stairway WITH (FORCE)", database="postgres")


def walk_the_stairs(url: str) -> None:
    cfg = alembic_config(url)
    revisions = revisions_oldest_first(url)
    assert revisions, "there are no migrations"
    for revision in revisions:
        command.upgrade(cfg, revision)
        command.downgrade(cfg, "-1")
        command.upgrade(cfg, revision)
    command.check(cfg)
    command.downgrade(cfg, "base")


def test_stairway_on_postgres(scratch_postgres: str) -> None:
    walk_the_stairs(scratch_postgres)


def test_stairway_on_the_embedded_sqlite(tmp_path: Path) -> None:
    walk_the_stairs(f"sqlite+aiosqlite:///{tmp_path / 'stairway.db'}")


def test_models_and_migrations_agree_on_the_test_database(stack: ServerStack) -> None:
    # alembic check raises when autogenerate would produce any operation.
    command.check(alembic_config(stack.primary.dsn()))


def test_the_tiers_the_settings_name_exist_after_migrating(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'tiers.db'}"
    load_config(RATE_LIMIT_ANONYMOUS_TIER="guests", DEFAULT_TIER="basic")
    try:
        command.upgrade(alembic_config(url), "head")
    finally:
        load_config()
    with sqlite3.connect(tmp_path / "tiers.db") as database:
        names = {name for (name,) in database.execute("SELECT name FROM tiers")}
    assert names == {"guests", "basic"}
