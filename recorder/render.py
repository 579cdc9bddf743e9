"""The one Jinja environment for exports, over the ``templates`` package that ships in the wheel.

Autoescape is on for ``.html`` templates only, undefined names fail loudly
(STYLE.md §3.6). Templates can loop over turns as they stream out of the
store (see :func:`stream_template`) without holding the meeting in memory.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterator
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
_GROUP = 128


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


class _Prefetched(Iterator[Any]):
    """A sync iterator over an async one, filled in batches by :func:`stream_template`.

    Jinja's sync templates pull items with ``next()``; they cannot await. The
    driver refills this buffer (awaiting the source) before every step of the
    template, so the template never finds it empty while the source has more.
    """

    def __init__(self, source: AsyncIterable[Any], batch: int) -> None:
        self._source = aiter(source)
        self._batch = batch
        self._buffer: deque[Any] = deque()
        self.is_exhausted = False

    @property
    def needs_refill(self) -> bool:
        # Two, not one: a template may peek one item ahead (loop.last, for-else).
        return not self.is_exhausted and len(self._buffer) < 2

    async def refill(self) -> None:
        for _ in range(self._batch):
            try:
                self._buffer.append(await anext(self._source))
            except StopAsyncIteration:
                self.is_exhausted = True
                return

    def __next__(self) -> Any:
        if self._buffer:
            return self._buffer.popleft()
        if self.is_exhausted:
            raise StopIteration
        # Only reachable if a template consumed several items without yielding output.
        raise RenderError("internal error: a template read ahead of the prefetch buffer")


async def stream_template(name: str, *, batch: int = 1000, **context: Any) -> AsyncIterator[str]:
    """Render a template piece by piece; context values may be async iterables.

    The environment is synchronous (async Jinja awaits every attribute access,
    measured about 60% slower); async iterables in the context are bridged by
    prefetching ``batch`` items at a time between template steps, so memory
    stays flat and the event loop is never blocked for long.

    Args:
        name: template file name under ``templates/``.
        batch: items to prefetch from each async iterable at a time.
        **context: the template's variables (view models).

    Yields:
        Consecutive pieces of the output.

    Raises:
        RenderError: the template is missing or refers to a field it was not given.
    """
    template = _template(name)
    feeds = []
    for key, value in context.items():
        if isinstance(value, AsyncIterable):
            feeds.append(feed := _Prefetched(value, batch))
            context[key] = feed
    pieces = template.generate(**context)
    # Hand pieces on in groups: one async step per ~100 pieces instead of each one.
    group: list[str] = []
    try:
        while True:
            for feed in feeds:
                if feed.needs_refill:
                    if group:
                        yield "".join(group)
                        group.clear()
                    await feed.refill()
            piece = next(pieces, None)
            if piece is None:
                break
            group.append(piece)
            if len(group) >= _GROUP:
                yield "".join(group)
                group.clear()
    except jinja2.UndefinedError as exc:
        raise RenderError(f"the template {name!r} needs a value it was not given: {exc}") from exc
    if group:
        yield "".join(group)


async def render_template(name: str, **context: Any) -> str:
    """Render a whole template to one string (small outputs only)."""
    return "".join([piece async for piece in stream_template(name, **context)])
