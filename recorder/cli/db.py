"""``recorder db``: migrate and inspect the transcript database."""

from __future__ import annotations

import click

from recorder.cli.common import CONTEXT_SETTINGS, build_config, db_option, run
from recorder.cli.output import echo_json

__all__ = ["db"]


@click.group(context_settings=CONTEXT_SETTINGS)
def db() -> None:
    """Migrate and inspect the transcript database."""


@db.command()
@db_option
def upgrade(database_url: str | None) -> None:
    """Bring the database schema up to date (creates the database if needed).

    \b
    Example:
        recorder db upgrade --db postgresql+asyncpg://recorder@db.example/recorder
    """
    from storage.bounded import ensure_reader
    from storage.db import upgrade_database

    config = build_config(database_url=database_url)
    revision = run(upgrade_database(config.database_url))
    click.echo(f"database is at revision {revision}")
    warning = run(ensure_reader(config.database_url))
    if warning is not None:
        click.echo(f"warning: {warning}", err=True)


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, for scripts.")
@db_option
def info(as_json: bool, database_url: str | None) -> None:
    """Show the database URL (password masked), its revision and row counts.

    \b
    Examples:
        recorder db info
        recorder db info --json
    """
    from storage.db import database_info

    config = build_config(database_url=database_url)
    details = run(database_info(config.database_url))
    if as_json:
        echo_json(details)
        return
    for key, value in details.items():
        click.echo(f"{key}: {value}")
