"""``recorder meetings``, ``show``, ``search`` and ``speakers``: read what was recorded.

Every command is a thin shell over one :class:`storage.store.TranscriptStore`
call. Untrusted text (transcripts, names) is cleaned of control characters
before it reaches the terminal, so a transcript cannot send escape sequences.
An empty result is not an error: a note on stderr, ``[]`` with ``--json``, exit 0.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

import click

from recorder.cli.common import CONTEXT_SETTINGS, build_config, db_option, run, use_colour
from recorder.cli.output import echo_csv, echo_json, echo_table, iso_time
from recorder.errors import NotFoundError, UsageError
from recorder.export.escape import clean_text
from recorder.timeline import format_clock

if TYPE_CHECKING:
    from storage.costs import MeetingCost
    from storage.records import MeetingSummary, Note, Participant, SearchHit, Turn
    from storage.store import TranscriptStore

__all__ = [
    "COST_FIELDS",
    "HIT_FIELDS",
    "MEETING_FIELDS",
    "PARTICIPANT_FIELDS",
    "TURN_FIELDS",
    "meetings",
    "parse_clock",
    "parse_since",
    "search",
    "show",
    "speakers",
]

# Turns read per query by `show`: fewer round trips; memory stays bounded by one page.
_TURNS_PER_QUERY = 5000
# Terminal colours per speaker, in participant order (as the HTML palette).
_SPEAKER_COLOURS = ("blue", "yellow", "green", "magenta", "red", "cyan")
# Matches counted at most, for "N more; use --limit" (the count stays cheap).
_COUNT_CAP = 10_000
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
        return NotFoundError(_NO_MEETINGS)
    return NotFoundError(what)


_NO_MEETINGS = "no meetings recorded yet; record one with 'recorder join' or try 'recorder demo'"


def _nothing(message: str) -> None:
    """An empty result: say so on stderr (stdout stays empty, or ``[]``), exit 0."""
    click.echo(message, err=True)


def _speaker_style(participants: Sequence[Participant]) -> Callable[[int, str], str]:
    order = {p.uid: i for i, p in enumerate(participants)}

    def style(uid: int, name: str) -> str:
        index = order.setdefault(uid, len(order))
        return click.style(name, fg=_SPEAKER_COLOURS[index % len(_SPEAKER_COLOURS)], bold=True)

    return style


def _format_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--json`` and ``--csv``, for listings."""
    function = click.option(
        "--csv", "as_csv", is_flag=True, help="Print CSV with a header row, for spreadsheets."
    )(function)
    return click.option(
        "--json", "as_json", is_flag=True, help="Print a JSON array, for scripts ([] if none)."
    )(function)


def _check_formats(as_json: bool, as_csv: bool) -> None:
    if as_json and as_csv:
        raise UsageError("choose one of --json and --csv")


