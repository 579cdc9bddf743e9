"""The spoken-recap options of ``recorder join`` and ``recorder demo``, and what they build.

:func:`recap_options` adds ``--recap`` and its companions to a command and
hands the command one ``recap`` argument (:class:`~recorder.recap.settings.RecapSettings`,
or None without ``--recap``) plus ``agent_url`` for the Config. Imported
when the CLI loads, so it imports only click and light modules.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import click

from recorder.recap.settings import DEFAULT_PHRASE, RecapSettings

__all__ = ["MIN_RECAP_EVERY_S", "Duration", "parse_duration", "recap_options"]

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|h|m|s)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:ms|h|m|s)\s*)+")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Parse ``90s``, ``10m``, ``1h``, ``1h30m`` or a bare number of seconds.

    Args:
        text: the duration as the user wrote it.

    Returns:
        Seconds.

    Raises:
        ValueError: not a positive duration (the message says what is expected).
    """
    compact = text.strip().lower()
    total = 0.0
    if _NUMBER.fullmatch(compact):
        total = float(compact)
    elif _DURATION.fullmatch(compact):
        total = sum(float(n) * _UNIT_S[unit] for n, unit in _PART.findall(compact))
    if total > 0:
        return total
    raise ValueError(f"{text!r} is not a duration; use e.g. 90s, 10m, 1h or 1h30m")


#: A recap takes a while to say; a shorter period would talk over the meeting.
MIN_RECAP_EVERY_S = 10.0


class Duration(click.ParamType[float]):
    """A duration like ``90s``, ``10m``, ``1h`` or ``1h30m``, in seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Parse the value or fail with a usage error."""
        if isinstance(value, float):
            return value
        try:
            seconds = parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if seconds < MIN_RECAP_EVERY_S:
            self.fail(f"{value!r} is too short; use at least {MIN_RECAP_EVERY_S:g}s", param, ctx)
        return seconds


_OPTIONS = [
    click.option(
        "--recap",
        "recap_enabled",
        is_flag=True,
        help="Speak recaps into the channel when asked (the bot joins able to publish audio).",
    ),
    click.option(
        "--recap-phrase",
        default=DEFAULT_PHRASE,
        show_default=True,
        help='A participant saying this asks for a recap ("" turns it off).',
    ),
    click.option(
        "--recap-every",
        type=Duration(),
        metavar="DURATION",
        help="Also speak a recap this often, e.g. 10m (skipped when nothing new was said).",
    ),
    click.option("--recap-on-end", is_flag=True, help="Speak a recap just before leaving."),
    click.option(
        "--recap-since-last",
        is_flag=True,
        help="Recap only what was said since the previous recap (default: the whole meeting).",
    ),
    click.option(
        "--recap-prompt",
        metavar="TEXT",
        help='What the recap should cover, e.g. "focus on decisions and owners".',
    ),
    click.option("--voice", help="The recap's voice, e.g. ivy (default: the service's)."),
    click.option(
        "--agent-url",
        help="Voice Agent endpoint override, e.g. an emulator ($RECORDER_AGENT_URL).",
    ),
]


def _settings(
    *,
    recap_enabled: bool,
    recap_phrase: str,
    recap_every: float | None,
    recap_on_end: bool,
    recap_since_last: bool,
    recap_prompt: str | None,
    voice: str | None,
) -> RecapSettings | None:
    ctx = click.get_current_context()
    given = [
        f"--{name.replace('_', '-')}"
        for name in ("recap_phrase", "recap_every", "recap_prompt", "voice")
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
    ]
    given += [flag for flag, on in (("--recap-on-end", recap_on_end),) if on]
    given += [flag for flag, on in (("--recap-since-last", recap_since_last),) if on]
    if not recap_enabled:
        if given:
            raise click.UsageError(f"{', '.join(given)} only work with --recap")
        return None
    return RecapSettings(
        every_s=recap_every,
        on_end=recap_on_end,
        phrase=recap_phrase.strip() or None,
        voice=voice.strip() if voice and voice.strip() else None,
        prompt_extra=recap_prompt or "",
        since_last=recap_since_last,
    )


def recap_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Add the recap options; the command receives ``recap`` and ``agent_url``."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs["recap"] = _settings(
            recap_enabled=kwargs.pop("recap_enabled"),
            recap_phrase=kwargs.pop("recap_phrase"),
            recap_every=kwargs.pop("recap_every"),
            recap_on_end=kwargs.pop("recap_on_end"),
            recap_since_last=kwargs.pop("recap_since_last"),
            recap_prompt=kwargs.pop("recap_prompt"),
            voice=kwargs.pop("voice"),
        )
        return function(*args, **kwargs)

    decorated: Callable[..., Any] = wrapper
    for option in reversed(_OPTIONS):
        decorated = option(decorated)
    return decorated
