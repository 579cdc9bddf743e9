"""Export a stored meeting to a file (written atomically) or to stdout.

The turns stream from the store into the renderer and out to the file, so a
100,000-turn meeting exports in constant memory. A regular file is written
under a temporary name and renamed when complete, so a failed export leaves
nothing half-written behind. Anything else (``/dev/null``, a FIFO, a terminal)
is written directly and never renamed over: renaming would replace the device
node or pipe with a regular file. A write that fails (``/dev/full``: no space
left) is a :class:`~recorder.errors.RenderError`, never a success.
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

from recorder.errors import RenderError, UsageError
from recorder.export.exporter import FORMATS, format_for_path, parse_format
from recorder.export.exporter import export_meeting as render_export
from storage.records import Meeting, Turn
from storage.store import TranscriptStore

__all__ = ["choose_format", "export_meeting", "load_for_export", "meeting_header"]

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


async def meeting_header(
    store: TranscriptStore, meeting_id: int, *, revision: int | None = None
) -> Meeting:
    """The meeting's summary, participants, notes, sessions and gaps, without its turns."""
    if revision is None:  # the latest
        return await store.get_meeting(meeting_id, with_turns=False)
    return await store.get_meeting(meeting_id, with_turns=False, revision=revision)


async def load_for_export(
    store: TranscriptStore,
    meeting_id: int,
    *,
    with_words: bool = True,
    revision: int | None = None,
) -> tuple[Meeting, AsyncIterator[Turn]]:
    """The meeting's header and a stream of its turns in time order (flat memory).

    Word timings are most of a turn row (JSON to parse) and only JSON, SRT and
    WebVTT use them, so the others read turns without them.
    """
    header = await meeting_header(store, meeting_id, revision=revision)
    if revision is None:  # the latest
        return header, store.iter_turns(meeting_id, batch=_BATCH, with_words=with_words)
    turns = store.iter_turns(meeting_id, batch=_BATCH, with_words=with_words, revision=revision)
    return header, turns


async def export_meeting(
    database_url: str,
    meeting: str | int,
    output: Path | None,
    *,
    fmt: str | None = None,
    channel: str | None = None,
    revision: int | None = None,
    price_per_hour: float | None = None,
) -> str:
    """Export a meeting from the database to a file, or to stdout when ``output`` is None.

    Args:
        database_url: the transcript database.
        meeting: a meeting id or ``latest``.
        output: the file to write; ``None`` or ``-`` for stdout.
        fmt: the format; by default from the file's extension, else Markdown.
        channel: with ``latest``, the latest meeting of this channel.
        revision: the transcript revision (None: the latest).
        price_per_hour: prices the streaming in JSON (default: the list price).

    Returns:
        The format written.

    Raises:
        UsageError: bad format.
        NotFoundError: no such meeting (or none recorded yet).
        RenderError: the file cannot be written.
    """
    if output is not None and str(output) == "-":
        output = None
    chosen = choose_format(fmt, output)
    async with await TranscriptStore.open(database_url) as store:
        meeting_id = await store.resolve_meeting(meeting, channel=channel)
        header, turns = await load_for_export(
            store, meeting_id, with_words=chosen in _FORMATS_WITH_WORDS, revision=revision
        )
        if output is None:
            try:
                await render_export(
                    header, turns, chosen, sys.stdout.write, price_per_hour=price_per_hour
                )
                sys.stdout.flush()
            except BrokenPipeError:
                _silence_stdout()  # the reader left (| head): stop quietly, like cat
            except OSError as exc:
                _silence_stdout()  # the interpreter's final flush would fail again
                raise RenderError(f"cannot write to standard output: {exc.strerror}") from exc
            return chosen
        # Plain blocking file writes of small rendered pieces: the CLI's loop serves
        # only this export.
        handle = _open_output(output)
        try:
            with handle:
                await render_export(
                    header, turns, chosen, handle.write, price_per_hour=price_per_hour
                )
            _publish(Path(handle.name), output)
        except OSError as exc:
            raise RenderError(f"cannot write {str(output)!r}: {exc.strerror}") from exc
        finally:
            _discard(Path(handle.name), output)
    return chosen


def _open_output(output: Path) -> IO[str]:
    """A temporary file beside a regular (or new) file; anything else opened as it is.

    A device, FIFO or socket is written directly: renaming over it would replace
    it with a regular file (``/dev/null`` too, as root). So is a regular file
    named through a descriptor (``-o /dev/stdout >> log.txt``), appended to.

    Raises:
        RenderError: ``output`` is a directory or cannot be opened.
    """
    try:
        mode = output.stat().st_mode  # follows symlinks
    except FileNotFoundError:
        return _open_part_file(output.resolve())  # a new file (or a dangling link's target)
    except OSError as exc:
        raise RenderError(f"cannot write {str(output)!r}: {exc.strerror}") from exc
    if stat.S_ISDIR(mode):
        raise RenderError(f"cannot write {str(output)!r}: it is a directory; name a file")
    if stat.S_ISREG(mode) and not _names_a_descriptor(output):
        return _open_part_file(output.resolve())  # through symlinks: the file itself
    try:
        # "a": nothing to truncate on a device or pipe, and never created here.
        return output.open("a", encoding="utf-8", newline="")
    except OSError as exc:
        raise RenderError(f"cannot write {str(output)!r}: {exc.strerror}") from exc


def _names_a_descriptor(output: Path) -> bool:
    """``/dev/stdout``, ``/dev/fd/N``, ``/proc/self/fd/N``: an open file of the shell's.

    It may be a regular file (``>> log.txt``): renaming a new file over it would
    drop what the shell's file held and leave the shell writing to a deleted one.
    """
    parts = Path(os.path.abspath(output)).parts[1:]
    return parts[:2] in (("dev", "stdout"), ("dev", "stderr"), ("dev", "fd")) or (
        len(parts) > 3 and parts[0] == "proc" and parts[2] == "fd"
    )


def _open_part_file(output: Path) -> IO[str]:
    # Mode "x" creates the file with the user's umask, like any file they write
    # (tempfile would make it private, 0600) and never reuses an existing name.
    part = output.parent / f".{output.name}.{secrets.token_hex(4)}.part"
    try:
        return part.open("x", encoding="utf-8", newline="")
    except OSError as exc:
        raise RenderError(f"cannot write to {str(part.parent)!r}: {exc.strerror}") from exc


def _silence_stdout() -> None:
    # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _publish(written: Path, output: Path) -> None:
    if written != output:  # a temporary file: it becomes the file (through symlinks)
        os.replace(written, output.resolve())


def _discard(written: Path, output: Path) -> None:
    if written != output:  # never the device or pipe written directly
        written.unlink(missing_ok=True)
