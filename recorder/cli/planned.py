"""Commands of DESIGN.md that are not built yet: listed in --help, exit 2 when run."""

from __future__ import annotations

import click

from recorder.errors import NotBuiltError

__all__ = ["PLANNED_COMMANDS"]

_PLANNED = {
    "join": "Join a channel and record it.",
    "demo": "Record a bundled meeting on the local emulator, no account needed.",
    "meetings": "List recorded meetings.",
    "show": "Print a meeting's transcript.",
    "search": "Search every transcript.",
    "export": "Export a meeting (html, md, json, txt, srt, vtt).",
    "speakers": "Name the participants of a meeting.",
    "sql": "Run read-only SQL over the transcript database.",
    "emulate": "Serve local AssemblyAI-compatible emulators.",
}


def _planned(name: str, summary: str) -> click.Command:
    def callback(**_: object) -> None:
        raise NotBuiltError(name)

    return click.Command(
        name,
        callback=callback,
        help=f"{summary} (not built yet)",
        short_help=f"{summary} (not built yet)",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )


PLANNED_COMMANDS = [_planned(name, summary) for name, summary in _PLANNED.items()]
