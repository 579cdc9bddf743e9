"""What a meeting's stored status means to a reader: a dead recorder's meeting is interrupted.

A meeting stays ``recording`` in the database until its recorder finishes it.
If that process was killed, every reader should say ``interrupted`` at once,
not only after the next recording cleans up: a meeting started on this host by
a process that no longer exists, or whose heartbeat is older than
:data:`STALE_HEARTBEAT`, reads as interrupted.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

__all__ = ["STALE_HEARTBEAT", "effective_status", "is_pid_alive"]

#: A recording meeting's recorder writes its heartbeat every minute
#: (``recorder.bot.HEARTBEAT_S``); three missed beats mean it is gone.
STALE_HEARTBEAT = timedelta(minutes=3)
_HOST = socket.gethostname()


def is_pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # no permission to signal it: it exists
        return True
    return True


def effective_status(
    status: str,
    *,
    host: str | None,
    pid: int | None,
    heartbeat_at: datetime | None,
    now: datetime | None = None,
) -> str:
    """The status a reader should show for a stored meeting row."""
    if status != "recording":
        return status
    if host == _HOST and pid is not None:
        if pid == os.getpid():
            return status  # this very process is recording it
        if not is_pid_alive(pid):
            return "interrupted"
    if heartbeat_at is not None and (now or datetime.now(UTC)) - heartbeat_at > STALE_HEARTBEAT:
        return "interrupted"
    return status
