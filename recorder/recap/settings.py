"""When and how the bot speaks recaps: :class:`RecapSettings` and its defaults.

The CLI reads this module while it builds its options, so it imports nothing
heavy (no websockets, numpy or storage): only the standard library and the
agent's timeouts, a plain value object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recorder.agent.timeouts import AgentTimeouts

__all__ = [
    "DEFAULT_AGENT_URL",
    "DEFAULT_MAX_BACKLOG_MS",
    "DEFAULT_PHRASE",
    "DEFAULT_PREROLL_MS",
    "RecapSettings",
]

#: The Voice Agent endpoint
#: (https://www.assemblyai.com/docs/api-reference/voice-agent-api/voice-agent-web-socket).
DEFAULT_AGENT_URL = "wss://agents.assemblyai.com/v1/ws"
#: What a participant says to ask for a recap.
DEFAULT_PHRASE = "recorder, recap"
#: Most recap audio queued in the transport ahead of playback: little enough that
#: a barge-in silences the bot at once, enough to ride out the loop's jitter.
DEFAULT_MAX_BACKLOG_MS = 200.0
#: Audio gathered before the first frame is published: reply audio comes in bursts
#: of small chunks (their size is not documented; the emulator sends 100 ms), so a
#: chunk or two of margin rides out the jitter without a gap in the middle of a word.
DEFAULT_PREROLL_MS = 200.0


@dataclass(frozen=True, slots=True)
class RecapSettings:
    """When and how the bot speaks recaps.

    Attributes:
        every_s: speak one this often, in meeting time (None: no timer). A timer
            recap is skipped when nothing was said since the last recap.
        on_end: speak one just before the bot leaves (skipped, too, when nothing
            was said since the last recap).
        phrase: the spoken trigger (None or "": none).
        voice: the agent's voice (None: the service's default).
        prompt_extra: what the recap should cover ("focus on decisions").
        since_last: recap only what was said since the previous recap.
        grace_ms: after playback starts, the trigger speaker's own trailing speech
            is ignored this long (it is not a barge-in).
        preroll_ms: reply audio gathered before publishing starts.
        max_backlog_ms: most recap audio queued in the channel.
        end_timeout_s: bound on the recap at the end (and on waiting for one that
            is running when the meeting ends), so a stop always ends the meeting.
        timeouts: bounds on the agent session's waits.
    """

    every_s: float | None = None
    on_end: bool = False
    phrase: str | None = DEFAULT_PHRASE
    voice: str | None = None
    prompt_extra: str = ""
    since_last: bool = False
    grace_ms: float = 300.0
    preroll_ms: float = DEFAULT_PREROLL_MS
    max_backlog_ms: float = DEFAULT_MAX_BACKLOG_MS
    end_timeout_s: float = 60.0
    timeouts: AgentTimeouts = field(default_factory=AgentTimeouts)
