"""The audio a stream still owes the server, and where each socket's audio came from.

:class:`ResendBuffer` keeps the chunks not yet sent and the chunks sent but
not yet covered by a final turn, so a reconnect can send them again (a new
socket's word times start from its own first byte, docs/providers.md,
"Streaming: messages"). :class:`SocketMap` maps a socket's stream offsets back
to caller audio positions. Pure: no asyncio, no clock. Positions are caller
byte positions (bytes given to ``send()``).
"""

from __future__ import annotations

import collections
from collections.abc import Callable

__all__ = ["ResendBuffer", "SocketMap"]


class ResendBuffer:
    """Unsent and unfinalised audio chunks, each with its caller byte position.

    Args:
        sample_bytes: bytes per sample; cuts fall on whole samples.
        min_bytes: smallest chunk the server accepts (50 ms).
        max_bytes: largest chunk the server accepts (1000 ms).
        silence: the byte value of silence, for padding.
        resend_max_bytes: most sent-but-unfinalised audio kept; older audio can
            no longer be resent (nothing is lost unless a reconnect follows).
        backlog_max_bytes: most unsent audio kept; older audio is dropped.
    """

    def __init__(
        self,
        *,
        sample_bytes: int,
        min_bytes: int,
        max_bytes: int,
        silence: int,
        resend_max_bytes: int,
        backlog_max_bytes: int,
    ) -> None:
        self.pending: collections.deque[tuple[int, bytes]] = collections.deque()
        self.pending_bytes = 0
        self._sent: collections.deque[tuple[int, bytes]] = collections.deque()
        self.sent_bytes = 0
        # Sent audio pushed out of the resend window before a final covered it, as
        # (position, bytes) runs: lost if a reconnect follows, so it is reported then.
        self._forgotten: list[tuple[int, int]] = []
        self._sample_bytes = sample_bytes
        self._min_bytes = min_bytes
        self._max_bytes = max_bytes
        self._silence = silence
        self._resend_max_bytes = resend_max_bytes
        self._backlog_max_bytes = backlog_max_bytes

    @property
    def has_unfinalised(self) -> bool:
        """Whether any audio is unsent, or sent and not covered by a final turn."""
        return bool(self.pending or self._sent)

    def queue(self, pos: int, chunk: bytes) -> tuple[int, int] | None:
        """Queue a chunk to send; return ``(position, bytes)`` dropped from the backlog, if any."""
        self.pending.append((pos, chunk))
        self.pending_bytes += len(chunk)
        if self.pending_bytes <= self._backlog_max_bytes:
            return None
        dropped_from = self.pending[0][0]
        dropped = 0
        while self.pending and self.pending_bytes > self._backlog_max_bytes:
            _, old = self.pending.popleft()
            self.pending_bytes -= len(old)
            dropped += len(old)
        return dropped_from, dropped

    def take(self) -> tuple[int, bytes]:
        """Remove and return the next chunk to send."""
        pos, chunk = self.pending.popleft()
        self.pending_bytes -= len(chunk)
        return pos, chunk

    def mark_sent(self, pos: int, chunk: bytes) -> None:
        """Remember a chunk written to the socket until a final turn covers it."""
        self._sent.append((pos, chunk))
        self.sent_bytes += len(chunk)
        while self.sent_bytes > self._resend_max_bytes:
            old_pos, old = self._sent.popleft()
            self.sent_bytes -= len(old)
            forgotten = self._forgotten
            if forgotten and forgotten[-1][0] + forgotten[-1][1] == old_pos:
                forgotten[-1] = (forgotten[-1][0], forgotten[-1][1] + len(old))
            else:
                forgotten.append((old_pos, len(old)))

    def finalised_up_to(self, end_pos: int) -> None:
        """Forget sent audio before ``end_pos`` (the end of a final turn's last word)."""
        if self._forgotten:
            self._forgotten = [(pos, size) for pos, size in self._forgotten if pos + size > end_pos]
        sent = self._sent
        while sent and sent[0][0] + len(sent[0][1]) <= end_pos:
            self.sent_bytes -= len(sent.popleft()[1])
        if sent and sent[0][0] < end_pos:
            # Cut the chunk the turn ends in: resending the tail of a finalised word
            # would come back as a spurious word fragment.
            pos, chunk = sent[0]
            cut = (end_pos - pos) // self._sample_bytes * self._sample_bytes
            sent[0] = (pos + cut, chunk[cut:])
            self.sent_bytes -= cut

    def forget_sent(self) -> None:
        """Drop the unfinalised sent audio (the server saw it all and went idle)."""
        self._sent.clear()
        self.sent_bytes = 0
        self._forgotten.clear()

    def take_forgotten(self) -> list[tuple[int, int]]:
        """Sent, unfinalised audio that can no longer be resent: ``(position, bytes)`` runs."""
        forgotten, self._forgotten = self._forgotten, []
        return forgotten

    def trim_backlog(
        self,
        max_bytes: int,
        *,
        starts_quiet: Callable[[bytes], bool] | None = None,
        extra_max_bytes: int = 0,
    ) -> list[tuple[int, int]]:
        """Drop the oldest held audio beyond ``max_bytes``; returns the dropped runs.

        With ``starts_quiet``, keep dropping (up to ``extra_max_bytes`` more) until the
        first chunk kept starts quiet, so sending resumes between words, not inside one.
        """
        runs: list[tuple[int, int]] = []
        extra = 0
        while self.pending:
            head = self.pending[0][1]
            if self.pending_bytes - len(head) < max_bytes:
                if not runs or starts_quiet is None or starts_quiet(head):
                    break
                if extra + len(head) > extra_max_bytes or len(self.pending) == 1:
                    break
                extra += len(head)
            pos, chunk = self.pending.popleft()
            self.pending_bytes -= len(chunk)
            if runs and runs[-1][0] + runs[-1][1] == pos:
                runs[-1] = (runs[-1][0], runs[-1][1] + len(chunk))
            else:
                runs.append((pos, len(chunk)))
        return runs

    def rewind(self) -> None:
        """Put the unfinalised sent audio back in front of the queue, in 50-1000 ms chunks."""
        if not self._sent:
            return
        self.pending.extendleft(reversed(self._sent))
        self.pending_bytes += self.sent_bytes
        self.forget_sent()
        pos, head = self.pending[0]
        if len(head) >= self._min_bytes:
            return
        # A head cut by finalised_up_to may be under 50 ms: merge it with the next chunk
        # when contiguous, else pad it with silence (SocketMap accounts for the pad).
        self.pending.popleft()
        if self.pending and self.pending[0][0] == pos + len(head):
            _, nxt = self.pending.popleft()
            if len(head) + len(nxt) <= self._max_bytes:
                self.pending.appendleft((pos, head + nxt))
                return
            self.pending.appendleft((pos + len(head), nxt))
        padded = head + bytes([self._silence]) * (self._min_bytes - len(head))
        self.pending.appendleft((pos, padded))
        self.pending_bytes += len(padded) - len(head)


class SocketMap:
    """Where each stretch of one socket's stream came from in the caller's audio.

    Normally one piece: stream offset 0 is caller position ``start_pos``. A
    gap (a dropped backlog) or a silence pad adds a piece, so a turn after it
    still maps to the right caller position.
    """

    def __init__(self, start_pos: int) -> None:
        self.start_pos = start_pos
        self._pieces: list[tuple[int, int]] = [(0, start_pos)]
        self._socket_bytes = 0
        self._next_pos = start_pos

    @property
    def is_contiguous(self) -> bool:
        """Whether the socket's stream is one unbroken stretch of caller audio."""
        return len(self._pieces) == 1

    def add(self, pos: int, size: int) -> None:
        """Record that the next ``size`` stream bytes are caller audio from ``pos``."""
        if pos != self._next_pos:
            self._pieces.append((self._socket_bytes, pos))
        self._socket_bytes += size
        self._next_pos = pos + size

    def offset_at(self, socket_byte: int) -> int:
        """The caller position of stream offset 0 for the piece holding ``socket_byte``."""
        offset = self._pieces[0][1]
        for start, pos in self._pieces:
            if start > socket_byte:
                break
            offset = pos - start
        return offset
