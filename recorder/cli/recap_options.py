"""The spoken-recap options of ``recorder join`` and ``recorder demo``, and what they build.

:func:`recap_options` adds ``--recap`` and its companions to a command and
hands the command one ``recap`` argument (:class:`~recorder.recap.settings.RecapSettings`,
or None without ``--recap``) plus ``agent_url`` for the Config. Imported
when the CLI loads, so it imports only click and light modules.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from recorder.cli.common import Duration, Text, parse_duration
from recorder.recap.settings import DEFAULT_PHRASE, RecapSettings

__all__ = ["MIN_RECAP_EVERY_S", "Duration", "parse_duration", "recap_options"]

#: A recap takes a while to say; a shorter period would talk over the meeting.
MIN_RECAP_EVERY_S = 10.0


_OPTIONS = [
    click.option(
        "--recap",
        "recap_enabled",
        is_flag=True,
        help="Speak recaps into the channel when asked (the bot joins able to publish audio).",
    ),
    click.option(
        "--recap-phrase",
        type=Text(),
        default=DEFAULT_PHRASE,
        show_default=True,
        help='A participant saying this asks for a recap ("" turns it off).',
    ),
    click.option(
        "--recap-every",
        type=Duration(min_s=MIN_RECAP_EVERY_S),
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
        type=Text(),
        metavar="TEXT",
        help='What the recap should cover, e.g. "focus on decisions and owners".',
    ),
    click.option(
        "--voice", type=Text(), help="The recap's voice, e.g. ivy (default: the service's)."
    ),
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