def _emit(
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


def _meeting_record(m: MeetingSummary) -> dict[str, Any]:
    """A meeting as in the JSON export's ``meeting`` object."""
    duration_s = m.duration_s
    return {
        "id": m.id,
        "channel": m.channel,
        "bot_uid": m.bot_uid,
        "status": m.status,
        "started_at": iso_time(m.started_at),
        "ended_at": iso_time(m.ended_at),
        "duration_ms": None if duration_s is None else round(duration_s * 1000),
        "participant_count": m.participant_count,
        "turn_count": m.turn_count,
    }


# -- meetings -------------------------------------------------------------------------


@click.command(context_settings=CONTEXT_SETTINGS)
@channel_option
@since_option
@_format_options
@db_option
def meetings(
    channel: str | None, since: str | None, as_json: bool, as_csv: bool, database_url: str | None
) -> None:
    """List recorded meetings, newest first.

    \b
    Examples:
        recorder meetings
        recorder meetings --channel standup --since 2026-11-01 --json
        recorder meetings --csv > meetings.csv
    """
    from recorder.export.render import format_datetime, format_duration

    _check_formats(as_json, as_csv)
    since_at = parse_since(since) if since is not None else None
    price = _price_per_hour(database_url)

    async def main() -> tuple[list[MeetingSummary], dict[int, MeetingCost]]:
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
                _nothing(str(await _no_meetings_error(store, f"no meetings {filters}".rstrip())))
            return found, costs

    found, costs = run(main())

    def table() -> None:
        if not found:
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
        echo_table(headers, rows)

    records = [
        {**_meeting_record(m), **_cost_json(costs[m.id], price), "open_gaps": m.open_gaps}
        for m in found
    ]
    _emit(as_json, as_csv, (*MEETING_FIELDS, *COST_FIELDS, "open_gaps"), records, table)


# -- show -----------------------------------------------------------------------------


def _turn_record(turn: Turn) -> dict[str, Any]:
    """A turn as in the JSON export's ``turn`` object, without its words."""
    return {
        "id": turn.id,
        "meeting_id": turn.meeting_id,
        "uid": turn.uid,
        "speaker": turn.speaker,
        "display_name": turn.display_name,
        "start_ms": turn.start_ms,
        "end_ms": turn.end_ms,
        "text": turn.text,
    }


def _note_ms(note: Note, started_at: datetime) -> int:
    return max(0, round((note.created_at - started_at).total_seconds() * 1000))


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
@_format_options
@db_option
def show(
    meeting: str,
    channel: str | None,
    speaker: str | None,
    from_: str | None,
    to: str | None,
    as_json: bool,
    as_csv: bool,
    revision: int | None,
    database_url: str | None,
) -> None:
    """Print a meeting's transcript: one [hh:mm:ss] Name: text line per turn.

    MEETING is a meeting id (see 'recorder meetings') or 'latest'. Notes such
    as spoken recaps appear where they were made; turns repaired from the
    stored audio are marked (repaired); stretches nothing could transcribe are
    listed as gaps at the end. --json and --csv list the turns.

    \b
    Examples:
        recorder show latest
        recorder show 1 --speaker Alice --from 0:10 --to 0:40
        recorder show latest --json
        recorder show 1 --revision 1
    """
    from recorder.export.render import format_datetime, format_duration

    _check_formats(as_json, as_csv)
    start_ms = parse_clock(from_, "--from") if from_ is not None else 0
    end_ms = parse_clock(to, "--to") if to is not None else None
    if end_ms is not None and end_ms < start_ms:
        raise UsageError(f"--to ({to}) is before --from ({from_})")
    as_text = not (as_json or as_csv)
    price = _price_per_hour(database_url)

    def wanted(position_ms: int) -> bool:
        return position_ms >= start_ms and (end_ms is None or position_ms <= end_ms)

    async def main() -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
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
            if as_text:
                billed, speech, ratio, usd = _cost_cells(cost, price)
                click.echo(
                    f"{clean_text(summary.channel)} · meeting {summary.id} · "
                    f"{format_datetime(summary.started_at)} · {duration} · {summary.status} · "
                    f"{billed} billed for {speech} of speech ({ratio}), about {usd}"
                    + (
                        f" · revision {header.revision} of {header.revisions[-1]}"
                        if len(header.revisions) > 1
                        else ""
                    )
                )
            notes = sorted(
                (
                    (_note_ms(note, summary.started_at), note)
                    for note in header.notes
                    if uid is None and wanted(_note_ms(note, summary.started_at))
                ),
                key=lambda pair: pair[0],
            )

            def print_notes(before_ms: int | None) -> None:
                while notes and (before_ms is None or notes[0][0] <= before_ms):
                    at_ms, note = notes.pop(0)
                    lines = clean_text(note.text, keep_newlines=True).splitlines() or [""]
                    label = click.style(f"({clean_text(note.kind)})", dim=True)
                    click.echo(f"[{format_clock(at_ms)}] {label} {lines[0]}")
                    for line in lines[1:]:
                        click.echo(f"    {line}".rstrip())

            shown = 0
            async for turn in turns:
                if turn.start_ms < start_ms or (uid is not None and turn.uid != uid):
                    continue
                if end_ms is not None and turn.start_ms > end_ms:
                    break
                shown += 1
                if not as_text:
                    records.append(_turn_record(turn))
                    continue
                print_notes(turn.start_ms)
                name = clean_text(turn.display_name or "") or str(turn.uid)
                text = clean_text(turn.text)
                mark = " (repaired)" if turn.source == "repaired" else ""
                click.echo(
                    f"[{format_clock(turn.start_ms)}] {style(turn.uid, name)}{mark}:"
                    + (f" {text}" if text else "")
                )
            names = {p.uid: p.speaker for p in participants}
            unrepaired = [g for g in header.gaps if g.state != "repaired"]
            if as_text:
                print_notes(None)
                for gap in unrepaired:
                    click.echo(
                        f"gap: {clean_text(names.get(gap.uid, str(gap.uid)))} "
                        f"{format_clock(gap.from_ms)}-{format_clock(gap.to_ms)}: "
                        f"{clean_text(gap.cause)} ({gap.state})"
                    )
            if shown == 0:
                _nothing(f"no turns in meeting {meeting_id} match the filters")
            if as_text and header.meeting_notes is not None and not (speaker or from_ or to):
                from recorder.notes.text import notes_lines

                click.echo("")
                for line in notes_lines(header.meeting_notes, clean_text):
                    click.echo(line)
        return records

    records = run(main())
    if not as_text:
        _emit(as_json, as_csv, TURN_FIELDS, records, lambda: None)


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


def _hit_record(hit: SearchHit) -> dict[str, Any]:
    """A search hit for --json and --csv."""
    return {
        "meeting_id": hit.meeting_id,
        "channel": hit.channel,
        "meeting_started_at": iso_time(hit.meeting_started_at),
        "turn_id": hit.turn_id,
        "uid": hit.uid,
        "speaker": hit.speaker,
        "start_ms": hit.start_ms,
        "end_ms": hit.end_ms,
        "text": hit.text,
        "snippet": hit.snippet,
        "rank": hit.rank,
    }


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("query")
@channel_option
@click.option("--speaker", metavar="NAME|UID", help="Only turns of this participant.")
@since_option
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="Most hits."
)
@_format_options
@db_option
def search(
    query: str,
    channel: str | None,
    speaker: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
    as_csv: bool,
    database_url: str | None,
) -> None:
    """Search every transcript; best matches first, matches marked «like this».

    QUERY is words, "quoted phrases" or a prefix*; every word must match,
    whatever its case or accents (delayed finds Délayed). No match is not an
    error: a note on stderr ([] with --json) and exit 0.

    \b
    Examples:
        recorder search delayed
        recorder search '"billing export"' --channel standup --json
        recorder search 'deplo*' --speaker Dmitri --limit 5
    """
    from recorder.export.render import format_datetime

    _check_formats(as_json, as_csv)
    since_at = parse_since(since) if since is not None else None
    if not query.strip():
        raise UsageError("the search query is empty; give a word to look for")

    async def main() -> tuple[list[SearchHit], int, bool]:
        async with await _open(database_url) as store:
            hits = await store.search(
                query, channel=channel, speaker=speaker, since=since_at, limit=limit
            )
            if not hits:
                _nothing(str(await _no_meetings_error(store, f"nothing matches {query!r}")))
            elif len(hits) == limit:
                total = await store.count_matches(
                    query, channel=channel, speaker=speaker, since=since_at, cap=_COUNT_CAP
                )
                return hits, max(0, total - limit), total >= _COUNT_CAP
            return hits, 0, False

    hits, more, at_least = run(main())

    def table() -> None:
        colour = use_colour()
        for hit in hits:
            where = click.style(
                f"{hit.meeting_id} {clean_text(hit.channel)} "
                f"{format_datetime(hit.meeting_started_at, 'date')} "
                f"[{format_clock(hit.start_ms)}]",
                dim=True,
            )
            name = click.style(clean_text(hit.display_name or "") or str(hit.uid), bold=True)
            click.echo(f"{where} {name}: {_highlight(clean_text(hit.snippet), colour)}")

    _emit(as_json, as_csv, HIT_FIELDS, [_hit_record(h) for h in hits], table)
    if more:
        count = f"{more}+" if at_least else str(more)
        click.echo(f"{count} more; use --limit {min(1000, limit + more)} to see them", err=True)


