"""``recorder meetings`` and ``show``: read what was recorded.

Every command is a thin shell over one :class:`storage.store.TranscriptStore`
call. Untrusted text (transcripts, names) is cleaned of control characters
before it reaches the terminal, so a transcript cannot send escape sequences.
An empty result is not an error: a note on stderr, ``[]`` with ``--json``, exit 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from recorder.cli.common import CONTEXT_SETTINGS, build_config, db_option, run
from recorder.cli.output import echo_table, iso_time
from recorder.cli.reading import (
    COST_FIELDS,
    MEETING_FIELDS,
    TURN_FIELDS,
    channel_option,
    check_formats,
    emit,
    format_options,
    meeting_argument,
    no_meetings_error,
    nothing,
    open_store,
    parse_clock,
    parse_since,
    since_option,
)
from recorder.errors import NotFoundError, UsageError
from recorder.export.escape import clean_text
from recorder.timeline import format_clock

if TYPE_CHECKING:
    from storage.costs import MeetingCost
    from storage.records import MeetingSummary, Note, Participant, Turn

__all__ = ["meetings", "show"]

# Turns read per query by `show`: fewer round trips; memory stays bounded by one page.
_TURNS_PER_QUERY = 5000
# Terminal colours per speaker, in participant order (as the HTML palette).
_SPEAKER_COLOURS = ("blue", "yellow", "green", "magenta", "red", "cyan")


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


def _speaker_style(participants: Sequence[Participant]) -> Callable[[int, str], str]:
    order = {p.uid: i for i, p in enumerate(participants)}

    def style(uid: int, name: str) -> str:
        index = order.setdefault(uid, len(order))
        return click.style(name, fg=_SPEAKER_COLOURS[index % len(_SPEAKER_COLOURS)], bold=True)

    return style


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
@format_options
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

    check_formats(as_json, as_csv)
    since_at = parse_since(since) if since is not None else None
    price = _price_per_hour(database_url)

    async def main() -> tuple[list[MeetingSummary], dict[int, MeetingCost]]:
        async with await open_store(database_url) as store:
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
                nothing(str(await no_meetings_error(store, f"no meetings {filters}".rstrip())))
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
    emit(as_json, as_csv, (*MEETING_FIELDS, *COST_FIELDS, "open_gaps"), records, table)


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
@format_options
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

    check_formats(as_json, as_csv)
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
        async with await open_store(database_url) as store:
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
                nothing(f"no turns in meeting {meeting_id} match the filters")
            if as_text and header.meeting_notes is not None and not (speaker or from_ or to):
                from recorder.notes.text import notes_lines

                click.echo("")
                for line in notes_lines(header.meeting_notes, clean_text):
                    click.echo(line)
        return records

    records = run(main())
    if not as_text:
        emit(as_json, as_csv, TURN_FIELDS, records, lambda: None)


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
