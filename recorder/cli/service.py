"""``recorder serve``, ``recorder mcp`` and ``recorder tokens``: the HTTP service and its keys.

Thin shells over :mod:`recorder.service` and :mod:`storage.tokens`; FastAPI,
uvicorn and the MCP SDK are imported inside the commands (they are the
``service`` extra), so ``recorder --help`` stays light.
"""

from __future__ import annotations

import json
from typing import Any

import click

from recorder.cli.common import CONTEXT_SETTINGS, build_config, db_option, run
from recorder.errors import ConfigError

__all__ = ["mcp", "serve", "tokens"]

_EXTRA_HINT = "install the service extra: pip install 'meeting-recorder[service]'"


def _require_service_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import mcp as _mcp  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"the service needs {exc.name}; {_EXTRA_HINT}") from exc


async def _check_database(database_url: str) -> None:
    """Fail before serving: PostgreSQL, reachable, migrated."""
    from recorder.service.app import require_postgres
    from storage.store import TranscriptStore

    require_postgres(database_url)
    store = await TranscriptStore.open(database_url, auto_migrate=False)
    await store.close()


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port."
)
@click.option("--no-mcp", is_flag=True, help="Do not serve the MCP endpoint at /mcp.")
@db_option
def serve(host: str, port: int, no_mcp: bool, database_url: str | None) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs), live events and MCP at /mcp.

    Needs PostgreSQL, migrated with 'recorder db upgrade', and a token from
    'recorder tokens create' for every request but /healthz and /readyz.

    \b
    Examples:
        recorder serve --db postgresql+asyncpg://recorder@db/recorder
        recorder serve --host 0.0.0.0 --port 8080
    """
    _require_service_extra()
    import uvicorn

    from recorder.service.app import create_app

    config = build_config(database_url=database_url)
    run(_check_database(config.database_url))
    app = create_app(config.database_url, mcp=not no_mcp)
    # The access log shows method, path and status only: tokens travel in a header.
    uvicorn.run(app, host=host, port=port, log_level="info", lifespan="on")


@click.command(context_settings=CONTEXT_SETTINGS)
@db_option
def mcp(database_url: str | None) -> None:
    """Serve the MCP tools over stdio, for a desktop agent on this machine.

    \b
    Example agent configuration:
        {"mcpServers": {"recorder": {"command": "recorder",
            "args": ["mcp", "--db", "postgresql+asyncpg://me@db/recorder"]}}}
    """
    _require_service_extra()
    from recorder.service.mcp import McpBackend, build_server
    from storage.store import TranscriptStore

    config = build_config(database_url=database_url)

    async def main() -> None:
        async with await TranscriptStore.open(config.database_url) as store:
            backend = McpBackend(store=store, database_url=config.database_url, require_role=False)
            await build_server(backend).run_stdio_async()

    run(main())


@click.group(context_settings=CONTEXT_SETTINGS)
def tokens() -> None:
    """Create, list and revoke the API's bearer tokens (only hashes are stored)."""


async def _engine_call(database_url: str, work: Any) -> Any:
    from storage.db import create_engine, ensure_schema

    engine = create_engine(database_url)
    try:
        await ensure_schema(engine, auto_migrate=False)
        return await work(engine)
    finally:
        await engine.dispose()


@tokens.command("create")
@click.option("--name", required=True, metavar="NAME", help="Who the token is for, e.g. app1.")
@db_option
def create(name: str, database_url: str | None) -> None:
    """Make a token and print it once; store it now, it cannot be shown again.

    \b
    Example:
        recorder tokens create --name app1
    """
    from storage.tokens import create_token

    config = build_config(database_url=database_url)
    record, token = run(_engine_call(config.database_url, lambda e: create_token(e, name)))
    click.echo(token)
    click.echo(
        f"token {record.name!r} created; it is shown only this once. "
        "Send it as 'Authorization: Bearer <token>'",
        err=True,
    )


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
@db_option
def list_(as_json: bool, database_url: str | None) -> None:
    """List tokens: name, first characters, when made, used and revoked.

    \b
    Examples:
        recorder tokens list
        recorder tokens list --json
    """
    from recorder.export.render import format_datetime
    from storage.tokens import list_tokens

    config = build_config(database_url=database_url)
    found = run(_engine_call(config.database_url, list_tokens))
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "id": t.id,
                        "name": t.name,
                        "prefix": t.prefix,
                        "created_at": format_datetime(t.created_at, "iso"),
                        "last_used_at": format_datetime(t.last_used_at, "iso")
                        if t.last_used_at
                        else None,
                        "revoked_at": format_datetime(t.revoked_at, "iso")
                        if t.revoked_at
                        else None,
                        "active": t.is_active,
                    }
                    for t in found
                ],
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    if not found:
        click.echo("no tokens yet; make one with 'recorder tokens create --name app1'", err=True)
        return
    rows = [["ID", "NAME", "STARTS", "CREATED", "LAST USED", "STATUS"]] + [
        [
            str(t.id),
            t.name,
            t.prefix + "…",
            format_datetime(t.created_at),
            format_datetime(t.last_used_at),
            "active" if t.is_active else f"revoked {format_datetime(t.revoked_at)}",
        ]
        for t in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@tokens.command("revoke")
@click.argument("name")
@db_option
def revoke(name: str, database_url: str | None) -> None:
    """Revoke a token by name (or id); requests with it are refused at once.

    \b
    Example:
        recorder tokens revoke app1
    """
    from storage.tokens import revoke_token

    config = build_config(database_url=database_url)
    record = run(_engine_call(config.database_url, lambda e: revoke_token(e, name)))
    click.echo(f"token {record.name!r} revoked", err=True)
