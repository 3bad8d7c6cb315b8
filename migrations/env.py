"""Alembic environment: async, on the writer, aware of every model in `app/*/models.py`."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
from logging.config import fileConfig
from typing import Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import app
from core.config import config as settings
from core.db import Base
from core.db.base import UTCDateTime

alembic_config = context.config
if alembic_config.config_file_name is not None and alembic_config.attributes.get(
    "configure_logger", True
):
    fileConfig(alembic_config.config_file_name, disable_existing_loggers=False)


def import_all_models() -> None:
    """Import `app.<module>.models` for every domain module, so autogenerate sees every table."""
    for module in pkgutil.iter_modules(app.__path__):
        if module.ispkg:
            try:
                importlib.import_module(f"app.{module.name}.models")
            except ModuleNotFoundError as error:
                if error.name != f"app.{module.name}.models":
                    raise


import_all_models()
target_metadata = Base.metadata


def database_url() -> str:
    # An explicit URL (tests, tools) wins over the settings.
    return alembic_config.get_main_option("sqlalchemy.url") or settings.writer_db_url


def render_item(kind: str, item: object, autogen_context: AutogenContext) -> str | Literal[False]:
    # Project column types are written as the plain SQLAlchemy types they store, so
    # revisions never import application code that may change later.
    if kind == "type" and isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def configure(**options: object) -> None:
    url = database_url()
    context.configure(
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=url.startswith("sqlite"),
        compare_type=True,
        compare_server_default=True,
        render_item=render_item,
        **options,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    configure(url=database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = create_async_engine(database_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_async_migrations())
