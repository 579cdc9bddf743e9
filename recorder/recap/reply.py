"""One spoken recap: the meeting's turns in a prompt, one Voice Agent session, its audio and text.

:func:`build_prompt` puts the speaker-attributed transcript in the system
prompt, keeping the most recent turns that fit the prompt budget, so a long
meeting never fails. :func:`run_recap` opens one session, asks for one reply
(spec assemblyai-voice-agent.md §10, mechanism 2), resamples its 24 kHz audio
to the channel's 16 kHz as it arrives, and ends the session (it bills on open
time, §9). Setting ``cancel`` (barge-in) stops the audio at once.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from recorder.agent.protocol import (
    AgentTranscript,
    ReplyAudio,
    ReplyDone,
    ReplyError,
    SessionConfig,
)
from recorder.agent.session import AgentTimeouts, open_session
from recorder.audio import BYTES_PER_SAMPLE, SAMPLE_RATE_HZ, StreamingResampler, ms_for_bytes
from recorder.errors import AgentError
from recorder.timeline import format_clock

__all__ = [
    "AGENT_SAMPLE_RATE_HZ",
    "MAX_EXTRA_CHARS",
    "MAX_SYSTEM_PROMPT_CHARS",
    "MAX_TURN_CHARS",
    "RecapPrompt",
    "RecapRequest",
    "RecapResult",
    "RecapTurn",
    "build_prompt",
    "format_line",
    "run_recap",
]

log = logging.getLogger("recorder.agent")

#: Reply audio is PCM16 mono 24 kHz (spec §6, ``audio/pcm``).
AGENT_SAMPLE_RATE_HZ = 24_000
#: Prompt budget. The spec documents no cap on ``system_prompt`` (§2.1) or
#: ``instructions`` (§2.4, UNCONFIRMED), so stay far below any LLM context:
#: 24,000 characters is about 6,000 tokens, an hour of brisk talk, and keeps
#: the frame under websockets' 1 MiB default message size with room to spare.
MAX_SYSTEM_PROMPT_CHARS = 24_000
#: One monologue may not crowd out everyone else.
MAX_TURN_CHARS = 1_000
#: The caller's extra instructions (``prompt_extra``).
MAX_EXTRA_CHARS = 500

_PERSONA = (
    "You are the meeting recorder's recap voice. Speak only when asked. "
    "Never invent facts: use only the meeting transcript below. "
    "Speak in plain sentences, without lists, markup or emoji."
)
_INSTRUCTIONS = (
    "Give a short spoken recap of the meeting transcript in your instructions: "
    "for each speaker, their latest point in one sentence, in the order they spoke."
)
_SPACE = re.compile(r"\s+")

OnAudio = Callable[[bytes], Awaitable[None] | None]


class RecapTurn(Protocol):
    """What a recap reads from a turn; ``storage.records.Turn`` fits.

    A protocol rather than an import keeps ``agent`` independent of ``storage``
    (imports point one way, STYLE.md §2).
    """

    @property
    def id(self) -> int:
        """The turn's id in the store."""

    @property
    def uid(self) -> int:
        """The participant who spoke it."""

    @property
    def speaker(self) -> str:
        """The name to show."""

    @property
    def start_ms(self) -> int:
        """Start on the meeting timeline."""

    @property
    def end_ms(self) -> int:
        """End on the meeting timeline."""

    @property
    def text(self) -> str:
        """What was said."""


@dataclass(frozen=True, slots=True)
class RecapRequest:
    """What to recap and how.

    Attributes:
        turns: the meeting's finished turns, in meeting-time order.
        names: display names by uid that override the turns' own (set after the fact).
        since_ms: recap only turns that end after this meeting time (None: all).
        prompt_extra: extra instructions from the user ("focus on decisions").
        voice: ``output.voice`` (None: the service's default, spec §7).
        trigger_turn_id: the turn that asked for the recap; left out of the transcript.
    """

    turns: Sequence[RecapTurn]
    names: Mapping[int, str] = field(default_factory=dict)
    since_ms: int | None = None
    prompt_extra: str = ""
    voice: str | None = None
    trigger_turn_id: int | None = None


