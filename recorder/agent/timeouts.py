"""How long a Voice Agent session may wait for each step: a value object with no I/O.

It lives apart from :mod:`recorder.agent.session` so that settings which carry
it (the recap's) can be imported without ``websockets``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AgentTimeouts"]


@dataclass(frozen=True, slots=True)
class AgentTimeouts:
    """Upper bounds on every wait of a session, in seconds.

    Attributes:
        connect_s: TCP + TLS + WebSocket handshake.
        ready_s: first ``session.update`` to ``session.ready``; the service gives
            up on its own agent after 10 s (``agent_timeout``; docs/providers.md,
            "Voice Agent: protocol"), so this leaves it room to say so.
        reply_start_s: ``reply.create`` to the first reply event (LLM latency).
        event_gap_s: longest silence between two events of a reply.
        reply_s: a whole reply, however it trickles in (including the time the
            caller's ``on_audio`` takes to pace it out).
        end_s: ``session.end`` to ``session.ended``.
        close_s: the WebSocket closing handshake.
    """

    connect_s: float = 10.0
    ready_s: float = 15.0
    reply_start_s: float = 20.0
    event_gap_s: float = 10.0
    reply_s: float = 600.0
    end_s: float = 5.0
    close_s: float = 2.0
