"""Each STT socket's stream-session row (the billing record) and its final turns, stored.

:class:`SocketRecords` stores a socket's row when it opens and completes it when it
closes, and hands each final turn to the one
:class:`~recorder.writer.TranscriptWriter` with its socket's row id. While the
database is away a turn waits for its row off the stream's path, so the
stream's later finals are not held up.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from recorder.persist import DatabaseGuard
from recorder.pipeline import FinalTurn
from recorder.stt.events import SocketClosed
from recorder.writer import TranscriptWriter
from storage.records import TurnRecord, Word
from storage.store import TranscriptStore

__all__ = ["SocketRecords"]


class SocketRecords:
    """The stream sessions and final turns of one recording.

    Args:
        store: where the rows go.
        guard: retries writes while the database is away.
        writer: the one turn writer.
        spawn: runs a background task the recording waits for at its end.
    """

    def __init__(
        self,
        store: TranscriptStore,
        guard: DatabaseGuard,
        writer: TranscriptWriter,
        spawn: Callable[[Coroutine[Any, Any, None], str], None],
    ) -> None:
        self._store = store
        self._guard = guard
        self._writer = writer
        self._spawn = spawn
        self.meeting_id: int | None = None
        self._turn_spans: dict[tuple[int, tuple[int, int], int], int] = {}
        self._session_ids: dict[tuple[int, tuple[int, int]], int] = {}
        self.tasks: dict[tuple[int, tuple[int, int]], asyncio.Task[int]] = {}
        self._session_opened_at: dict[int, datetime] = {}
        self.turns = 0
        self.billed_seconds = 0.0
        self.sessions = 0

    @property
    def speech_ms(self) -> float:
        """Speech the finals carried (each turn from its first word to its last), ms."""
        return float(sum(self._turn_spans.values()))

    def put_final(self, turn: FinalTurn) -> None:
        """Store a final turn (once its socket's row exists)."""
        assert self.meeting_id is not None
        record = TurnRecord(
            meeting_id=self.meeting_id,
            uid=turn.uid,
            stream_session_id=0,  # filled in once the socket's record exists
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
        session = self.opened(turn.uid, turn.socket_key, None)
        if session.done() and not session.cancelled() and session.exception() is None:
            self._writer.put(dataclasses.replace(record, stream_session_id=session.result()))
        else:
            # The database is away: the turn waits for its socket's record, off the
            # stream's path, so the stream's later finals are not held up.
            self._spawn(self._put_when_recorded(session, record), f"turn-{turn.uid}")
        self.turns += 1
        # A formatted final repeats its turn_order: the span is counted once.
        self._turn_spans[(turn.uid, turn.socket_key, turn.turn_order)] = turn.end_ms - turn.start_ms

    async def _put_when_recorded(self, session: asyncio.Task[int], record: TurnRecord) -> None:
        session_id = await session
        self._writer.put(dataclasses.replace(record, stream_session_id=session_id))

    def opened(self, uid: int, key: tuple[int, int], provider_id: str | None) -> asyncio.Task[int]:
        """The task storing a socket's stream-session row (started on first need)."""
        task = self.tasks.get((uid, key))
        if task is None:
            task = asyncio.create_task(
                self._open_session_record(uid, key, provider_id), name=f"session-{uid}-{key}"
            )
            self.tasks[(uid, key)] = task
        return task

    async def _open_session_record(
        self, uid: int, key: tuple[int, int], provider_id: str | None
    ) -> int:
        assert self.meeting_id is not None
        opened_at = datetime.now(UTC)
        meeting_id = self.meeting_id
        session_id = await self._guard.run(
            lambda: self._store.open_stream_session(
                meeting_id, uid, opened_at, provider_session_id=provider_id
            )
        )
        self._session_ids[(uid, key)] = session_id
        self._session_opened_at[session_id] = opened_at
        self.sessions += 1
        return session_id

    def closed(self, uid: int, key: tuple[int, int], event: SocketClosed) -> None:
        """A socket closed: complete its row (what it billed, how it closed)."""
        session = self.tasks.get((uid, key))
        if session is None:
            return
        self.billed_seconds += event.open_seconds
        self._spawn(self._close_session_record(session, event), f"session-closed-{uid}")

    async def _close_session_record(self, session: asyncio.Task[int], event: SocketClosed) -> None:
        session_id = await session
        opened_at = self._session_opened_at.get(session_id, datetime.now(UTC))
        await self._guard.run(
            lambda: self._store.close_stream_session(
                session_id,
                closed_at=opened_at + timedelta(seconds=event.open_seconds),
                audio_seconds=event.audio_seconds,
                close_code=event.close_code,
                close_reason=event.reason or None,
            )
        )
