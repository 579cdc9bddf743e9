"""What ``meetings``, ``show``, ``search`` and ``speakers`` share: options, fields, output.

The field lists are the documented keys of each command's ``--json`` and
``--csv`` records (README, "Machine output").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

import click

from recorder.cli.common import build_config
from recorder.cli.output import echo_csv, echo_json
from recorder.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from storage.store import TranscriptStore

__all__ = [
    "COST_FIELDS",
    "COUNT_CAP",
    "HIT_FIELDS",
    "MEETING_FIELDS",
    "PARTICIPANT_FIELDS",
    "TURN_FIELDS",
    "channel_option",
    "check_formats",
    "emit",
    "format_options",
    "meeting_argument",
    "no_meetings_error",
    "nothing",
    "open_store",
    "parse_clock",
    "parse_since",
    "since_option",
]


# Matches counted at most, for "N more; use --limit" (the count stays cheap).
COUNT_CAP = 10_000


_CLOCK = re.compile(r"^(?:(?:(\d+):)?(\d+):)?(\d+)(?:\.(\d{1,3}))?$")


def parse_clock(value: str, option: str) -> int:
    """Read a meeting time such as ``12:30``, ``1:02:03`` or ``90`` (seconds) as ms.

    Raises:
        UsageError: not a time.
    """
    match = _CLOCK.match(value.strip())
    if match is None:
        raise UsageError(f"{option} must be a time like 12:30 or 1:02:03, got {value!r}")
    hours, minutes, seconds, fraction = match.groups()
    if (minutes is not None and int(seconds) >= 60) or (hours is not None and int(minutes) >= 60):
        raise UsageError(f"{option} must be a time like 12:30 or 1:02:03, got {value!r}")
    total_s = int(hours or 0) * 3600 + int(minutes or 0) * 60 + int(seconds)
    return total_s * 1000 + int((fraction or "0").ljust(3, "0"))


def parse_since(value: str) -> datetime:
    """Read ``--since``: an ISO date (``2026-11-20``) or date-time; naive means UTC.

    Raises:
        UsageError: not a date.
    """
    text = value.strip()
    try:
        if len(text) == 10:
            parsed = datetime.combine(date.fromisoformat(text), time(0))
        else:
            parsed = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--since must be a date like 2026-11-20 or 2026-11-20T09:30, got {value!r}"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


async def open_store(database_url: str | None) -> TranscriptStore:
    """The store at ``database_url``, or the configured one."""
    from storage.store import TranscriptStore

    config = build_config(database_url=database_url)
    return await TranscriptStore.open(config.database_url)


async def no_meetings_error(store: TranscriptStore, what: str) -> NotFoundError:
    """``what``, or that nothing was recorded yet when the database is empty."""
    if not await store.list_meetings():
        return NotFoundError(_NO_MEETINGS)
    return NotFoundError(what)


_NO_MEETINGS = "no meetings recorded yet; record one with 'recorder join' or try 'recorder demo'"


def nothing(message: str) -> None:
    """An empty result: say so on stderr (stdout stays empty, or ``[]``), exit 0."""
    click.echo(message, err=True)


def format_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--json`` and ``--csv``, for listings."""
    function = click.option(
        "--csv", "as_csv", is_flag=True, help="Print CSV with a header row, for spreadsheets."
    )(function)
    return click.option(
        "--json", "as_json", is_flag=True, help="Print a JSON array, for scripts ([] if none)."
    )(function)


def check_formats(as_json: bool, as_csv: bool) -> None:
    """Refuse --json together with --csv."""
    if as_json and as_csv:
        raise UsageError("choose one of --json and --csv")


def emit(
    as_json: bool,
    as_csv: bool,
    fields: Sequence[str],
    records: list[dict[str, Any]],
    table: Callable[[], None],
) -> None:
    """Print ``records`` as JSON or CSV (``fields`` as columns), else draw the table."""
    if as_json:
        echo_json(records)
    elif as_csv:
        echo_csv(fields, [[record[field] for field in fields] for record in records])
    else:
        table()


# Machine output fields, in order (README, "Machine output"): the JSON export's names.
MEETING_FIELDS = (
    "id",
    "channel",
    "bot_uid",
    "status",
    "started_at",
    "ended_at",
    "duration_ms",
    "participant_count",
    "turn_count",
)


# What `meetings` adds to each meeting: the streaming cost (see _cost_json).
COST_FIELDS = (
    "billed_ms",
    "speech_ms",
    "billed_speech_ratio",
    "price_per_hour",
    "estimated_cost_usd",
)


TURN_FIELDS = ("id", "meeting_id", "uid", "speaker", "display_name", "start_ms", "end_ms", "text")


HIT_FIELDS = (
    "meeting_id",
    "channel",
    "meeting_started_at",
    "turn_id",
    "uid",
    "speaker",
    "start_ms",
    "end_ms",
    "text",
    "snippet",
    "rank",
)


PARTICIPANT_FIELDS = (
    "uid",
    "display_name",
    "speaker",
    "first_seen",
    "last_seen",
    "talk_ms",
    "turn_count",
)


meeting_argument = click.argument("meeting", metavar="MEETING")


channel_option = click.option(
    "--channel", metavar="NAME", help="Only meetings of this channel (with 'latest': its latest)."
)


since_option = click.option(
    "--since", metavar="DATE", help="Only meetings started on or after DATE (UTC), e.g. 2026-11-20."
)