def _highlight(snippet: str, tty: bool) -> str:
    """Bold the «marked» matches when colours are on; keep the plain markers otherwise."""
    if not tty:
        return snippet
    return re.sub("«([^»]*)»", lambda m: click.style(m.group(1), fg="yellow", bold=True), snippet)


# -- speakers -------------------------------------------------------------------------


def _participant_record(p: Participant) -> dict[str, Any]:
    """A participant as in the JSON export's ``participant`` object."""
    return {
        "uid": p.uid,
        "display_name": p.display_name,
        "speaker": p.speaker,
        "first_seen": iso_time(p.first_seen),
        "last_seen": iso_time(p.last_seen),
        "talk_ms": p.talk_ms,
        "turn_count": p.turn_count,
    }


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
@_format_options
@db_option
def speakers(
    meeting: str,
    channel: str | None,
    assignments: tuple[str, ...],
    as_json: bool,
    as_csv: bool,
    database_url: str | None,
) -> None:
    """List a meeting's participants, or name them so exports show names, not uids.

    \b
    Examples:
        recorder speakers latest
        recorder speakers latest --json
        recorder speakers 1 --set 101=Alice --set 202="Bob Li"
    """
    from recorder.export.render import format_datetime, format_duration

    _check_formats(as_json, as_csv)
    names = [_parse_assignment(item) for item in assignments]

    async def main() -> tuple[int, tuple[Participant, ...]]:
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
        return meeting_id, header.participants

    meeting_id, participants = run(main())
    if not participants:
        _nothing(f"nobody was in meeting {meeting_id}")

    def table() -> None:
        if not participants:
            return
        rows = [
            [
                str(p.uid),
                clean_text(p.display_name or "") or "-",
                format_duration(p.talk_ms),
                str(p.turn_count),
                format_datetime(p.first_seen, "seconds"),
            ]
            for p in participants
        ]
        echo_table(["UID", "NAME", "TALK TIME", "TURNS", "FIRST SEEN"], rows)

    _emit(
        as_json, as_csv, PARTICIPANT_FIELDS, [_participant_record(p) for p in participants], table
    )


def _parse_assignment(item: str) -> tuple[int, str | None]:
    uid_text, sep, name = item.partition("=")
    if not sep or not uid_text.strip().isdigit():
        raise UsageError(f"--set wants UID=NAME, like 101=Alice; got {item!r}")
    cleaned = clean_text(name)
    return int(uid_text.strip()), cleaned or None
