"""How commands print: tables that fit the terminal, JSON and CSV for scripts.

Machine output follows one convention (README, "Machine output"): a listing is
a JSON array (``[]`` when empty, exit 0), times of day are ISO 8601 UTC strings
ending in ``Z``, and every length or position in a meeting is integer
milliseconds named ``*_ms``.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time
from typing import Any

import click

__all__ = [
    "MAX_CELL_CHARS",
    "echo_csv",
    "echo_json",
    "echo_table",
    "format_table",
    "iso_time",
    "json_default",
    "terminal_width",
    "truncate",
]

# Longest cell in a table (--json and --csv are never cut).
MAX_CELL_CHARS = 60
# A column is never squeezed below this many characters to fit the terminal.
_MIN_COLUMN = 6
_ELLIPSIS = "…"


def iso_time(value: datetime | None) -> str | None:
    """A time of day as ISO 8601 in UTC ending in ``Z`` (None stays None)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def json_default(value: Any) -> Any:
    """JSON for the values SQL and the records hold beyond JSON's own types."""
    if isinstance(value, datetime):
        return iso_time(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON (UTF-8 kept as is)."""
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=json_default))


def echo_csv(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print a header row and the rows as CSV (None as an empty field)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(headers)
    for row in rows:
        writer.writerow(
            [
                value
                if value is None or isinstance(value, str | int | float | bool)
                else json_default(value)
                for value in row
            ]
        )
    click.echo(buffer.getvalue(), nl=False)


def _display_width(text: str) -> int:
    # CJK and other wide characters take two terminal columns.
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def truncate(text: str, width: int) -> str:
    """Cut ``text`` to ``width`` terminal columns, ending in ``…`` when cut."""
    if _display_width(text) <= width:
        return text
    kept, used = [], 0
    for char in text:
        size = _display_width(char)
        if used + size > width - 1:
            break
        kept.append(char)
        used += size
    return "".join(kept) + _ELLIPSIS


def terminal_width() -> int | None:
    """Columns of the terminal stdout is on, or None when it is not a terminal."""
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size().columns


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    width: int | None = None,
    max_cell: int = MAX_CELL_CHARS,
) -> str:
    """Columns padded to their widest cell, two spaces apart; no trailing blanks.

    Cells longer than ``max_cell`` are cut with ``…``; with ``width``, the
    widest columns are narrowed further until each line fits in it.
    """
    cut = [[truncate(cell, max_cell) for cell in row] for row in rows]
    widths = [_display_width(h) for h in headers]
    for row in cut:
        widths = [max(w, _display_width(cell)) for w, cell in zip(widths, row, strict=True)]
    if width is not None:
        floor = [
            max(_MIN_COLUMN, min(_display_width(h), w))
            for h, w in zip(headers, widths, strict=True)
        ]
        while sum(widths) + 2 * (len(widths) - 1) > width:
            widest = max(range(len(widths)), key=lambda i: widths[i] - floor[i])
            if widths[widest] <= floor[widest]:
                break
            widths[widest] -= 1
        cut = [[truncate(cell, w) for cell, w in zip(row, widths, strict=True)] for row in cut]
    lines = [
        "  ".join(
            cell + " " * (w - _display_width(cell)) for cell, w in zip(line, widths, strict=True)
        ).rstrip()
        for line in [list(headers), *cut]
    ]
    return "\n".join(lines)


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print a table cut to the terminal's width (whole cells, up to a cap, in a pipe)."""
    click.echo(format_table(headers, rows, width=terminal_width()))
