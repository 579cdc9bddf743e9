"""``recorder meetings``, ``show``, ``search``, ``speakers`` and ``sql``: read what was recorded.

Every command is a thin shell over one :class:`storage.store.TranscriptStore`
call. Untrusted text (transcripts, names) is cleaned of control characters
before it reaches the terminal, so a transcript cannot send escape sequences.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
import unicodedata
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

import click

from recorder.cli.common import CONTEXT_SETTINGS, Duration, build_config, db_option, run
from recorder.errors import NotFoundError, UsageError
from recorder.export.escape import clean_text
from recorder.timeline import format_clock

if TYPE_CHECKING:
    from storage.costs import MeetingCost
    from storage.records import Participant, SearchHit
    from storage.store import TranscriptStore

__all__ = [
    "format_table",
    "meetings",
    "parse_clock",
    "parse_since",
    "search",
    "show",
    "speakers",
    "sql",
]

# Longest cell in a `recorder sql` table (--json and --csv are never cut).
_MAX_CELL_CHARS = 60
# Turns read per query by `show`: fewer round trips; memory stays bounded by one page.
_TURNS_PER_QUERY = 5000
# Terminal colours per speaker, in participant order (as the HTML palette).
_SPEAKER_COLOURS = ("blue", "yellow", "green", "magenta", "red", "cyan")
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


def _display_width(text: str) -> int:
    # CJK and other wide characters take two terminal columns.
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart; no trailing blanks."""
    widths = [_display_width(h) for h in headers]
    for row in rows:
        widths = [max(w, _display_width(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(
            cell + " " * (width - _display_width(cell))
            for cell, width in zip(line, widths, strict=True)
        ).rstrip()
        for line in [list(headers), *rows]
    ]
    return "\n".join(lines)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        from recorder.export.render import format_datetime

        return format_datetime(value, "iso")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def _price_per_hour(database_url: str | None) -> float:
    """The streaming price to estimate costs with: configured, else the model's list price."""
    from recorder.stt.price import list_price_per_hour

    config = build_config(database_url=database_url)
    if config.price_per_hour is not None:
        return config.price_per_hour
    return list_price_per_hour(config.speech_model)


def _cost_json(cost: MeetingCost, price: float) -> dict[str, Any]:
    from recorder.stt.price import estimate_cost

    ratio = cost.ratio
    return {
        "billed_ms": cost.billed_ms,
        "speech_ms": cost.speech_ms,
        "billed_speech_ratio": None if ratio is None else round(ratio, 3),
        "price_per_hour": price,
        "estimated_cost_usd": round(estimate_cost(cost.billed_ms, price), 6),
    }


def _cost_cells(cost: MeetingCost, price: float) -> list[str]:
    from recorder.export.render import format_duration
    from recorder.stt.price import estimate_cost

    ratio = cost.ratio
    return [
        format_duration(cost.billed_ms),
        format_duration(cost.speech_ms),
        "-" if ratio is None else f"{ratio:.2f}x",
        f"${estimate_cost(cost.billed_ms, price):.3f}",
    ]


async def _open(database_url: str | None) -> TranscriptStore:
    from storage.store import TranscriptStore

    config = build_config(database_url=database_url)
    return await TranscriptStore.open(config.database_url)


async def _no_meetings_error(store: TranscriptStore, what: str) -> NotFoundError:
    if not await store.list_meetings():
        return NotFoundError(
            "no meetings recorded yet; record one with 'recorder join' or try 'recorder demo'"
        )
    return NotFoundError(what)


def _stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def _speaker_style(participants: Sequence[Participant]) -> Callable[[int, str], str]:
    order = {p.uid: i for i, p in enumerate(participants)}

    def style(uid: int, name: str) -> str:
        index = order.setdefault(uid, len(order))
        return click.style(name, fg=_SPEAKER_COLOURS[index % len(_SPEAKER_COLOURS)], bold=True)

    return style


meeting_argument = click.argument("meeting", metavar="MEETING")
channel_option = click.option(
    "--channel", metavar="NAME", help="Only meetings of this channel (with 'latest': its latest)."
)
since_option = click.option(
    "--since", metavar="DATE", help="Only meetings started on or after DATE (UTC), e.g. 2026-11-20."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")


# -- meetings -------------------------------------------------------------------------


@click.command(context_settings=CONTEXT_SETTINGS)
@channel_option
@since_option
@json_option
@db_option
def meetings(
    channel: str | None, since: str | None, as_json: bool, database_url: str | None
) -> None:
    """List recorded meetings, newest first.

    \b
    Examples:
        recorder meetings
        recorder meetings --channel standup --since 2026-11-01 --json
    """
    from recorder.export.render import format_datetime, format_duration

    since_at = parse_since(since) if since is not None else None
    price = _price_per_hour(database_url)

    async def main() -> None:
        async with await _open(database_url) as store:
            found = await store.list_meetings(channel=channel, since=since_at)
            costs = await store.meeting_costs(m.id for m in found)
            if not found:
                filters = " ".join(
                    part
                    for part in (
                        f"in channel {channel!r}" if channel else "",
                        f"since {since}" if since else "",
                    )
                    if part
                )
                raise await _no_meetings_error(store, f"no meetings {filters}".rstrip())
        if as_json:
            _echo_json(
                [
                    {
                        "id": m.id,
                        "channel": m.channel,
                        "started_at": m.started_at,
                        "ended_at": m.ended_at,
                        "duration_s": m.duration_s,
                        "participants": m.participant_count,
                        "turns": m.turn_count,
                        "status": m.status,
                        "open_gaps": m.open_gaps,
                        **_cost_json(costs[m.id], price),
                    }
                    for m in found
                ]
            )
            return
        rows = [
            [
                str(m.id),
                clean_text(m.channel),
                format_datetime(m.started_at),
                format_duration(None if m.duration_s is None else round(m.duration_s * 1000)),
                str(m.participant_count),
                str(m.turn_count),
                m.status,
                *_cost_cells(costs[m.id], price),
                str(m.open_gaps) if m.open_gaps else "",
            ]
            for m in found
        ]
        headers = ["ID", "CHANNEL", "STARTED", "DURATION", "PEOPLE", "TURNS", "STATUS"]
        headers += ["BILLED", "SPEECH", "RATIO", "COST", "GAPS"]
        click.echo(format_table(headers, rows))

    run(main())


# -- show -----------------------------------------------------------------------------


@click.command(context_settings=CONTEXT_SETTINGS)
@meeting_argument
@channel_option
@click.option("--speaker", metavar="NAME|UID", help="Only this participant's turns.")
@click.option("--from", "from_", metavar="MM:SS", help="Start at this meeting time.")
@click.option("--to", metavar="MM:SS", help="Stop at this meeting time.")
@click.option(
    "--revision",
    type=click.IntRange(min=1),
    help="Show this transcript revision (default: the latest; see 'recorder retranscribe').",
)
@db_option
def show(
    meeting: str,
    channel: str | None,
    speaker: str | None,
    from_: str | None,
    to: str | None,
    revision: int | None,
    database_url: str | None,
) -> None:
    """Print a meeting's transcript: one [hh:mm:ss] Name: text line per turn.

    MEETING is a meeting id (see 'recorder meetings') or 'latest'. Turns
    repaired from the stored audio are marked (repaired); stretches nothing
    could transcribe are listed as gaps at the end.

    \b
    Examples:
        recorder show latest
        recorder show 12 --speaker Alice --from 10:00 --to 25:30
        recorder show 12 --revision 1
    """
    from recorder.export.render import format_datetime, format_duration

    start_ms = parse_clock(from_, "--from") if from_ is not None else 0
    end_ms = parse_clock(to, "--to") if to is not None else None
    if end_ms is not None and end_ms < start_ms:
        raise UsageError(f"--to ({to}) is before --from ({from_})")
    price = _price_per_hour(database_url)

    async def main() -> None:
        async with await _open(database_url) as store:
            meeting_id = await store.resolve_meeting(meeting, channel=channel)
            header = await store.get_meeting(meeting_id, with_turns=False, revision=revision)
            cost = (await store.meeting_costs([meeting_id]))[meeting_id]
            turns = store.iter_turns(
                meeting_id, batch=_TURNS_PER_QUERY, with_words=False, revision=revision
            )
            participants = header.participants
            uid = _match_speaker(participants, speaker, meeting_id) if speaker else None
            style = _speaker_style(participants)
            summary = header.summary
            duration = format_duration(
                None if summary.duration_s is None else round(summary.duration_s * 1000)
            )
            title = (
                f"{clean_text(summary.channel)} · meeting {summary.id} · "
                f"{format_datetime(summary.started_at)} · {duration} · {summary.status}"
            )
            billed, speech, ratio, usd = _cost_cells(cost, price)
            title += f" · {billed} billed for {speech} of speech ({ratio}), about {usd}"
            if len(header.revisions) > 1:
                title += f" · revision {header.revision} of {header.revisions[-1]}"
            shown = 0
            async for turn in turns:
                if turn.start_ms < start_ms or (uid is not None and turn.uid != uid):
                    continue
                if end_ms is not None and turn.start_ms > end_ms:
                    break
                if shown == 0:
                    click.echo(title)
                name = clean_text(turn.display_name or "") or str(turn.uid)
                text = clean_text(turn.text)
                mark = " (repaired)" if turn.source == "repaired" else ""
                click.echo(
                    f"[{format_clock(turn.start_ms)}] {style(turn.uid, name)}{mark}:"
                    + (f" {text}" if text else "")
                )
                shown += 1
            names = {p.uid: p.speaker for p in participants}
            unrepaired = [g for g in header.gaps if g.state != "repaired"]
            if shown == 0 and not unrepaired:
                raise NotFoundError(f"no turns in meeting {meeting_id} match the filters")
            if shown == 0:
                click.echo(title)
            for gap in unrepaired:
                click.echo(
                    f"gap: {clean_text(names.get(gap.uid, str(gap.uid)))} "
                    f"{format_clock(gap.from_ms)}-{format_clock(gap.to_ms)}: "
                    f"{clean_text(gap.cause)} ({gap.state})"
                )
            if header.meeting_notes is not None and not (speaker or from_ or to):
                from recorder.notes.text import notes_lines

                click.echo("")
                for line in notes_lines(header.meeting_notes, clean_text):
                    click.echo(line)

    run(main())


def _match_speaker(participants: Sequence[Participant], wanted: str, meeting_id: int) -> int:
    key = wanted.strip()
    for participant in participants:
        if key.isdigit() and participant.uid == int(key):
            return participant.uid
    matches = [
        p.uid for p in participants if (p.display_name or "").strip().casefold() == key.casefold()
    ]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(
        f"{clean_text(p.display_name)} ({p.uid})" if p.display_name else str(p.uid)
        for p in participants
    )
    if matches:
        raise UsageError(f"{len(matches)} participants are called {wanted!r}; give a uid: {known}")
    raise NotFoundError(f"no participant {wanted!r} in meeting {meeting_id}; try one of: {known}")


# -- search ---------------------------------------------------------------------------


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("query")
@channel_option
@click.option("--speaker", metavar="NAME|UID", help="Only turns of this participant.")
@since_option
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="Most hits."
)
@json_option
@db_option
def search(
    query: str,
    channel: str | None,
    speaker: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
    database_url: str | None,
) -> None:
    """Search every transcript; best matches first, matches marked «like this».

    QUERY is words, "quoted phrases" or a prefix*; every word must match.

    \b
    Examples:
        recorder search budget
        recorder search '"ship the beta"' --channel standup --since 2026-11-01 --json
    """
    from recorder.export.render import format_datetime

    since_at = parse_since(since) if since is not None else None
    if not query.strip():
        raise UsageError("the search query is empty; give a word to look for")

    async def main() -> list[SearchHit]:
        async with await _open(database_url) as store:
            hits = await store.search(
                query, channel=channel, speaker=speaker, since=since_at, limit=limit
            )
            if not hits:
                raise await _no_meetings_error(store, f"nothing matches {query!r}")
            return hits

    hits = run(main())
    if as_json:
        _echo_json(
            [
                {
                    "meeting_id": h.meeting_id,
                    "channel": h.channel,
                    "meeting_started_at": h.meeting_started_at,
                    "turn_id": h.turn_id,
                    "uid": h.uid,
                    "speaker": h.speaker,
                    "start_ms": h.start_ms,
                    "end_ms": h.end_ms,
                    "text": h.text,
                    "snippet": h.snippet,
                    "rank": h.rank,
                }
                for h in hits
            ]
        )
        return
    tty = _stdout_is_tty()
    for hit in hits:
        where = click.style(
            f"{hit.meeting_id} {clean_text(hit.channel)} "
            f"{format_datetime(hit.meeting_started_at, 'date')} [{format_clock(hit.start_ms)}]",
            dim=True,
        )
        name = click.style(clean_text(hit.display_name or "") or str(hit.uid), bold=True)
        click.echo(f"{where} {name}: {_highlight(clean_text(hit.snippet), tty)}")


def _highlight(snippet: str, tty: bool) -> str:
    """Bold the «marked» matches on a terminal; keep the plain markers otherwise."""
    if not tty:
        return snippet
    return re.sub("«([^»]*)»", lambda m: click.style(m.group(1), fg="yellow", bold=True), snippet)


# -- speakers -------------------------------------------------------------------------


@click.command(context_settings=CONTEXT_SETTINGS)
@meeting_argument
@channel_option
@click.option(
    "--set",
    "assignments",
    metavar="UID=NAME",
    multiple=True,
    help="Name a participant (repeatable); an empty NAME forgets the name.",
)
@db_option
def speakers(
    meeting: str, channel: str | None, assignments: tuple[str, ...], database_url: str | None
) -> None:
    """List a meeting's participants, or name them so exports show names, not uids.

    \b
    Examples:
        recorder speakers latest
        recorder speakers 12 --set 101=Alice --set 102="Bob Li"
    """
    from recorder.export.render import format_datetime, format_duration

    names = [_parse_assignment(item) for item in assignments]

    async def main() -> None:
        async with await _open(database_url) as store:
            meeting_id = await store.resolve_meeting(meeting, channel=channel)
            header = await store.get_meeting(meeting_id, with_turns=False)
            known = {p.uid for p in header.participants}
            for uid, _name in names:
                if uid not in known:
                    raise NotFoundError(
                        f"uid {uid} was not in meeting {meeting_id}; "
                        f"run 'recorder speakers {meeting_id}' to list its participants"
                    )
            for uid, name in names:
                await store.set_display_name(meeting_id, uid, name)
                click.echo(
                    f"uid {uid} is now {name!r}" if name else f"uid {uid} has no name now",
                    err=True,
                )
            if names:
                header = await store.get_meeting(meeting_id, with_turns=False)
        rows = [
            [
                str(p.uid),
                clean_text(p.display_name or "") or "-",
                format_duration(p.talk_ms),
                str(p.turn_count),
                format_datetime(p.first_seen, "seconds"),
            ]
            for p in header.participants
        ]
        if not rows:
            raise NotFoundError(f"nobody was in meeting {meeting_id}")
        click.echo(format_table(["UID", "NAME", "TALK TIME", "TURNS", "FIRST SEEN"], rows))

    run(main())


def _parse_assignment(item: str) -> tuple[int, str | None]:
    uid_text, sep, name = item.partition("=")
    if not sep or not uid_text.strip().isdigit():
        raise UsageError(f"--set wants UID=NAME, like 101=Alice; got {item!r}")
    cleaned = clean_text(name)
    return int(uid_text.strip()), cleaned or None


# -- sql ------------------------------------------------------------------------------


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("statement", metavar="SQL")
@json_option
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
    statement: str,
    as_json: bool,
    as_csv: bool,
    max_rows: int,
    timeout_s: float,
    database_url: str | None,
) -> None:
    """Run one read-only SQL statement; anything that would change the database fails.

    Tables: meetings, participants, stream_sessions, turns, notes.

    \b
    Examples:
        recorder sql "SELECT channel, count(*) FROM meetings GROUP BY channel"
        recorder sql "SELECT start_ms, text FROM turns WHERE meeting_id = 3" --csv
    """
    if as_json and as_csv:
        raise UsageError("choose one of --json and --csv")
    if not statement.strip():
        raise UsageError("the SQL statement is empty")

    async def main() -> Any:
        async with await _open(database_url) as store:
            return await store.run_query(statement, max_rows=max_rows, timeout_s=timeout_s)

    result = run(main())
    columns = list(result.columns)
    if as_json:
        _echo_json([dict(zip(columns, row, strict=True)) for row in result.rows])
    elif as_csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(
            [_json_default(v) if v is not None and not _plain(v) else v for v in row]
            for row in result.rows
        )
        click.echo(buffer.getvalue(), nl=False)
    else:
        rows = [[_cell(value) for value in row] for row in result.rows]
        if columns:
            click.echo(format_table(columns, rows))
        click.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''})", err=True)
    if getattr(result, "truncated", False):
        click.echo(f"only the first {max_rows} rows are shown; raise --max-rows", err=True)


def _plain(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    text = clean_text(str(value if _plain(value) else _json_default(value)))
    # Keep the table readable; --json and --csv give whole values.
    return text if len(text) <= _MAX_CELL_CHARS else text[: _MAX_CELL_CHARS - 1] + "…"
