"""``recorder sql``: read-only SQL on the transcript database, and what it holds.

The database itself keeps the statement read-only (see :mod:`storage.readonly`).
``--tables`` and ``--schema TABLE`` show the tables, views and columns to query.
"""

from __future__ import annotations

from typing import Any

import click

from recorder.cli.common import CONTEXT_SETTINGS, Duration, build_config, db_option, run
from recorder.cli.output import (
    MAX_CELL_CHARS,
    echo_csv,
    echo_json,
    echo_table,
    json_default,
    terminal_width,
)
from recorder.console import plural
from recorder.errors import NotFoundError, UsageError
from recorder.export.escape import clean_text

__all__ = ["sql"]


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("statement", metavar="SQL", required=False)
@click.option("--tables", "list_tables", is_flag=True, help="List the tables and views to query.")
@click.option("--schema", "schema_of", metavar="TABLE", help="List the columns of TABLE.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of rows ([] if none).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV with a header row.")
@click.option(
    "--max-rows",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="Print at most this many rows.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=Duration(min_s=0.001),
    default=30.0,
    show_default=True,
    help="Stop the statement after this long, e.g. 30 or 2m.",
)
@db_option
def sql(
    statement: str | None,
    list_tables: bool,
    schema_of: str | None,
    as_json: bool,
    as_csv: bool,
    max_rows: int,
    timeout_s: float,
    database_url: str | None,
) -> None:
    """Run one read-only SQL statement; anything that would change the database fails.

    The view 'transcript' has one row per turn: meeting (its id), channel,
    uid, speaker, start_ms, end_ms, text. The tables are meetings,
    participants, stream_sessions, turns and notes; --tables lists them all.

    \b
    Examples:
        recorder sql --tables
        recorder sql --schema transcript
        recorder sql "SELECT speaker, count(*) AS turns FROM transcript GROUP BY speaker"
        recorder sql "SELECT channel, count(*) FROM meetings GROUP BY channel" --json
        recorder sql "SELECT start_ms, speaker, text FROM transcript WHERE meeting = 1" --csv
    """
    if as_json and as_csv:
        raise UsageError("choose one of --json and --csv")
    chosen = [bool(statement is not None), list_tables, schema_of is not None]
    if sum(chosen) > 1:
        raise UsageError("give one of SQL, --tables and --schema TABLE")
    config = build_config(database_url=database_url)
    if list_tables or schema_of is not None:
        _describe(config.database_url, schema_of, as_json=as_json, as_csv=as_csv)
        return
    if statement is None or not statement.strip():
        raise UsageError(
            'give an SQL statement, e.g. recorder sql "SELECT * FROM transcript LIMIT 5", '
            "or --tables to see what there is"
        )

    async def main() -> Any:
        from storage.store import TranscriptStore

        async with await TranscriptStore.open(config.database_url) as store:
            return await store.run_query(statement, max_rows=max_rows, timeout_s=timeout_s)

    result = run(main())
    columns = list(result.columns)
    if as_json:
        echo_json([dict(zip(columns, row, strict=True)) for row in result.rows])
    elif as_csv:
        echo_csv(columns, result.rows)
    else:
        rows = [[_cell(value) for value in row] for row in result.rows]
        if columns:
            echo_table(columns, rows)
        click.echo(f"({plural(len(rows), 'row')})", err=True)
    if getattr(result, "truncated", False):
        click.echo(f"only the first {plural(max_rows, 'row')} shown; raise --max-rows", err=True)


def _describe(database_url: str, table: str | None, *, as_json: bool, as_csv: bool) -> None:
    from storage.bounded import READABLE_TABLES
    from storage.readonly import describe_schema

    # What read-only SQL may read (on PostgreSQL its role sees nothing else).
    tables = [t for t in run(describe_schema(database_url)) if t.name in READABLE_TABLES]
    if table is not None:
        matches = [t for t in tables if t.name.lower() == table.strip().lower()]
        if not matches:
            known = ", ".join(t.name for t in tables)
            raise NotFoundError(f"no table or view {table!r}; try one of: {known}")
        columns: list[dict[str, Any]] = [
            {"name": c.name, "type": c.type, "nullable": c.nullable} for c in matches[0].columns
        ]
        if as_json:
            echo_json(columns)
        elif as_csv:
            echo_csv(["name", "type", "nullable"], [list(c.values()) for c in columns])
        else:
            echo_table(
                ["COLUMN", "TYPE", "NULL"],
                [[c["name"], c["type"] or "-", "yes" if c["nullable"] else "no"] for c in columns],
            )
        return
    records = [
        {"name": t.name, "kind": t.kind, "columns": [c.name for c in t.columns]} for t in tables
    ]
    if as_json:
        echo_json(records)
    elif as_csv:
        echo_csv(
            ["name", "kind", "columns"],
            [[r["name"], r["kind"], " ".join(r["columns"])] for r in records],
        )
    else:
        import textwrap

        width = min(terminal_width() or 100, 100)
        for t in tables:
            click.echo(f"{t.name} ({t.kind})")
            click.echo(
                textwrap.fill(
                    ", ".join(c.name for c in t.columns),
                    width=width,
                    initial_indent="    ",
                    subsequent_indent="    ",
                    break_on_hyphens=False,
                )
            )
        click.echo("types and nulls of one: recorder sql --schema TABLE", err=True)


def _plain(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    return clean_text(str(value if _plain(value) else json_default(value)))[: MAX_CELL_CHARS * 4]
