"""``recorder serve``, ``recorder mcp`` and ``recorder tokens``: the HTTP service and its keys.

Thin shells over :mod:`recorder.service` and :mod:`storage.tokens`; FastAPI,
uvicorn and the MCP SDK are imported inside the commands (they are the
``service`` extra), so ``recorder --help`` stays light.
"""

from __future__ import annotations

import json
from typing import Any

import click

from recorder.cli.common import CONTEXT_SETTINGS, ROW_ID, build_config, db_option, run
from recorder.errors import ConfigError

__all__ = ["mcp", "serve", "tokens", "webhooks"]

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
    from recorder.fleet.connect import fleet_database
    from recorder.service.app import require_postgres
    from storage.store import TranscriptStore

    require_postgres(database_url)
    fleet_database(database_url, what="recorder serve")  # psycopg and procrastinate present
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
    POST /v1/recordings queues recordings for 'recorder worker's. With
    RECORDER_WEBHOOK_KEY set, webhooks can be added; the workers (started with
    the same key) send them.

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
    app = create_app(config.database_url, mcp=not no_mcp, webhook_key=config.webhook_key)
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


@click.group(context_settings=CONTEXT_SETTINGS)
def webhooks() -> None:
    """Send events to URLs, signed the Standard Webhooks way (needs RECORDER_WEBHOOK_KEY).

    Deliveries go through the fleet's queue: at least one 'recorder worker'
    started with the same RECORDER_WEBHOOK_KEY sends them.
    """


def _webhook_key(database_url: str | None) -> tuple[str, str]:
    config = build_config(database_url=database_url)
    if not config.webhook_key:
        raise ConfigError(
            "RECORDER_WEBHOOK_KEY is not set; webhook secrets are derived from it. Set it to a "
            "long random value, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return config.database_url, config.webhook_key


@webhooks.command("add")
@click.argument("url")
@click.option(
    "--events",
    default="*",
    show_default=True,
    metavar="KINDS",
    help="Comma-separated: meeting.started, meeting.ended, meeting.resumed, participant.joined, "
    "participant.left, turn.final, turn.updated; or * for all.",
)
@click.option(
    "--allow-private-targets",
    is_flag=True,
    help="Allow a URL on loopback or a private network (refused by default).",
)
@db_option
def add(url: str, events: str, allow_private_targets: bool, database_url: str | None) -> None:
    """Send events to URL; prints the endpoint's signing secret once.

    \b
    Example:
        recorder webhooks add https://app.example/hooks --events turn.final,meeting.ended
    """
    from recorder.errors import UsageError
    from recorder.fleet.signing import derive_secret
    from recorder.fleet.targets import TargetRefused, check_target
    from storage.webhooks import add_endpoint, check_events

    url_db, key = _webhook_key(database_url)
    try:
        kinds = check_events(events.split(","))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc

    async def main(engine: Any) -> Any:
        try:
            await check_target(url, allow_private=allow_private_targets)
        except TargetRefused as exc:
            raise UsageError(str(exc)) from exc
        return await add_endpoint(engine, url, kinds, allow_private=allow_private_targets)

    endpoint = run(_engine_call(url_db, main))
    click.echo(derive_secret(key, endpoint.id, endpoint.salt))
    click.echo(
        f"webhook {endpoint.id} sends {', '.join(endpoint.events)} to {endpoint.url}; the "
        "secret above signs them and is shown only this once",
        err=True,
    )


@webhooks.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
@db_option
def list_hooks(as_json: bool, database_url: str | None) -> None:
    """List webhook endpoints.

    \b
    Example:
        recorder webhooks list --json
    """
    from storage.webhooks import list_endpoints

    config = build_config(database_url=database_url)
    found = run(_engine_call(config.database_url, list_endpoints))
    if as_json:
        click.echo(
            json.dumps(
                [{"id": e.id, "url": e.url, "events": list(e.events)} for e in found], indent=2
            )
        )
        return
    if not found:
        click.echo("no webhooks; add one with 'recorder webhooks add URL'", err=True)
    for endpoint in found:
        click.echo(f"{endpoint.id}  {endpoint.url}  {','.join(endpoint.events)}")


@webhooks.command("remove")
@click.argument("endpoint_id", type=ROW_ID, metavar="ID")
@db_option
def remove(endpoint_id: int, database_url: str | None) -> None:
    """Stop sending to an endpoint (its log stays).

    \b
    Example:
        recorder webhooks remove 3
    """
    from storage.webhooks import remove_endpoint

    config = build_config(database_url=database_url)
    run(_engine_call(config.database_url, lambda e: remove_endpoint(e, endpoint_id)))
    click.echo(f"webhook {endpoint_id} removed", err=True)


@webhooks.command("log")
@click.option("--endpoint", "endpoint_id", type=ROW_ID, metavar="ID", help="Only this endpoint.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
@db_option
def log(endpoint_id: int | None, limit: int, as_json: bool, database_url: str | None) -> None:
    """Show deliveries, newest first: status, attempts, last answer.

    \b
    Example:
        recorder webhooks log --endpoint 3 --limit 20
    """
    from recorder.export.render import format_datetime
    from storage.webhooks import deliveries

    config = build_config(database_url=database_url)
    found = run(
        _engine_call(
            config.database_url, lambda e: deliveries(e, endpoint_id=endpoint_id, limit=limit)
        )
    )
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "id": d.id,
                        "endpoint_id": d.endpoint_id,
                        "event_id": d.event_id,
                        "kind": d.kind,
                        "status": d.status,
                        "attempts": d.attempts,
                        "last_status": d.last_status,
                        "last_error": d.last_error,
                        "next_attempt_at": format_datetime(d.next_attempt_at, "iso"),
                    }
                    for d in found
                ],
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    if not found:
        click.echo("no deliveries yet", err=True)
    for d in found:
        answer = d.last_error or (f"HTTP {d.last_status}" if d.last_status else "-")
        click.echo(
            f"{d.id}  webhook {d.endpoint_id}  {d.kind}  {d.status}  "
            f"{d.attempts} attempt(s)  {answer}  {format_datetime(d.created_at, 'seconds')}"
        )
