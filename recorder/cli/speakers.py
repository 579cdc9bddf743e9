"""``recorder speakers``: list a meeting's participants, or name them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from recorder.cli.common import CONTEXT_SETTINGS, db_option, run
from recorder.cli.output import echo_table, iso_time
from recorder.cli.reading import (
    PARTICIPANT_FIELDS,
    channel_option,
    check_formats,
    emit,
    format_options,
    meeting_argument,
    nothing,
    open_store,
)
from recorder.errors import NotFoundError, UsageError
from recorder.export.escape import clean_text

if TYPE_CHECKING:
    from storage.records import Participant

__all__ = ["speakers"]


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
@format_options
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

    check_formats(as_json, as_csv)
    names = [_parse_assignment(item) for item in assignments]

    async def main() -> tuple[int, tuple[Participant, ...]]:
        async with await open_store(database_url) as store:
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
        nothing(f"nobody was in meeting {meeting_id}")

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

    emit(as_json, as_csv, PARTICIPANT_FIELDS, [_participant_record(p) for p in participants], table)


def _parse_assignment(item: str) -> tuple[int, str | None]:
    uid_text, sep, name = item.partition("=")
    if not sep or not uid_text.strip().isdigit():
        raise UsageError(f"--set wants UID=NAME, like 101=Alice; got {item!r}")
    cleaned = clean_text(name)
    return int(uid_text.strip()), cleaned or None
