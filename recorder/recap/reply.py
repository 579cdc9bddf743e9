"""One spoken recap: one Voice Agent session asked for one reply, its audio handed on as it comes.

:func:`run_recap` opens a fresh session with the prompt
(:func:`~recorder.recap.prompt.build_prompt`), asks for one reply with
``reply.create``, resamples its 24 kHz audio to the channel's 16 kHz as it
arrives, and ends the session: it bills on open time, so none is held between
recaps (docs/providers.md, "Voice Agent: protocol"). Setting ``cancel``
(barge-in) stops the audio at once.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from recorder.agent.protocol import (
    AgentTranscript,
    ReplyAudio,
    ReplyDone,
    ReplyError,
    SessionConfig,
)
from recorder.agent.session import open_session
from recorder.agent.timeouts import AgentTimeouts
from recorder.audio import BYTES_PER_SAMPLE, SAMPLE_RATE_HZ, StreamingResampler, ms_for_bytes
from recorder.errors import AgentError
from recorder.recap.prompt import MAX_SYSTEM_PROMPT_CHARS, RecapRequest, build_prompt

__all__ = ["AGENT_SAMPLE_RATE_HZ", "OnAudio", "RecapResult", "run_recap"]

log = logging.getLogger(__name__)

#: Reply audio is PCM16 mono 24 kHz (``audio/pcm``; docs/providers.md, "Voice Agent: protocol").
AGENT_SAMPLE_RATE_HZ = 24_000

OnAudio = Callable[[bytes], Awaitable[None] | None]


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
            # transcript.agent may follow reply.done (when interrupted), or never
            # come; after reply.done, wait for it only briefly.
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
            # (there is no documented reply-cancel event; docs/providers.md,
            # "Voice Agent: protocol"). The trimmed transcript.agent may arrive
            # while it ends.
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
