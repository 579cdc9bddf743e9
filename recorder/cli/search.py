"""``recorder search``: find words in every transcript."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import click

from recorder.cli.common import CONTEXT_SETTINGS, db_option, run, use_colour
from recorder.cli.output import iso_time
from recorder.cli.reading import (
    COUNT_CAP,
    HIT_FIELDS,
    channel_option,
    check_formats,
    emit,
    format_options,
    no_meetings_error,
    nothing,
    open_store,
    parse_since,
    since_option,
)
from recorder.errors import UsageError
from recorder.export.escape import clean_text
from recorder.timeline import format_clock

if TYPE_CHECKING:
    from storage.records import SearchHit

__all__ = ["search"]


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
@format_options
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

    check_formats(as_json, as_csv)
    since_at = parse_since(since) if since is not None else None
    if not query.strip():
        raise UsageError("the search query is empty; give a word to look for")

    async def main() -> tuple[list[SearchHit], int, bool]:
        async with await open_store(database_url) as store:
            hits = await store.search(
                query, channel=channel, speaker=speaker, since=since_at, limit=limit
            )
            if not hits:
                nothing(str(await no_meetings_error(store, f"nothing matches {query!r}")))
            elif len(hits) == limit:
                total = await store.count_matches(
                    query, channel=channel, speaker=speaker, since=since_at, cap=COUNT_CAP
                )
                return hits, max(0, total - limit), total >= COUNT_CAP
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

    emit(as_json, as_csv, HIT_FIELDS, [_hit_record(h) for h in hits], table)
    if more:
        count = f"{more}+" if at_least else str(more)
        click.echo(f"{count} more; use --limit {min(1000, limit + more)} to see them", err=True)


def _highlight(snippet: str, tty: bool) -> str:
    """Bold the «marked» matches when colours are on; keep the plain markers otherwise."""
    if not tty:
        return snippet
    return re.sub("«([^»]*)»", lambda m: click.style(m.group(1), fg="yellow", bold=True), snippet)
