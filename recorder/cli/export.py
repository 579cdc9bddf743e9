"""``recorder export``: write one meeting as HTML, Markdown, JSON, text, SRT or WebVTT.

The turns stream from the store into the renderer and out to the file, so a
100,000-turn meeting exports in constant memory. A file is written under a
temporary name and renamed when complete, so a failed export leaves nothing
half-written behind.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click

from recorder.cli.common import CONTEXT_SETTINGS, build_config, db_option, run
from recorder.errors import RenderError, UsageError
from recorder.export.exporter import FORMATS, format_for_path, parse_format
from recorder.export.exporter import export_meeting as render_export

if TYPE_CHECKING:
    from storage.records import Meeting, Turn
    from storage.store import TranscriptStore

__all__ = [
    "choose_format",
    "export",
    "export_meeting",
    "load_for_export",
    "meeting_header",
]

_FORMATS_WITH_WORDS = frozenset({"json", "srt", "vtt"})
# Turns read per query: bigger pages cost fewer round trips; memory is bounded by one page.
_BATCH = 5000


def choose_format(fmt: str | None, output: Path | None) -> str:
    """The explicit format, else the output file's extension, else Markdown.

    Raises:
        UsageError: the format is unknown, or the file name does not say and none was given.
    """
    if fmt is not None:
        return parse_format(fmt)
    if output is None:
        return "md"
    found = format_for_path(output)
    if found is None:
        raise UsageError(
            f"cannot tell the format from {output.name!r}; add --format "
            f"({', '.join(FORMATS)}) or use one of those extensions"
        )
    return found


async def meeting_header(store: TranscriptStore, meeting_id: int) -> Meeting:
    """The meeting's summary, participants, notes and sessions, without its turns."""
    return await store.get_meeting(meeting_id, with_turns=False)


async def load_for_export(
    store: TranscriptStore, meeting_id: int, *, with_words: bool = True
) -> tuple[Meeting, AsyncIterator[Turn]]:
    """The meeting's header and a stream of its turns in time order (flat memory).

    Word timings are most of a turn row (JSON to parse) and only JSON, SRT and
    WebVTT use them, so the others read turns without them.
    """
    header = await meeting_header(store, meeting_id)
    return header, store.iter_turns(meeting_id, batch=_BATCH, with_words=with_words)


async def export_meeting(
    database_url: str,
    meeting: str | int,
    output: Path | None,
    *,
    fmt: str | None = None,
    channel: str | None = None,
) -> str:
    """Export a meeting from the database to a file, or to stdout when ``output`` is None.

    Args:
        database_url: the transcript database.
        meeting: a meeting id or ``latest``.
        output: the file to write; ``None`` or ``-`` for stdout.
        fmt: the format; by default from the file's extension, else Markdown.
        channel: with ``latest``, the latest meeting of this channel.

    Returns:
        The format written.

    Raises:
        UsageError: bad format.
        NotFoundError: no such meeting (or none recorded yet).
        RenderError: the file cannot be written.
    """
    from storage.store import TranscriptStore

    if output is not None and str(output) == "-":
        output = None
    chosen = choose_format(fmt, output)
    async with await TranscriptStore.open(database_url) as store:
        meeting_id = await store.resolve_meeting(meeting, channel=channel)
        header, turns = await load_for_export(
            store, meeting_id, with_words=chosen in _FORMATS_WITH_WORDS
        )
        if output is None:
            try:
                await render_export(header, turns, chosen, sys.stdout.write)
                sys.stdout.flush()
            except BrokenPipeError:
                _silence_stdout()  # the reader left (| head): stop quietly, like cat
            return chosen
        # Plain blocking file writes: this event loop serves only this command.
        handle = _open_part_file(output)
        try:
            with handle:
                await render_export(header, turns, chosen, handle.write)
            _publish(Path(handle.name), output)
        except OSError as exc:
            raise RenderError(f"cannot write {str(output)!r}: {exc.strerror}") from exc
        finally:
            _discard(Path(handle.name))
    return chosen


def _open_part_file(output: Path) -> IO[str]:
    # Mode "x" creates the file with the user's umask, like any file they write
    # (tempfile would make it private, 0600) and never reuses an existing name.
    part = output.resolve().parent / f".{output.name}.{secrets.token_hex(4)}.part"
    try:
        return part.open("x", encoding="utf-8", newline="")
    except OSError as exc:
        raise RenderError(f"cannot write to {str(part.parent)!r}: {exc.strerror}") from exc


def _silence_stdout() -> None:
    # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _publish(part: Path, output: Path) -> None:
    os.replace(part, output)


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("meeting", metavar="MEETING")
@click.option(
    "-f",
    "--format",
    "fmt",
    metavar="FORMAT",
    help=f"One of {', '.join(FORMATS)}. Default: from the -o extension, else md.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Write to FILE instead of stdout.",
)
@click.option("--channel", metavar="NAME", help="With 'latest': the latest meeting of NAME.")
@db_option
def export(
    meeting: str,
    fmt: str | None,
    output: Path | None,
    channel: str | None,
    database_url: str | None,
) -> None:
    """Export a meeting (html, md, json, txt, srt, vtt).

    MEETING is a meeting id (see 'recorder meetings') or 'latest'. HTML is one
    self-contained page; JSON keeps everything (schema_version 1); SRT and
    WebVTT are subtitles cut at word timings.

    \b
    Examples:
        recorder export latest -o standup.html
        recorder export 12 --format json > meeting-12.json
        recorder export latest --channel standup -f vtt -o standup.vtt
    """
    config = build_config(database_url=database_url)
    chosen = choose_format(fmt, output)  # fail on a bad format before touching the database
    run(export_meeting(config.database_url, meeting, output, fmt=chosen, channel=channel))
    if output is not None and str(output) != "-":
        click.echo(f"wrote {output} ({chosen})", err=True)