@dataclass(frozen=True, slots=True)
class RecapPrompt:
    """The text sent to the agent.

    Attributes:
        system_prompt: persona plus the transcript lines.
        instructions: the one-shot ``reply.create`` instructions.
        turn_count: turns included.
        omitted_count: older turns left out to fit the budget.
    """

    system_prompt: str
    instructions: str
    turn_count: int
    omitted_count: int


@dataclass(frozen=True, slots=True)
class RecapResult:
    """What the agent said and what was handed on.

    Attributes:
        text: the agent's transcript (``transcript.agent``); when interrupted, the
            server's trimmed text, or "" if none arrived before the session ended.
        was_interrupted: the reply was cut short (``cancel`` or the service).
        audio_ms: 16 kHz audio handed to ``on_audio``.
        interrupted_at_ms: ``audio_ms`` at the moment of the interruption, else None.
        session_id: the Voice Agent session id.
    """

    text: str
    was_interrupted: bool
    audio_ms: float
    interrupted_at_ms: float | None = None
    session_id: str | None = None


def format_line(turn: RecapTurn, names: Mapping[int, str]) -> str:
    """One transcript line: ``[hh:mm:ss] Speaker: text`` on a single line.

    Args:
        turn: the turn.
        names: display-name overrides by uid.
    """
    name = _SPACE.sub(" ", names.get(turn.uid) or turn.speaker).replace(":", " ").strip()
    text = _SPACE.sub(" ", turn.text).strip()
    if len(text) > MAX_TURN_CHARS:
        text = text[: MAX_TURN_CHARS - 1].rstrip() + "…"
    return f"[{format_clock(turn.start_ms)}] {name or turn.uid}: {text}"


def build_prompt(request: RecapRequest, *, budget: int = MAX_SYSTEM_PROMPT_CHARS) -> RecapPrompt:
    """Build the system prompt and instructions, keeping the newest turns that fit.

    Args:
        request: the recap to make.
        budget: the longest system prompt to build, in characters.

    Returns:
        The prompt; never longer than ``budget`` however long the meeting.
    """
    turns = [
        turn
        for turn in request.turns
        if turn.text.strip()
        and turn.id != request.trigger_turn_id
        and (request.since_ms is None or turn.end_ms > request.since_ms)
    ]
    head = f"{_PERSONA}\n\nMeeting transcript:\n"
    lines: list[str] = []
    used = len(head)
    # Newest first until the budget is spent; the note about omitted turns needs room too.
    reserve = 120
    for turn in reversed(turns):
        line = format_line(turn, request.names)
        if used + len(line) + 1 + reserve > budget:
            break
        lines.append(line)
        used += len(line) + 1
    lines.reverse()
    omitted = len(turns) - len(lines)
    body = "\n".join(lines) if lines else "(nothing has been said yet)"
    if omitted:
        first_kept = turns[omitted].start_ms
        note = f"(the {omitted} earlier turns before {format_clock(first_kept)} are left out)\n"
        body = note + body
    instructions = _INSTRUCTIONS
    extra = _SPACE.sub(" ", request.prompt_extra).strip()[:MAX_EXTRA_CHARS]
    if extra:
        instructions = f"{instructions} {extra}"
    return RecapPrompt((head + body)[:budget], instructions, len(lines), omitted)


async def _hand_on(on_audio: OnAudio, pcm: bytes) -> None:
    if not pcm:
        return
    result = on_audio(pcm)
    if inspect.isawaitable(result):
        await result


