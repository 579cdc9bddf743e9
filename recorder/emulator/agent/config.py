"""What the emulated Voice Agent is configured with: switches, faults, and ``session.update`` rules.

:class:`AgentBehaviour` holds the switches for behaviours the documentation
leaves open, :class:`AgentFaults` the injected failures, and :func:`apply_update`
validates one ``session.update`` against which fields may change after
``session.ready`` (docs/providers.md, "Voice Agent: protocol"), returning the new
configuration and the ``session.error`` frames it earned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from recorder.emulator.agent.voice import OUTPUT_FORMATS

__all__ = [
    "CURRENT_VOICES",
    "AgentBehaviour",
    "AgentFaults",
    "LiveConfig",
    "UpdateError",
    "apply_update",
]

#: The 21 current voice ids (after the June 2026 removals); default ``ivy``.
CURRENT_VOICES: frozenset[str] = frozenset(
    "ivy james tyler winter bella david kyle helen martha river emma victor eleanor "
    "arjun dmitri pierre giulia luca lucia mateo diego".split()
)


@dataclass(frozen=True, slots=True)
class AgentBehaviour:
    """Switches of the emulated service; the defaults follow the documented behaviour.

    Attributes:
        voices: the voice catalogue; others are ``invalid_value``.
        lowercase_codes: send ``unauthorized`` instead of ``UNAUTHORIZED``.
        accept_raw_key: accept ``Authorization: <key>`` without ``Bearer``.
        accept_undocumented: take ``conversation.message``/``reply.cancel`` silently.
        buffer_early_audio: keep ``input.audio`` sent before ``session.ready``.
        create_cancels_reply: ``reply.create`` during a reply interrupts it;
            otherwise the new reply waits for the current one.
        interrupt_done_first: on interruption send ``reply.done`` before
            ``transcript.agent`` (the documentation's order).
        chunk_ms: audio per ``reply.audio``.
        burst_chunks: chunks sent back to back before pacing resumes.
        reply_delay_s: "LLM latency" from ``reply.create`` to ``reply.started``.
        session_cap_s: session length limit; tokens may lower it.
        cap_sends_ended: at the cap, send ``session.ended`` after ``session_expired``.
        ready_timeout_s: no ``session.update`` for this long: ``agent_timeout``.
        strict_tools: reject OpenAI-style nested tool definitions.
        max_prompt_chars: longest ``system_prompt`` accepted (the real cap is
            UNCONFIRMED; None accepts any), else ``invalid_value``.
    """

    voices: frozenset[str] = CURRENT_VOICES
    lowercase_codes: bool = False
    accept_raw_key: bool = False
    accept_undocumented: bool = False
    buffer_early_audio: bool = False
    create_cancels_reply: bool = False
    interrupt_done_first: bool = True
    chunk_ms: int = 100
    burst_chunks: int = 1
    reply_delay_s: float = 0.0
    session_cap_s: float = 10800.0
    cap_sends_ended: bool = True
    ready_timeout_s: float = 10.0
    strict_tools: bool = False
    max_prompt_chars: int | None = None


@dataclass(frozen=True, slots=True)
class AgentFaults:
    """Failures to inject on every connection (documented failures and the recorder's needs).

    Attributes:
        connect_error: ``(code, close_code)``: a ``session.error`` as the first frame,
            then that close (``("INTERNAL_ERROR", 1011)``, ``("server_error", 1008)``).
        never_ready: take ``session.update`` but never send ``session.ready``.
        error_after_chunks: ``(code, message, close_code)`` sent after this many reply
            chunks (``error_at_chunk``); close_code None keeps the socket open.
        error_at_chunk: the chunk count that triggers ``error_after_chunks``.
        drop_after_chunks: abort the TCP connection after this many reply chunks.
        end_delay_s: hold ``session.ended`` back this long after ``session.end``.
        never_end: ignore ``session.end`` (never send ``session.ended``).
        omit_agent_transcript: never send ``transcript.agent``.
        reply_error: ``(code, message)``: answer ``reply.create`` with the
            undocumented ``reply.error`` and ``reply.done`` ``failed``.
    """

    connect_error: tuple[str, int] | None = None
    never_ready: bool = False
    error_after_chunks: tuple[str, str, int | None] | None = None
    error_at_chunk: int = 1
    drop_after_chunks: int | None = None
    end_delay_s: float = 0.0
    never_end: bool = False
    omit_agent_transcript: bool = False
    reply_error: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class LiveConfig:
    """A session's configuration as applied so far."""

    system_prompt: str | None = None
    greeting: str | None = None
    voice: str = "ivy"
    output_encoding: str = "audio/pcm"
    volume: float = 100.0
    interrupt_response: bool = True
    min_silence_ms: int = 1000
    keyterms: tuple[str, ...] = ()
    tools: tuple[dict[str, Any], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UpdateError:
    """One ``session.error`` a ``session.update`` earned."""

    code: str
    message: str
    param: str | None = None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _validate(
    session: dict[str, Any], config: LiveConfig, behaviour: AgentBehaviour, *, is_first: bool
) -> tuple[LiveConfig, list[UpdateError]]:
    errors: list[UpdateError] = []
    changes: dict[str, Any] = {}
    output = _dict(session.get("output"))
    inputs = _dict(session.get("input"))
    # Immutable after session.ready: error, change ignored.
    immutable = {
        "greeting": "greeting" in session,
        "output.voice": "voice" in output,
        "output.format": "format" in output,
    }
    if not is_first:
        for param, present in immutable.items():
            if present:
                errors.append(
                    UpdateError(
                        "immutable_field",
                        f"{param} cannot be changed after the session starts",
                        param,
                    )
                )
    else:
        if "greeting" in session:
            if not isinstance(session["greeting"], str):
                errors.append(UpdateError("invalid_value", "greeting must be a string", "greeting"))
            else:
                changes["greeting"] = session["greeting"]
        if "voice" in output:
            voice = output["voice"]
            if not isinstance(voice, str) or voice not in behaviour.voices:
                errors.append(
                    UpdateError("invalid_value", f"unknown voice {voice!r}", "output.voice")
                )
            else:
                changes["voice"] = voice
        if "format" in output:
            encoding = _dict(output["format"]).get("encoding", "audio/pcm")
            if encoding not in OUTPUT_FORMATS:
                errors.append(
                    UpdateError(
                        "invalid_value", f"unknown encoding {encoding!r}", "output.format.encoding"
                    )
                )
            else:
                changes["output_encoding"] = encoding
    if "system_prompt" in session:
        prompt = session["system_prompt"]
        limit = behaviour.max_prompt_chars
        if not isinstance(prompt, str):
            errors.append(
                UpdateError("invalid_value", "system_prompt must be a string", "system_prompt")
            )
        elif limit is not None and len(prompt) > limit:
            errors.append(
                UpdateError(
                    "invalid_value",
                    f"system_prompt is longer than {limit} characters",
                    "system_prompt",
                )
            )
        else:
            changes["system_prompt"] = prompt
    if "volume" in output:
        volume = output["volume"]
        if (
            isinstance(volume, bool)
            or not isinstance(volume, int | float)
            or not (math.isfinite(volume) and 0 <= volume <= 100)
        ):
            errors.append(UpdateError("invalid_value", "volume must be 0-100", "output.volume"))
        else:
            changes["volume"] = float(volume)
    if "keyterms" in inputs:
        keyterms = inputs["keyterms"]
        if not isinstance(keyterms, list) or len(keyterms) > 100:
            errors.append(UpdateError("invalid_value", "at most 100 keyterms", "input.keyterms"))
        else:
            changes["keyterms"] = tuple(str(term) for term in keyterms)
    detection = _dict(inputs.get("turn_detection"))
    if "interrupt_response" in detection:
        changes["interrupt_response"] = bool(detection["interrupt_response"])
    if "min_silence" in detection:
        silence = detection["min_silence"]
        if isinstance(silence, bool) or not isinstance(silence, int) or silence < 0:
            param = "input.turn_detection.min_silence"
            errors.append(UpdateError("invalid_value", "min_silence must be whole ms", param))
        else:
            changes["min_silence_ms"] = silence
    if "tools" in session:
        tools = session["tools"]
        if not isinstance(tools, list) or not all(isinstance(tool, dict) for tool in tools):
            errors.append(UpdateError("invalid_config", "tools must be a list of objects", "tools"))
        elif behaviour.strict_tools and any("function" in tool for tool in tools):
            errors.append(
                UpdateError(
                    "invalid_config", "tools use the flat form, not OpenAI's nested one", "tools"
                )
            )
        else:
            changes["tools"] = tuple(tools)
    return replace(config, **changes), errors


def apply_update(
    message: dict[str, Any], config: LiveConfig, behaviour: AgentBehaviour, *, is_first: bool
) -> tuple[LiveConfig, list[UpdateError], bool]:
    """Apply one ``session.update``: stored-agent rules, voices, mutability.

    Args:
        message: the decoded message.
        config: the configuration so far.
        behaviour: the emulator's switches.
        is_first: whether the session is not ready yet (immutable fields may be set).

    Returns:
        The new configuration, the errors to send, and whether the update is
        acceptable as the session's first one (no fatal validation error).
    """
    session = message.get("session", {})
    if not isinstance(session, dict):
        return (
            config,
            [UpdateError("invalid_format", "session must be an object", "session")],
            False,
        )
    if "agent_id" in session:
        if not is_first:
            return (
                config,
                [UpdateError("agent_id_not_first", "agent_id must be in the first update")],
                False,
            )
        if len(session) > 1:
            text = "agent_id cannot be combined with inline configuration"
            return config, [UpdateError("invalid_config", text, "agent_id")], False
        # No stored agents exist here; the caller closes 1008.
        return config, [UpdateError("agent_not_found", "agent not found", "agent_id")], False
    new, errors = _validate(session, config, behaviour, is_first=is_first)
    fatal = any(error.code != "immutable_field" for error in errors)
    return new, errors, not fatal
