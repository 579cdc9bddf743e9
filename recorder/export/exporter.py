"""Export one meeting in any format, streaming the turns from wherever they come.

:func:`export_meeting` takes the meeting's header records and an async
iterable of its turns (``TranscriptStore.iter_turns`` in the CLI, a plain
generator in tests) and writes pieces of output as they are rendered, so
memory does not grow with the length of the meeting.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path
from typing import Any

from markupsafe import Markup

from recorder.errors import UsageError
from recorder.export.json_format import write_json
from recorder.export.render import stream_template, template_source
from recorder.export.subtitles import write_srt, write_vtt
from recorder.export.views import Speakers, build_meeting_view, turn_views
from storage.records import Meeting, Turn

__all__ = ["FORMATS", "export_meeting", "format_for_path", "iter_export", "parse_format"]

FORMATS = ("html", "md", "json", "txt", "srt", "vtt")
_ALIASES = {"markdown": "md", "htm": "html", "text": "txt", "webvtt": "vtt"}


def parse_format(name: str) -> str:
    """Normalise a format name (``markdown`` -> ``md``) or raise UsageError."""
    key = name.strip().lower().lstrip(".")
    key = _ALIASES.get(key, key)
    if key not in FORMATS:
        raise UsageError(f"unknown export format {name!r}; use one of {', '.join(FORMATS)}")
    return key


def format_for_path(path: str | Path) -> str | None:
    """The format a file name asks for by its extension, or None if it does not say."""
    suffix = Path(path).suffix.lower().lstrip(".")
    key = _ALIASES.get(suffix, suffix)
    return key if key in FORMATS else None


def _script() -> tuple[Markup, str]:
    # The page allows only this exact script (Content-Security-Policy hash), so
    # even a hypothetical escaping bug could not run script from a transcript.
    source = template_source("_page.js")
    digest = base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii")
    return Markup(source), f"sha256-{digest}"


def iter_export(
    meeting: Meeting,
    turns: AsyncIterable[Turn],
    fmt: str,
    *,
    price_per_hour: float | None = None,
) -> AsyncIterator[str]:
    """The export as a stream of text pieces.

    Args:
        meeting: header records: summary, participants, notes, stream sessions
            (``meeting.turns`` is ignored).
        turns: the meeting's turns in time order.
        fmt: one of :data:`FORMATS`.
        price_per_hour: prices the streaming in JSON (default: the list price).

    Returns:
        An async iterator of output pieces; joined, they are the whole file.

    Raises:
        UsageError: unknown format.
    """
    fmt = parse_format(fmt)
    if fmt == "json":
        return write_json(meeting, turns, price_per_hour=price_per_hour)
    speakers = Speakers(meeting.participants)
    view = build_meeting_view(meeting, speakers)
    stream = turn_views(turns, speakers)
    if fmt == "srt":
        return write_srt(stream)
    if fmt == "vtt":
        return write_vtt(stream)
    context: dict[str, Any] = {"meeting": view, "turns": stream}
    if fmt == "html":
        script, script_hash = _script()
        context.update(script=script, script_hash=script_hash, style=Markup(_style()))
    return stream_template(f"meeting.{fmt}", **context)


def _style() -> str:
    return template_source("_page.css")


async def export_meeting(
    meeting: Meeting,
    turns: AsyncIterable[Turn],
    fmt: str,
    write: Callable[[str], object],
    *,
    price_per_hour: float | None = None,
) -> None:
    """Render the export and hand each piece to ``write`` (e.g. ``file.write``)."""
    async for piece in iter_export(meeting, turns, fmt, price_per_hour=price_per_hour):
        write(piece)
