"""``recorder worker``, ``record``, ``jobs``, ``stop`` and ``cancel``: the recording fleet.

Workers on any number of machines take recordings from one queue in the
transcripts' PostgreSQL database (README.md, "Fleet"). procrastinate and psycopg
are imported inside the commands, so ``recorder --help`` loads neither.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from recorder.cli.common import (
    CONTEXT_SETTINGS,
    ROW_ID,
    Duration,
    FiniteFloat,
    Text,
    build_config,
    db_option,
    parse_duration,
    read_names,
    run,
    split_keyterms,
)
from recorder.cli.recap_options import recap_options
from recorder.config import DEFAULT_EMPTY_TIMEOUT_S, DEFAULT_IDLE_CLOSE_S, Config
from recorder.errors import ConfigError

if TYPE_CHECKING:
    from recorder.fleet.connect import FleetDatabase
    from recorder.fleet.recordings import RecordingRow
    from recorder.recap.settings import RecapSettings

__all__ = ["cancel", "jobs", "record", "stop", "worker"]

_RELATIVE = re.compile(r"^\+(.+)$")


def _database(config: Config, what: str) -> FleetDatabase:
    from recorder.fleet.connect import fleet_database

    return fleet_database(config.database_url, what=what)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--capacity",
    type=click.IntRange(min=1, max=500),
    default=4,
    show_default=True,
    help="Most meetings recorded at once; more wait in the queue.",
)
@click.option(
    "--stt-url", help="Streaming endpoint override, e.g. an emulator ($RECORDER_STT_URL)."
)
@click.option(
    "--heartbeat",
    "heartbeat_s",
    type=Duration(min_s=0.1, max_s=3600),
    default=2.0,
    show_default=True,
    help="How often this worker tells the queue it is alive, e.g. 2s.",
)
@click.option(
    "--stall-timeout",
    "stall_s",
    type=Duration(min_s=0.5, max_s=3600),
    default=10.0,
    show_default=True,
    help="A worker silent this long is dead: its recordings are taken over (also each "
    "lease), e.g. 10s.",
)
@click.option(
    "--drain-timeout",
    "drain_s",
    type=Duration(min_s=1, max_s=3600),
    default=30.0,
    show_default=True,
    help="On SIGTERM, hand recordings back within this long, then exit, e.g. 30s or 2m.",
)
@click.option(
    "--webhook-retry",
    "webhook_retry_s",
    type=Duration(min_s=0.1, max_s=3600),
    default=5.0,
    show_default=True,
    help="Pause after a failed webhook delivery, doubling each time (up to an hour, for a "
    "day), e.g. 5s.",
)
@db_option
def worker(
    capacity: int,
    stt_url: str | None,
    heartbeat_s: float,
    stall_s: float,
    drain_s: float,
    webhook_retry_s: float,
    database_url: str | None,
) -> None:
    """Record meetings from the fleet's queue until stopped (PostgreSQL only).

    Run one per machine, all on the same database. Prints one line per job
    event. With RECORDER_WEBHOOK_KEY set it also sends the webhooks (from a
    queue of their own, so they never take a recording's place). SIGTERM (or
    Ctrl+C) hands held recordings back to the queue, where
    another worker continues the same meetings, and exits 0; a second SIGTERM
    exits at once. A worker that dies is taken over by the others within
    --stall-timeout plus a few seconds.

    \b
    Examples:
        recorder db upgrade --db postgresql+asyncpg://rec@db.example/rec
        recorder worker --db postgresql+asyncpg://rec@db.example/rec --capacity 20
    """
    from recorder.fleet.worker import WorkerSettings, run_worker

    config = build_config(database_url=database_url, stt_url=stt_url)
    database = _database(config, "recorder worker")
    config.require_api_key()
    settings = WorkerSettings(
        capacity=capacity,
        heartbeat_s=heartbeat_s,
        stall_s=stall_s,
        lease_s=stall_s,
        drain_s=drain_s,
        webhook_first_retry_s=webhook_retry_s,
        webhook_max_retry_s=max(3600.0, webhook_retry_s),
    )
    raise SystemExit(run(run_worker(database, config, settings)))


def _parse_at(text: str | None) -> datetime | None:
    """``--at``: an ISO 8601 time (local if no zone) or ``+10m`` from now."""
    if text is None:
        return None
    relative = _RELATIVE.match(text.strip())
    if relative:
        try:
            return datetime.now(UTC) + timedelta(seconds=parse_duration(relative.group(1)))
        except ValueError as exc:
            raise ConfigError(f"--at {text!r}: {exc}") from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"--at {text!r} is not a time; use e.g. 2026-12-05T09:30, "
            "2026-12-05T09:30+01:00 or +10m"
        ) from None
    return moment.astimezone() if moment.tzinfo is None else moment


@click.command("record", context_settings=CONTEXT_SETTINGS)
@click.option("--channel", required=True, type=Text(), help="Agora channel to record.")
@click.option(
    "--transport",
    "transport_spec",
    default="agora",
    show_default=True,
    help="'agora', or 'replay:FILE' to play a scripted meeting (the file must exist "
    "at that path on the workers).",
)
@click.option(
    "--speed",
    type=FiniteFloat(min=0.1, max=100),
    default=1.0,
    show_default=True,
    help="Replay speed (only against an emulator that allows it).",
)
@click.option("--at", "at_text", metavar="TIME", help="Start at this time (ISO 8601, or +10m).")
@click.option(
    "--max-duration",
    "max_duration_s",
    type=Duration(min_s=0.1),
    help="Stop recording this long after it started, e.g. 1h.",
)
@click.option(
    "--empty-timeout",
    "empty_timeout_s",
    type=Duration(min_s=0.1),
    default=DEFAULT_EMPTY_TIMEOUT_S,
    show_default=True,
    help="Stop once the channel has had nobody in it this long, e.g. 2m.",
)
@click.option(
    "--idle-close",
    "idle_close_s",
    type=Duration(min_s=0.5),
    default=DEFAULT_IDLE_CLOSE_S,
    show_default=True,
    help="Close a participant's stream after this much silence.",
)
@click.option(
    "--sessions-per-minute",
    type=FiniteFloat(min=0.1, max=100_000),
    help="New STT sessions your AssemblyAI account allows a minute.",
)
@click.option(
    "--speaker-names",
    type=click.Path(path_type=Path, dir_okay=False),
    help='Names for uids: JSON {"101": "Alice"} or lines 101=Alice.',
)
@click.option(
    "--keyterms", type=Text(), default="", help="Comma-separated words to boost (names, jargon)."
)
@click.option("--prompt", type=Text(), help="Instructions for the speech model (beta).")
@click.option("--speech-model", type=Text(), help="Streaming speech model (default: the worker's).")
@click.option(
    "--notes",
    "make_notes",
    is_flag=True,
    help="Write the meeting's notes with the LLM Gateway when it ends (sends the transcript).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the recording as JSON.")
@db_option
@recap_options
def record(
    channel: str,
    transport_spec: str,
    speed: float,
    at_text: str | None,
    max_duration_s: float | None,
    empty_timeout_s: float,
    idle_close_s: float,
    sessions_per_minute: float | None,
    speaker_names: Path | None,
    keyterms: str,
    prompt: str | None,
    speech_model: str | None,
    make_notes: bool,
    as_json: bool,
    database_url: str | None,
    recap: RecapSettings | None,
    agent_url: str | None,
) -> None:
    """Queue a recording for the fleet; print its id and return at once.

    A worker joins the channel when it has room (or at --at) and records until
    the channel has been empty for --empty-timeout, --max-duration passes, or
    'recorder stop ID'. Options are those of 'recorder join'.

    \b
    Examples:
        recorder record --channel standup
        recorder record --channel board --at 2026-12-05T09:30 --max-duration 3600
        recorder record --channel demo --transport replay:/srv/meetings/demo.json
    """
    from recorder.fleet.options import RecordingRequest, recording_options

    config = build_config(database_url=database_url)
    database = _database(config, "recorder record")
    channel, options, at = recording_options(
        RecordingRequest(
            channel=channel,
            transport=transport_spec,
            speed=speed,
            max_duration_s=max_duration_s,
            empty_timeout_s=empty_timeout_s,
            idle_close_s=idle_close_s,
            sessions_per_minute=sessions_per_minute,
            names=read_names(speaker_names),
            keyterms=split_keyterms(keyterms),
            prompt=prompt,
            speech_model=speech_model,
            recap=_recap_request(recap),
            at=_parse_at(at_text),
            notes=make_notes,
        )
    )

    async def main() -> RecordingRow:
        from recorder.fleet.control import open_fleet
        from recorder.fleet.queue import enqueue

        async with open_fleet(database) as app:
            return await enqueue(app, channel, options, at=at)

    row = run(main())
    if as_json:
        click.echo(json.dumps(_row_json(row)))
    else:
        click.echo(row.id)
        when = f" for {at.isoformat(timespec='seconds')}" if at is not None else ""
        click.echo(
            f"recording {row.id} of channel {channel!r} queued{when}; watch it with: recorder jobs",
            err=True,
        )


def _recap_request(recap: RecapSettings | None) -> Any:
    from recorder.fleet.options import RecapRequest

    if recap is None:
        return None
    return RecapRequest(
        every_s=recap.every_s,
        on_end=recap.on_end,
        phrase=recap.phrase,
        voice=recap.voice,
        prompt_extra=recap.prompt_extra,
        since_last=recap.since_last,
    )


def _row_json(row: RecordingRow) -> dict[str, Any]:
    from recorder.fleet.control import recording_json

    return recording_json(row)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(["queued", "scheduled", "recording", "done", "failed", "cancelled"]),
    help="Only recordings with this status (repeatable).",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Newest N."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@db_option
def jobs(statuses: tuple[str, ...], limit: int, as_json: bool, database_url: str | None) -> None:
    """List the fleet's recordings: status, channel, worker, start, meeting, wait.

    \b
    Examples:
        recorder jobs
        recorder jobs --status recording --status queued
        recorder jobs --json | jq .
    """
    config = build_config(database_url=database_url)
    database = _database(config, "recorder jobs")

    async def main() -> list[RecordingRow]:
        from recorder.fleet.control import open_fleet
        from recorder.fleet.recordings import Recordings

        async with open_fleet(database) as app:
            return await Recordings(app.connector).list(statuses, limit)  # type: ignore[arg-type]

    rows = run(main())
    if as_json:
        for row in rows:
            click.echo(json.dumps(_row_json(row)))
        return
    if not rows:
        click.echo("no recordings; queue one with: recorder record --channel NAME", err=True)
        return
    header = f"{'ID':>5}  {'STATUS':<9}  {'CHANNEL':<20}  {'WORKER':<22}  {'STARTED':<19}  "
    click.echo(header + f"{'MEETING':>7}  {'WAIT':>7}  REASON")
    for row in rows:
        started = (
            row.started_at.astimezone().strftime("%Y-%m-%d %H:%M:%S") if row.started_at else "-"
        )
        worker_name = f"{row.worker_host}:{row.worker_pid}" if row.worker_host else "-"
        click.echo(
            f"{row.id:>5}  {row.status:<9}  {row.channel[:20]:<20}  {worker_name[:22]:<22}  "
            f"{started:<19}  {row.meeting_id or '-':>7}  {row.wait_s:>6.1f}s  {row.reason or ''}"
        )


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("recording_id", type=ROW_ID, metavar="ID")
@db_option
def stop(recording_id: int, database_url: str | None) -> None:
    """Ask the worker recording ID to stop cleanly (it hears within a second or two).

    \b
    Example:
        recorder stop 42
    """
    config = build_config(database_url=database_url)
    database = _database(config, "recorder stop")

    async def main() -> RecordingRow:
        from recorder.fleet.control import open_fleet, stop_recording

        async with open_fleet(database) as app:
            return await stop_recording(app, recording_id)

    row = run(main())
    if row.status != "recording":
        click.echo(f"recording {recording_id} is already {row.status}", err=True)
        return
    click.echo(f"stop sent to {row.worker_host}:{row.worker_pid} for recording {recording_id}")


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("recording_id", type=ROW_ID, metavar="ID")
@db_option
def cancel(recording_id: int, database_url: str | None) -> None:
    """Cancel a recording that has not started yet.

    \b
    Example:
        recorder cancel 42
    """
    config = build_config(database_url=database_url)
    database = _database(config, "recorder cancel")

    async def main() -> tuple[bool, RecordingRow]:
        from recorder.fleet.control import cancel_recording, open_fleet

        async with open_fleet(database) as app:
            return await cancel_recording(app, recording_id)

    cancelled, row = run(main())
    if cancelled:
        click.echo(f"recording {recording_id} cancelled")
        return
    click.echo(f"recording {recording_id} is already {row.status}", err=True)
