"""Pick a transport from the ``--transport`` option (``agora`` or ``replay:PATH``)."""

from __future__ import annotations

from pathlib import Path

from recorder.errors import ConfigError
from recorder.transport.base import Transport

__all__ = ["parse_transport", "replay_transport"]


def replay_transport(path: Path, *, speed: float = 1.0, channel: str | None = None) -> Transport:
    """A replay transport for a script file (``channel`` overrides the script's)."""
    import dataclasses

    from recorder.transport.replay import ReplayTransport
    from recorder.transport.script import load_script

    script = load_script(path)
    if channel and channel != script.channel:
        script = dataclasses.replace(script, channel=channel)
    return ReplayTransport(script, speed=speed)


def parse_transport(spec: str) -> tuple[str, Path | None]:
    """Split ``agora`` / ``replay:PATH`` into a kind and an optional path.

    Raises:
        ConfigError: the transport is unknown or the replay path is missing.
    """
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "agora" and not rest:
        return "agora", None
    if kind == "replay":
        if not rest:
            raise ConfigError("--transport replay needs a file: --transport replay:meeting.json")
        return "replay", Path(rest)
    raise ConfigError(f"unknown transport {spec!r}; use 'agora' or 'replay:PATH'")
