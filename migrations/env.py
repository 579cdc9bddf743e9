"""Alembic environment for the transcript database (from alembic's templates/async/env.py).

Two ways in:

* programmatically, from ``storage.db``: the caller opens an async engine and
  runs alembic inside ``AsyncConnection.run_sync``, handing the synchronous
  connection over in ``config.attributes["connection"]``; no event loop is
  started here, so this works inside a running loop;
* from the ``alembic`` command in a checkout (``alembic -x db=URL ...``): no
  loop is running, so this module starts one with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from storage.db import create_engine, normalize_url
from storage.models import Base, include_object

config = context.config

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)

target_metadata = Base.metadata


def _database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("db") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("pass the database URL: alembic -x db=sqlite+aiosqlite:///path.db ...")
    return url


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        # The FTS objects live only in the migrations (storage.models.include_object).
        include_object=include_object,
        compare_type=True,
        **kwargs,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    """Emit SQL to stdout instead of running it (``alembic upgrade --sql``)."""
    url = normalize_url(_database_url())
    _configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    """Run the migrations on a synchronous connection (inside ``run_sync``)."""
    _configure(
        connection=connection,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    """Open an engine the way the store does and run the migrations through it."""
    engine = create_engine(_database_url())
    try:
        async with engine.begin() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    """Run against a live database, on the caller's connection if it gave one."""
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
    else:
        asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
