"""Open the transport a ``--transport`` value names: ``agora`` or ``replay:PATH``.

This is the one place that knows the kinds of transport: adding one means a
module in this package and one entry in ``_KINDS``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recorder.config import Config
from recorder.errors import ConfigError
from recorder.transport.base import Transport

__all__ = ["open_transport"]


@dataclass(frozen=True, slots=True)
class _Request:
    """What a transport may be opened with, beyond the Config."""

    argument: str  # what follows "kind:" in the value
    config: Config
    channel: str | None
    speed: float
    publish: bool


def _open_agora(request: _Request) -> Transport:
    from recorder.transport.agora.transport import AgoraTransport

    config = request.config
    if not request.channel:
        raise ConfigError("no channel given; use --channel NAME or set AGORA_CHANNEL")
    transport = AgoraTransport(  # validates the settings before the SDK is touched
        app_id=config.agora_app_id or "",
        channel=request.channel,
        bot_uid=config.bot_uid,
        app_certificate=config.agora_app_certificate,
        token=config.agora_token,
        publish=request.publish,
    )
    transport.load_sdk()  # a clear install message when the extra is missing
    return transport


def _open_replay(request: _Request) -> Transport:
    from recorder.transport.replay import ReplayTransport
    from recorder.transport.script import load_script

    if not request.argument:
        raise ConfigError("--transport replay needs a file: --transport replay:meeting.json")
    script = load_script(Path(request.argument))
    if request.channel and request.channel != script.channel:
        script = dataclasses.replace(script, channel=request.channel)
    return ReplayTransport(script, speed=request.speed)


@dataclass(frozen=True, slots=True)
class _Kind:
    usage: str  # how the user writes it
    takes_argument: bool  # "kind:ARGUMENT"
    open: Callable[[_Request], Transport]


_KINDS = {
    "agora": _Kind("agora", False, _open_agora),
    "replay": _Kind("replay:PATH", True, _open_replay),
}


def open_transport(
    spec: str,
    config: Config,
    *,
    channel: str | None = None,
    speed: float = 1.0,
    publish: bool = False,
) -> Transport:
    """Make the transport ``spec`` names, ready to start.

    Args:
        spec: ``agora`` for a live channel, or ``replay:PATH`` for a scripted meeting.
        config: credentials and the bot's uid.
        channel: the channel to join (a replay: overrides the script's).
        speed: how much faster than real time a replay plays.
        publish: whether the bot will speak into the channel (the recap).

    Raises:
        ConfigError: the transport is unknown, or its settings are missing or wrong.
        TransportUnavailable: the transport's SDK is not installed.
    """
    name, _, argument = spec.partition(":")
    kind = _KINDS.get(name.strip().lower())
    if kind is None or (argument and not kind.takes_argument):
        usage = " or ".join(repr(k.usage) for k in _KINDS.values())
        raise ConfigError(f"unknown transport {spec!r}; use {usage}")
    return kind.open(
        _Request(argument=argument, config=config, channel=channel, speed=speed, publish=publish)
    )
