"""Each STT socket's stream-session row (the billing record) and its final turns, to the writer.

:class:`SocketRecords` queues a socket's row when it opens (named by a ref until
the writer has stored it) and completes it when it closes, and queues each
final turn with its socket's ref, so the writer stores the row first and fills
in its id. It also counts what the report shows: turns, sockets, billed time
and the speech the finals carried.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from recorder.persist import session_closed_write, session_write
from recorder.pipeline import FinalTurn
from recorder.stt.events import SocketClosed
from recorder.writer import TranscriptWriter
from storage.records import TurnRecord, Word

__all__ = ["SocketRecords"]


class SocketRecords:
    """The stream sessions and final turns of one recording.

    Args:
        writer: the recording's one writer.
    """

    def __init__(self, writer: TranscriptWriter) -> None:
        self._writer = writer
        self.meeting_id: int | None = None
        # Each socket's stream-session row, named by a ref until the writer stores it.
        self._refs: dict[tuple[int, tuple[int, int]], str] = {}
        self._opened_at: dict[str, datetime] = {}
        self._turn_spans: dict[tuple[int, tuple[int, int], int], int] = {}
        self.turns = 0
        self.billed_seconds = 0.0
        self.sessions = 0

    @property
    def has_sockets(self) -> bool:
        """Whether any socket has opened (or carried a final) in this recording."""
        return bool(self._refs)

    @property
    def speech_ms(self) -> float:
        """Speech the finals carried (each turn from its first word to its last), ms."""
        return float(sum(self._turn_spans.values()))

    def put_final(self, turn: FinalTurn) -> None:
        """Queue a final turn; the writer stores it after its socket's row."""
        assert self.meeting_id is not None
        record = TurnRecord(
            meeting_id=self.meeting_id,
            uid=turn.uid,
            stream_session_id=0,  # filled in by the writer from the socket's row
            turn_order=turn.turn_order,
            start_ms=turn.start_ms,
            end_ms=turn.end_ms,
            text=turn.text,
            words=tuple(
                Word(w.text, int(round(w.start_ms)), int(round(w.end_ms)), w.confidence)
                for w in turn.words
            ),
            end_of_turn_confidence=turn.end_of_turn_confidence,
            language=turn.language,
        )
        self._writer.put(record, session=self.opened(turn.uid, turn.socket_key, None))
        self.turns += 1
        # A formatted final repeats its turn_order: the span is counted once.
        self._turn_spans[(turn.uid, turn.socket_key, turn.turn_order)] = turn.end_ms - turn.start_ms

    def opened(self, uid: int, key: tuple[int, int], provider_id: str | None) -> str:
        """The ref of a socket's stream-session row (its write queued on first need)."""
        ref = self._refs.get((uid, key))
        if ref is None:
            assert self.meeting_id is not None
            ref = self._refs[(uid, key)] = f"session-{uid}-{key[0]}-{key[1]}"
            opened_at = self._opened_at[ref] = datetime.now(UTC)
            self._writer.submit(session_write(ref, self.meeting_id, uid, opened_at, provider_id))
            self.sessions += 1
        return ref

    def closed(self, uid: int, key: tuple[int, int], event: SocketClosed) -> None:
        """A socket closed: complete its row (what it billed, how it closed)."""
        ref = self._refs.get((uid, key))
        if ref is None:
            return
        self.billed_seconds += event.open_seconds
        self._writer.submit(
            session_closed_write(
                ref,
                closed_at=self._opened_at[ref] + timedelta(seconds=event.open_seconds),
                audio_seconds=event.audio_seconds,
                close_code=event.close_code,
                close_reason=event.reason or None,
            )
        )
