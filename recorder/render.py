"""The one Jinja environment for exports, over the ``templates`` package that ships in the wheel.

Autoescape is on for ``.html`` templates only, undefined names fail loudly
(STYLE.md §3.6), and rendering is async so a template can loop over turns as
they stream out of the store without holding the meeting in memory.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

import templates
from recorder.errors import RenderError
from recorder.export.escape import clean_text, escape_markdown, escape_markdown_block

__all__ = [
    "TEMPLATE_DIR",
    "environment",
    "format_clock",
    "format_datetime",
    "format_duration",
    "render_template",
    "stream_template",
    "template_source",
]

TEMPLATE_DIR = Path(templates.__file__).parent


def format_clock(ms: int) -> str:
    """Meeting time as ``hh:mm:ss`` (hours keep growing past 99)."""
    seconds = max(0, ms) // 1000
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def format_duration(ms: int | None) -> str:
    """A human length such as ``2 h 05 min``, ``4 min 12 s`` or ``9 s`` (``-`` if unknown)."""
    if ms is None:
        return "-"
    seconds = max(0, round(ms / 1000))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {seconds:02d} s"
    return f"{seconds} s"


def format_datetime(value: datetime | None, style: str = "minutes") -> str:
    """A UTC timestamp for people: ``2026-11-23 09:00 UTC`` (``-`` if unknown).

    Args:
        value: an aware datetime (naive ones are taken as UTC).
        style: ``minutes``, ``seconds``, ``date`` or ``iso`` (ISO 8601 with ``Z``).
    """
    if value is None:
        return "-"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    if style == "iso":
        return value.isoformat().replace("+00:00", "Z")
    if style == "date":
        return value.strftime("%Y-%m-%d")
    if style == "seconds":
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return value.strftime("%Y-%m-%d %H:%M UTC")


@functools.cache
def environment() -> jinja2.Environment:
    """Build (once) the Jinja environment over the shipped templates."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html",), disabled_extensions=("md", "txt", "js", "css")
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        enable_async=True,
        auto_reload=False,
    )
    env.filters.update(
        clock=format_clock,
        duration=format_duration,
        when=format_datetime,
        md=escape_markdown,
        md_block=escape_markdown_block,
        clean=clean_text,
    )
    return env


def template_source(name: str) -> str:
    """The raw text of a shipped template file (used for inline scripts and styles)."""
    try:
        return (TEMPLATE_DIR / name).read_text(encoding="utf-8")
    except OSError as exc:
        raise RenderError(f"the template {name!r} is missing from the installation") from exc


def _template(name: str) -> jinja2.Template:
    try:
        return environment().get_template(name)
    except jinja2.TemplateNotFound as exc:
        raise RenderError(f"the template {name!r} is missing from the installation") from exc


async def stream_template(name: str, **context: Any) -> AsyncIterator[str]:
    """Render a template piece by piece; context values may be async iterators.

    Args:
        name: template file name under ``templates/``.
        **context: the template's variables (view models).

    Yields:
        Consecutive pieces of the output.

    Raises:
        RenderError: the template is missing or refers to a field it was not given.
    """
    template = _template(name)
    try:
        async for piece in template.generate_async(**context):
            yield piece
    except jinja2.UndefinedError as exc:
        raise RenderError(f"the template {name!r} needs a value it was not given: {exc}") from exc


async def render_template(name: str, **context: Any) -> str:
    """Render a whole template to one string (small outputs only)."""
    return "".join([piece async for piece in stream_template(name, **context)])
