"""The one Jinja environment for exports, over the ``templates`` package that ships in the wheel.

Autoescape is on for ``.html`` templates only, and undefined names fail loudly
so a missing field fails a test. Templates can loop over turns as they stream out of the
store (see :func:`stream_template`) without holding the meeting in memory.
"""

from __future__ import annotations

import functools
import itertools
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

import templates
from recorder.errors import RenderError
from recorder.export.escape import clean_text, escape_markdown, escape_markdown_block
from recorder.timeline import format_clock

__all__ = [
    "TEMPLATE_DIR",
    "environment",
    "format_datetime",
    "format_duration",
    "render_template",
    "stream_template",
    "template_source",
]

TEMPLATE_DIR = Path(templates.__file__).parent
# Pieces joined into one chunk at most (a piece is a few to a few hundred bytes).
_MAX_CHUNK_PIECES = 4096


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
    driver tops this buffer up (awaiting the source) between runs of template
    output, so the template never finds it empty while the source has more.
    """

    def __init__(self, source: AsyncIterable[Any], batch: int) -> None:
        self._source = aiter(source)
        self._batch = max(4, batch)
        self._buffer: deque[Any] = deque()
        self.is_exhausted = False

    def __len__(self) -> int:
        return len(self._buffer)

    @property
    def needs_refill(self) -> bool:
        """Half empty and the source has more."""
        return not self.is_exhausted and len(self._buffer) < self._batch // 2

    async def refill(self) -> None:
        """Top the buffer up to ``batch`` items (or the end of the source)."""
        while len(self._buffer) < self._batch:
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
        raise RenderError(
            "internal error: a template read streamed items without writing anything for "
            "them; every item of a streamed loop must produce output"
        )


async def stream_template(name: str, *, batch: int = 1000, **context: Any) -> AsyncIterator[str]:
    """Render a template in chunks; context values may be async iterables.

    The environment is synchronous (async Jinja awaits every attribute access
    and was measured about 60% slower here). Async iterables in the context
    are bridged: between runs of template output the driver awaits enough
    items to fill a buffer of ``batch``, then lets the template produce as
    many pieces as the buffer can feed. Memory stays flat, and the event loop
    is never blocked for long.

    The contract that makes this safe: a template writes at least one piece
    for every streamed item it reads (ours write a line per turn), so ``n``
    pieces consume at most ``n`` items, plus one that ``loop.last`` may peek.

    Args:
        name: template file name under ``templates/``.
        batch: items to prefetch from each async iterable.
        **context: the template's variables (view models).

    Yields:
        Consecutive chunks of the output.

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
    try:
        while True:
            budget = _MAX_CHUNK_PIECES
            for feed in feeds:
                if feed.needs_refill:
                    await feed.refill()
                if not feed.is_exhausted:
                    budget = min(budget, len(feed) - 1)
            chunk = list(itertools.islice(pieces, max(1, budget)))
            if not chunk:
                return
            yield "".join(chunk)
    except jinja2.UndefinedError as exc:
        raise RenderError(f"the template {name!r} needs a value it was not given: {exc}") from exc


async def render_template(name: str, **context: Any) -> str:
    """Render a whole template to one string (small outputs only)."""
    return "".join([piece async for piece in stream_template(name, **context)])