async def run_recap(
    url: str,
    api_key: str,
    request: RecapRequest,
    *,
    on_audio: OnAudio,
    cancel: asyncio.Event | None = None,
    timeouts: AgentTimeouts | None = None,
) -> RecapResult:
    """Speak one recap through a fresh Voice Agent session.

    Args:
        url: the Voice Agent WebSocket URL.
        api_key: the AssemblyAI API key (never logged).
        request: what to recap.
        on_audio: receives the reply as PCM16 mono 16 kHz, chunk by chunk, as it
            arrives; may be a coroutine function (it is awaited, which paces the
            reading of the socket).
        cancel: set it to stop at once (barge-in): no more audio is handed on,
            the session is ended, and the result says how far it got.
        timeouts: bounds on every wait.

    Returns:
        The agent's text and how much audio was handed on.

    Raises:
        AgentError: the session failed (bad key, service error, drop, timeout).
    """
    timeouts = timeouts or AgentTimeouts()
    prompt = build_prompt(request)
    if prompt.omitted_count:
        log.info(
            "recap: %d earlier turns left out of the prompt to fit %d characters",
            prompt.omitted_count,
            MAX_SYSTEM_PROMPT_CHARS,
        )
    config = SessionConfig(system_prompt=prompt.system_prompt, voice=request.voice)
    # One resampler per recap: its filter state spans the chunk edges (no clicks).
    resampler = StreamingResampler(AGENT_SAMPLE_RATE_HZ, SAMPLE_RATE_HZ)
    handed_bytes = 0
    odd = b""
    transcript: AgentTranscript | None = None
    done: ReplyDone | None = None
    interrupted_at: float | None = None
    async with open_session(url, api_key, config, timeouts=timeouts, cancel=cancel) as session:
        if session.session_id is None:
            interrupted_at = 0.0  # cancelled before session.ready: ask for nothing
        else:
            await session.create_reply(prompt.instructions)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeouts.reply_s
        gap = timeouts.reply_start_s
        while interrupted_at is None and (transcript is None or done is None):
            # transcript.agent may follow reply.done (interrupted, spec §4.3), or
            # never come; after reply.done, wait for it only briefly.
            is_late = done is not None
            if is_late:
                gap = min(gap, timeouts.end_s)
            wait = min(gap, deadline - loop.time())
            event = await session.next_event(
                wait, cancel=cancel, doing="speaking the recap", is_optional=is_late
            )
            if event is None and is_late and not (cancel is not None and cancel.is_set()):
                log.warning("recap: the reply finished without a transcript.agent")
                break
            if event is None:
                interrupted_at = ms_for_bytes(handed_bytes)
                log.info("recap: cancelled after %.0f ms of audio", interrupted_at)
                break
            gap = timeouts.event_gap_s
            if isinstance(event, ReplyAudio):
                pcm = odd + event.audio
                whole = len(pcm) - len(pcm) % BYTES_PER_SAMPLE
                odd = pcm[whole:]
                out = resampler.process(pcm[:whole])
                handed_bytes += len(out)
                await _hand_on(on_audio, out)
            elif isinstance(event, AgentTranscript):
                transcript = event
            elif isinstance(event, ReplyDone):
                done = event
                if not done.is_interrupted:
                    tail = resampler.process(b"", last=True)
                    handed_bytes += len(tail)
                    await _hand_on(on_audio, tail)
            elif isinstance(event, ReplyError):
                raise AgentError(
                    f"the voice agent could not make the recap ({event.code}): "
                    f"{event.message.rstrip('. ') or 'no details'}; try the recap again"
                )
        if interrupted_at is not None:
            # Tell the agent at once: session.end stops the reply and the billing
            # (spec §2.6; there is no documented reply-cancel event, §2.7). The
            # trimmed transcript.agent may arrive while it ends (spec §4.3).
            await session.end()
            for drained in session.drained:
                if isinstance(drained, AgentTranscript):
                    transcript = drained
        session_id = session.session_id
    was_interrupted = interrupted_at is not None or bool(
        (done is not None and done.is_interrupted)
        or (transcript is not None and transcript.is_interrupted)
    )
    audio_ms = ms_for_bytes(handed_bytes)
    if was_interrupted and interrupted_at is None:
        interrupted_at = audio_ms
    log.info(
        "recap: session %s handed on %.0f ms of audio%s",
        session_id,
        audio_ms,
        " (interrupted)" if was_interrupted else "",
    )
    return RecapResult(
        transcript.text if transcript is not None else "",
        was_interrupted,
        audio_ms,
        interrupted_at,
        session_id,
    )
