"""Connection parameters and error texts of the emulated Universal-Streaming v3 API.

Parses the ``/v3/ws`` query string the way the real service does (unknown
parameters ignored, booleans case-insensitive, lists as JSON arrays) and applies
``UpdateConfiguration`` messages. Pure functions; no I/O. The rules are in
docs/providers.md, "Streaming: connecting", "Streaming: messages" and "Streaming:
close codes".
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACCEPTED_MODELS",
    "CLOSE_REASON_LIMIT_BYTES",
    "DOCUMENTED_REASONS",
    "MAX_MESSAGE_BYTES",
    "MUTABLE_FIELDS",
    "ParameterError",
    "SessionParams",
    "apply_update",
    "close_reason",
    "parse_params",
]

#: Models accepted by default: ``u3-rt-pro``, its deprecated alias, and the later models.
ACCEPTED_MODELS = frozenset(
    {
        "u3-rt-pro",
        "u3-pro",
        "universal-3-5-pro",
        "universal-3-6-pro",
        "universal-streaming-english",
        "universal-streaming-multilingual",
    }
)

#: One WebSocket message larger than this closes 1009 (docs/providers.md, "Streaming: audio").
MAX_MESSAGE_BYTES = 128 * 1024

#: Close reasons are limited to 123 bytes (https://www.rfc-editor.org/rfc/rfc6455#section-5.5).
CLOSE_REASON_LIMIT_BYTES = 123

#: The reason each close code carries when nothing more specific applies.
DOCUMENTED_REASONS: Mapping[int, str] = {
    1000: "",
    1008: "Unauthorized Connection: Missing Authorization header",
    1011: "Internal Server Error",
    3005: "Session Cancelled: An error occurred",
    3006: "Invalid Message: An error occurred",
    3007: "Input duration violation",
    3008: "Session Expired: Maximum session duration exceeded",
    3009: "Unauthorized Connection: Too many concurrent sessions",
}

#: Fields an ``UpdateConfiguration`` may change (Mar 2026 plus later additions).
MUTABLE_FIELDS = frozenset(
    {
        "prompt",
        "keyterms_prompt",
        "min_turn_silence",
        "max_turn_silence",
        "vad_threshold",
        "continuous_partials",
        "interruption_delay",
        "agent_context",
        "language_codes",
        "mode",
        "session_heartbeat",
        "filter_profanity",
    }
)

_ENCODINGS = frozenset({"pcm_s16le", "pcm_mulaw"})
_MAX_KEYTERMS = 100
_MAX_KEYTERM_CHARS = 50


class ParameterError(ValueError):
    """A query parameter or configuration field has an invalid value.

    Attributes:
        name: the parameter name.
        problem: what is wrong with it.
    """

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(name, problem)
        self.name = name
        self.problem = problem

    def __str__(self) -> str:
        return f"Invalid Message: {self.name}: {self.problem}"


@dataclass(frozen=True, slots=True)
class SessionParams:
    """The settings of one session after parsing.

    Attributes:
        speech_model: the requested model, or None when missing.
        sample_rate_hz: audio sample rate.
        encoding: ``pcm_s16le`` or ``pcm_mulaw``.
        min_turn_silence_ms: silence before the end-of-turn check (clamped 50-10000).
        max_turn_silence_ms: silence that forces a final.
        vad_threshold: stored; the codec's energy detector does not use it.
        keyterms_prompt: the key terms (over-long terms dropped).
        prompt: stored; it does not change the decoded text.
        language_detection: finals carry language fields.
        inactivity_timeout_s: idle close after this many seconds, or None.
        speaker_labels: Turns carry ``speaker_label``.
        max_speakers: stored.
        format_turns: stored (no effect on u3-rt-pro).
        continuous_partials: periodic partials during speech (switchable later behaviour).
        interruption_delay_ms: early-partial delay (later behaviour).
        token: the temporary token from the query string, if any.
        extra: every other recognised parameter, as given.
        ignored: names of unknown parameters (ignored, as the real service does).
    """

    speech_model: str | None = None
    sample_rate_hz: int = 16000
    encoding: str = "pcm_s16le"
    min_turn_silence_ms: int = 100
    max_turn_silence_ms: int = 1000
    vad_threshold: float = 0.3
    keyterms_prompt: tuple[str, ...] = ()
    prompt: str | None = None
    language_detection: bool = False
    inactivity_timeout_s: int | None = None
    speaker_labels: bool = False
    max_speakers: int | None = None
    format_turns: bool = False
    continuous_partials: bool = False
    interruption_delay_ms: int = 500
    token: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()

    @property
    def bytes_per_second(self) -> int:
        """Audio bytes per second of the configured encoding."""
        width = 2 if self.encoding == "pcm_s16le" else 1
        return width * self.sample_rate_hz


def _bool(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise ParameterError(name, f"expected true or false, got {raw!r}")


def _int(name: str, raw: Any, low: int | None = None, high: int | None = None) -> int:
    if isinstance(raw, bool):
        raise ParameterError(name, f"expected an integer, got {raw!r}")
    try:
        value = int(raw) if isinstance(raw, int) else int(str(raw).strip())
    except ValueError:
        # Some clients send floats for millisecond fields ("100.0"); accept integral ones.
        try:
            number = float(str(raw))
        except ValueError:
            raise ParameterError(name, f"expected an integer, got {raw!r}") from None
        if not math.isfinite(number) or number != int(number):
            raise ParameterError(name, f"expected an integer, got {raw!r}") from None
        value = int(number)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ParameterError(name, f"must be between {low} and {high}, got {value}")
    return value


def _float(name: str, raw: Any, low: float, high: float) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ParameterError(name, f"expected a number, got {raw!r}") from None
    if not (low <= value <= high):
        raise ParameterError(name, f"must be between {low} and {high}, got {value}")
    return value


def _keyterms(name: str, raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ParameterError(name, "expected a JSON array of strings") from None
    if not isinstance(raw, list) or not all(isinstance(term, str) for term in raw):
        raise ParameterError(name, "expected a JSON array of strings")
    if len(raw) > _MAX_KEYTERMS:
        raise ParameterError(name, f"at most {_MAX_KEYTERMS} terms, got {len(raw)}")
    # Terms over 50 characters are ignored, not rejected.
    return tuple(term for term in raw if len(term) <= _MAX_KEYTERM_CHARS)


def _json_list(name: str, raw: Any, limit: int) -> list[Any]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ParameterError(name, "expected a JSON array") from None
    if not isinstance(raw, list) or len(raw) > limit:
        raise ParameterError(name, f"expected a JSON array of at most {limit} items")
    return raw


def _clamp_min_silence(name: str, raw: Any) -> int:
    # Later docs: min_turn_silence is clamped to 50-10000 ms, not rejected.
    return min(max(_int(name, raw, 0), 50), 10000)


def _parse_field(name: str, raw: Any) -> tuple[str, Any] | None:
    """Parse one recognised field into (dataclass attribute, value); None if unknown."""
    if name == "min_turn_silence":
        return "min_turn_silence_ms", _clamp_min_silence(name, raw)
    if name == "max_turn_silence":
        return "max_turn_silence_ms", _int(name, raw, 0, 60000)
    if name == "vad_threshold":
        return "vad_threshold", _float(name, raw, 0.0, 1.0)
    if name == "keyterms_prompt":
        return "keyterms_prompt", _keyterms(name, raw)
    if name == "prompt":
        return "prompt", str(raw)
    if name == "continuous_partials":
        return "continuous_partials", _bool(name, raw)
    if name == "interruption_delay":
        return "interruption_delay_ms", _int(name, raw, 0, 1000)
    if name in ("filter_profanity", "session_heartbeat", "redact_pii", "include_partial_turns"):
        return "extra", (name, _bool(name, raw))
    if name == "language_codes":
        return "extra", (name, _json_list(name, raw, 10))
    if name == "voice_focus_threshold":
        return "extra", (name, _float(name, raw, 0.0, 1.0))
    if name == "previous_context_n_turns":
        return "extra", (name, _int(name, raw, 0, 100))
    if name == "mode":
        if raw not in ("min_latency", "balanced", "max_accuracy"):
            raise ParameterError(name, f"unknown mode {raw!r}")
        return "extra", (name, raw)
    if name == "agent_context":
        return "extra", (name, str(raw))
    return None


_CONNECT_ONLY = frozenset(
    {
        "speech_model",
        "sample_rate",
        "encoding",
        "token",
        "language_detection",
        "inactivity_timeout",
        "speaker_labels",
        "max_speakers",
        "domain",
        "format_turns",
        "end_of_turn_confidence_threshold",
        "min_end_of_turn_silence_when_confident",
        "language_code",
        "language",
        "webhook_url",
        "webhook_auth_header_name",
        "webhook_auth_header_value",
        "llm_gateway",
        "voice_focus",
        "redact_pii_policies",
        "redact_pii_sub",
        "speaker_labels_revision_interval_ms",
        "customer_support_audio_capture",
    }
)


def parse_params(query: Mapping[str, str]) -> SessionParams:
    """Parse the connection query parameters.

    Args:
        query: the query parameters, one value per name (the last one wins).

    Returns:
        The session parameters; unknown names are listed in ``ignored``.

    Raises:
        ParameterError: a recognised parameter has an invalid value.
    """
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    ignored: list[str] = []
    for name, raw in query.items():
        parsed = _parse_field(name, raw)
        if parsed is not None:
            attribute, value = parsed
            if attribute == "extra":
                extra[value[0]] = value[1]
            else:
                values[attribute] = value
            continue
        if name not in _CONNECT_ONLY:
            ignored.append(name)
            continue
        if name == "speech_model":
            values["speech_model"] = raw
        elif name == "sample_rate":
            values["sample_rate_hz"] = _int(name, raw, 8000, 96000)
        elif name == "encoding":
            if raw not in _ENCODINGS:
                raise ParameterError(name, f"unsupported encoding {raw!r}")
            values["encoding"] = raw
        elif name == "token":
            values["token"] = raw
        elif name == "language_detection":
            values["language_detection"] = _bool(name, raw)
        elif name == "inactivity_timeout":
            values["inactivity_timeout_s"] = _int(name, raw, 5, 3600)
        elif name == "speaker_labels":
            values["speaker_labels"] = _bool(name, raw)
        elif name == "max_speakers":
            values["max_speakers"] = _int(name, raw, 1, 10)
        elif name == "format_turns":
            values["format_turns"] = _bool(name, raw)
        elif name == "domain":
            if raw != "medical-v1":
                raise ParameterError(name, f"unknown domain {raw!r}")
            extra[name] = raw
        elif name == "end_of_turn_confidence_threshold":
            extra[name] = _float(name, raw, 0.0, 1.0)
        elif name == "min_end_of_turn_silence_when_confident":
            # Deprecated alias of min_turn_silence; the new name wins
            # whatever the order (setdefault here, plain assignment for the new name).
            values.setdefault("min_turn_silence_ms", _clamp_min_silence(name, raw))
        elif name == "llm_gateway":
            try:
                extra[name] = json.loads(raw)
            except ValueError:
                raise ParameterError(name, "expected a JSON object") from None
        else:
            extra[name] = raw
    return SessionParams(**values, extra=extra, ignored=tuple(ignored))


def apply_update(params: SessionParams, message: Mapping[str, Any]) -> SessionParams:
    """Apply an ``UpdateConfiguration`` message (no reply; later audio uses it).

    Only mutable fields change; ``null`` values and other fields are ignored.

    Args:
        params: the current settings.
        message: the decoded JSON message.

    Returns:
        The new settings.

    Raises:
        ParameterError: a mutable field has an invalid value.
    """
    changes: dict[str, Any] = {}
    extra = dict(params.extra)
    for name, raw in message.items():
        if name not in MUTABLE_FIELDS or raw is None:
            continue
        parsed = _parse_field(name, raw)
        if parsed is None:
            continue
        attribute, value = parsed
        if attribute == "extra":
            extra[value[0]] = value[1]
        else:
            changes[attribute] = value
    return dataclasses.replace(params, **changes, extra=extra)


def close_reason(text: str) -> str:
    """The close reason for an error text: itself if short enough, else a pointer."""
    if len(text.encode()) <= CLOSE_REASON_LIMIT_BYTES:
        return text
    return "See Error message for details"
