"""What a queued recording asks for, checked once for every caller.

``recorder record`` and ``POST /v1/recordings`` both build a recording's options
here, so both accept and refuse exactly the same values with the same one-line
messages. Light on purpose: the CLI reads the bounds while it builds its options.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recorder.config import DEFAULT_EMPTY_TIMEOUT_S, DEFAULT_IDLE_CLOSE_S
from recorder.errors import ConfigError, UsageError
from recorder.recap.settings import DEFAULT_PHRASE

__all__ = [
    "EMPTY_TIMEOUT_MIN_S",
    "IDLE_CLOSE_MIN_S",
    "MAX_DURATION_MIN_S",
    "MAX_KEYTERMS",
    "MAX_UID",
    "RECAP_EVERY_MIN_S",
    "SESSIONS_PER_MINUTE_RANGE",
    "SPEED_RANGE",
    "RecapRequest",
    "RecordingRequest",
    "check_text",
    "recording_options",
]

#: Replay speed: only an emulator that allows it plays faster.
SPEED_RANGE = (0.1, 100.0)
MAX_DURATION_MIN_S = 0.1
EMPTY_TIMEOUT_MIN_S = 0.1
IDLE_CLOSE_MIN_S = 0.5
SESSIONS_PER_MINUTE_RANGE = (0.1, 100_000.0)
#: A recap takes a while to say; a shorter period would talk over the meeting.
RECAP_EVERY_MIN_S = 10.0
#: The service takes at most 100 keyterms (docs/providers.md, "Streaming: connecting").
MAX_KEYTERMS = 100
#: Agora uids are unsigned 32-bit; 0 means "any" and is never a participant.
MAX_UID = 2**32 - 1
#: The longest duration any option takes (a week).
MAX_SPAN_S = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class RecapRequest:
    """The spoken-recap options of a recording (``--recap`` and companions)."""

    every_s: float | None = None
    on_end: bool = False
    phrase: str | None = DEFAULT_PHRASE
    voice: str | None = None
    prompt_extra: str = ""
    since_last: bool = False


@dataclass(frozen=True, slots=True)
class RecordingRequest:
    """Everything ``recorder record`` takes, as plain values (durations in seconds)."""

    channel: str
    transport: str = "agora"
    speed: float = 1.0
    max_duration_s: float | None = None
    empty_timeout_s: float = DEFAULT_EMPTY_TIMEOUT_S
    idle_close_s: float = DEFAULT_IDLE_CLOSE_S
    sessions_per_minute: float | None = None
    names: dict[int, str] | None = None
    keyterms: tuple[str, ...] = ()
    prompt: str | None = None
    speech_model: str | None = None
    recap: RecapRequest | None = None
    at: datetime | None = None
    notes: bool = False


def check_text(what: str, text: str, *, max_length: int = 1000) -> str:
    """Text that can be stored and sent: UTF-8, no control characters, bounded.

    Raises:
        ConfigError: it is not.
    """
    for char in text:
        if 0xD800 <= ord(char) <= 0xDFFF:
            raise ConfigError(f"{what} {ascii(text)} holds bytes that are not UTF-8 text")
        if not char.isprintable() and char not in " \t":
            raise ConfigError(f"{what} {ascii(text)} holds a control character {ascii(char)}")
    if len(text) > max_length:
        raise ConfigError(f"{what} is longer than {max_length} characters")
    return text


def _number(
    what: str, value: float, low: float, high: float = MAX_SPAN_S, *, unit: str = " s"
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{what} must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"{what} {value!r} is not a finite number")
    if not low <= number <= high:
        raise ConfigError(f"{what} {value!r} is out of range; use {low:g} to {high:g}{unit}")
    return number


def _transport(spec: str) -> str:
    if spec.startswith("replay:"):
        path = Path(spec[len("replay:") :]).expanduser()
        if not path.is_file():
            raise ConfigError(f"replay file {str(path)!r} does not exist")
        return f"replay:{path.resolve()}"
    if spec.strip().lower() != "agora":
        raise ConfigError(f"unknown transport {spec!r}; use 'agora' or 'replay:PATH'")
    return "agora"


def recording_options(request: RecordingRequest) -> tuple[str, dict[str, Any], datetime | None]:
    """Check a request and return (channel, the options a worker reads, start time).

    Raises:
        ConfigError: a value is out of range, or the replay file does not exist.
        UsageError: too many keyterms.
    """
    channel = check_text("the channel", request.channel, max_length=255)
    if not channel.strip():
        raise ConfigError("the channel must not be empty")
    names: dict[str, str] = {}
    for uid, name in (request.names or {}).items():
        if isinstance(uid, bool) or not isinstance(uid, int) or not 0 < uid <= MAX_UID:
            raise ConfigError(f"speaker names: {uid!r} is not a uid (1 to {MAX_UID})")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"speaker names: the name for uid {uid} must be non-empty text")
        names[str(uid)] = check_text(f"the name for uid {uid}", name.strip(), max_length=200)
    keyterms = [check_text("a keyterm", k.strip(), max_length=100) for k in request.keyterms]
    keyterms = [k for k in keyterms if k]
    if len(keyterms) > MAX_KEYTERMS:
        raise UsageError(
            f"--keyterms has {len(keyterms)} terms; the service takes at most {MAX_KEYTERMS}"
        )
    recap = None
    if request.recap is not None:
        r = request.recap
        recap = {
            "every_s": None
            if r.every_s is None
            else _number("--recap-every", r.every_s, RECAP_EVERY_MIN_S),
            "on_end": bool(r.on_end),
            "phrase": check_text("--recap-phrase", r.phrase.strip()) or None if r.phrase else None,
            "voice": check_text("--voice", r.voice.strip(), max_length=100) or None
            if r.voice
            else None,
            "prompt_extra": check_text("--recap-prompt", r.prompt_extra, max_length=10_000),
            "since_last": bool(r.since_last),
        }
    options: dict[str, Any] = {
        "transport": _transport(request.transport),
        "speed": _number("--speed", request.speed, *SPEED_RANGE, unit=""),
        "max_duration_s": None
        if request.max_duration_s is None
        else _number("--max-duration", request.max_duration_s, MAX_DURATION_MIN_S),
        "empty_timeout_s": _number("--empty-timeout", request.empty_timeout_s, EMPTY_TIMEOUT_MIN_S),
        "idle_close_s": _number("--idle-close", request.idle_close_s, IDLE_CLOSE_MIN_S),
        "sessions_per_minute": None
        if request.sessions_per_minute is None
        else _number(
            "--sessions-per-minute",
            request.sessions_per_minute,
            *SESSIONS_PER_MINUTE_RANGE,
            unit="",
        ),
        "names": names,
        "keyterms": keyterms,
        "prompt": None
        if request.prompt is None
        else check_text("--prompt", request.prompt, max_length=10_000),
        "speech_model": None
        if request.speech_model is None
        else check_text("--speech-model", request.speech_model, max_length=100),
        "recap": recap,
        "notes": bool(request.notes),
    }
    at = request.at
    if at is not None and at.tzinfo is None:
        at = at.astimezone()  # a time without a zone is local, as on the command line
    return channel, options, None if at is None else at.astimezone(UTC)
