"""The transcript store's writes: meetings, participants, stream sessions, turns and notes.

What a recording writes as it goes, each call one short transaction (see
:class:`storage.store_base.StoreBase`); the statements shared with the
companion modules are in :mod:`storage.writes`. Every change a live stream
must see is written with its event in the same transaction (:mod:`storage.events`).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from recorder.errors import NotFoundError
from storage.events import record_meeting_event, record_turn_events
from storage.models import MeetingRow, NoteRow, ParticipantRow, StreamSessionRow
from storage.records import MEETING_STATUSES, SessionClosed, SessionOpened, TurnRecord
from storage.rows import clean_optional, storable_text
from storage.store_base import StoreBase
from storage.writes import (
    mark_abandoned_meetings,
    see_participants,
    upsert_participant,
    upsert_turn_rows,
)

__all__ = ["DEFAULT_STALE_AFTER", "StoreWrites"]

log = logging.getLogger("storage.store")

# A 'recording' meeting of another host (or of an unknown process) is only
# declared interrupted once nothing was written to it for this long, so a
# restart on one machine of a fleet never closes a live meeting on another.
DEFAULT_STALE_AFTER = timedelta(hours=6)
_HOST = socket.gethostname()

# The statements a recording runs again and again, built once: building one costs
# more than running it once SQLAlchemy has cached its compiled form.
_HEARTBEAT = (
    update(MeetingRow)
    .where(MeetingRow.id == bindparam("meeting_id_"))
    .values(heartbeat_at=bindparam("heartbeat_at"))
)
_OPEN_SESSION = insert(StreamSessionRow).returning(StreamSessionRow.id)
_OPEN_SESSIONS = insert(StreamSessionRow).returning(
    StreamSessionRow.id, sort_by_parameter_order=True
)
_UPDATE_SESSION = update(StreamSessionRow).where(StreamSessionRow.id == bindparam("session_id_"))
_SESSION_IDS = select(StreamSessionRow.id).where(
    StreamSessionRow.id.in_(bindparam("session_ids_", expanding=True))
)


class StoreWrites(StoreBase):
    """The writes of :class:`storage.store.TranscriptStore`."""

    # -- meetings -------------------------------------------------------------

    async def start_meeting(self, channel: str, bot_uid: int, started_at: datetime) -> int:
        """Record that a meeting started; returns its id (status ``recording``)."""

        async def work(connection: AsyncConnection) -> int:
            result = await connection.execute(
                insert(MeetingRow)
                .values(
                    channel=storable_text(channel),
                    bot_uid=bot_uid,
                    started_at=started_at,
                    status="recording",
                    host=_HOST,
                    pid=os.getpid(),
                    heartbeat_at=started_at,
                )
                .returning(MeetingRow.id)
            )
            meeting_id = int(result.scalar_one())
            await record_meeting_event(
                connection,
                self._dialect,
                meeting_id,
                "meeting.started",
                {"channel": channel, "status": "recording", "at": started_at.isoformat()},
            )
            return meeting_id

        return await self._transaction(work, write=True)

    async def resume_meeting(self, meeting_id: int) -> datetime:
        """Continue a meeting another process recorded: ``recording`` again, owned by us.

        Returns:
            When the meeting started (its clock's origin).

        Raises:
            NotFoundError: no such meeting.
        """

        async def work(connection: AsyncConnection) -> datetime:
            # The row first, then the events' advisory lock, in the order every writer
            # that marks a meeting abandoned takes them: the other order deadlocked with
            # a recorder closing the dead holder's meetings as this one resumed it.
            found = (
                await connection.execute(
                    select(MeetingRow.started_at, MeetingRow.status)
                    .where(MeetingRow.id == meeting_id)
                    .with_for_update()
                )
            ).first()
            if found is None:
                raise NotFoundError(f"no meeting with id {meeting_id}")
            started: datetime = found.started_at
            previous = found.status
            now = datetime.now(UTC)
            # Live streams learn that the meeting goes on (after a takeover, a
            # meeting.ended "interrupted" may have been sent; this follows it).
            await record_meeting_event(
                connection,
                self._dialect,
                meeting_id,
                "meeting.resumed",
                {"status": "recording", "previous_status": previous, "at": now.isoformat()},
            )
            await connection.execute(
                update(MeetingRow)
                .where(MeetingRow.id == meeting_id)
                .values(
                    status="recording",
                    ended_at=None,
                    host=_HOST,
                    pid=os.getpid(),
                    heartbeat_at=now,
                )
            )
            return started

        return await self._transaction(work, write=True)

    async def heartbeat(self, meeting_id: int, at: datetime) -> None:
        """Note that the meeting's recorder is alive (see :meth:`mark_interrupted_meetings`)."""

        async def work(connection: AsyncConnection) -> None:
            await connection.execute(_HEARTBEAT, {"meeting_id_": meeting_id, "heartbeat_at": at})

        await self._transaction(work, write=True)

    async def mark_interrupted_meetings(
        self,
        channel: str | None = None,
        *,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
        now: datetime | None = None,
    ) -> int:
        """Mark meetings left ``recording`` by a killed process as ``interrupted``.

        A meeting counts as abandoned when it was started on this host by a
        process that no longer exists, or, wherever it was started, when
        nothing was written to it for ``stale_after`` (its heartbeat: the last
        turn, participant or :meth:`heartbeat`). A meeting of this very
        process is never marked. So on a fleet sharing one
        PostgreSQL database, starting a recorder never closes a live meeting of
        another machine. Its ``ended_at`` becomes the last heartbeat.

        Args:
            channel: only meetings of this channel.
            stale_after: how long a meeting may go without writes before any
                host may close it.
            now: the current time (tests pass one).

        Returns:
            How many meetings were marked.
        """
        now = now or datetime.now(UTC)

        async def work(connection: AsyncConnection) -> int:
            return await mark_abandoned_meetings(
                connection, channel=channel, stale_after=stale_after, now=now, host=_HOST
            )

        count = await self._transaction(work, write=True)
        if count:
            log.info("= marked %d abandoned meeting(s) interrupted", count)
        return count

    async def finish_meeting(
        self, meeting_id: int, ended_at: datetime, status: str = "completed"
    ) -> None:
        """Record the end of a meeting.

        Raises:
            ValueError: ``status`` is not a finished one (completed, partial, failed,
                interrupted).
            NotFoundError: no such meeting.
        """
        if status not in MEETING_STATUSES or status == "recording":
            raise ValueError(
                f"a finished meeting is completed, partial, failed or interrupted, not {status!r}"
            )

        async def work(connection: AsyncConnection) -> None:
            result = await connection.execute(
                update(MeetingRow)
                .where(MeetingRow.id == meeting_id)
                .values(ended_at=ended_at, status=status, heartbeat_at=ended_at)
            )
            if result.rowcount == 0:
                raise NotFoundError(f"no meeting with id {meeting_id}")
            await record_meeting_event(
                connection,
                self._dialect,
                meeting_id,
                "meeting.ended",
                {"status": status, "at": ended_at.isoformat()},
            )

        await self._transaction(work, write=True)

    # -- participants and stream sessions -------------------------------------

    async def record_participant(
        self,
        meeting_id: int,
        uid: int,
        seen_at: datetime,
        display_name: str | None = None,
        *,
        presence: str | None = None,
    ) -> int:
        """Add a participant, or update when it was last seen (and its name, if given).

        ``presence`` (``joined`` or ``left``) also records that event for live streams.

        Returns:
            The participant's row id.

        Raises:
            NotFoundError: no such meeting.
        """

        async def work(connection: AsyncConnection) -> int:
            # upsert_participant checks the meeting (only when the participant is new).
            participant_id = await upsert_participant(
                connection, self._dialect, meeting_id, uid, seen_at, display_name
            )
            if presence is not None:
                await record_meeting_event(
                    connection,
                    self._dialect,
                    meeting_id,
                    f"participant.{presence}",
                    {"uid": uid, "display_name": display_name, "at": seen_at.isoformat()},
                )
            return participant_id

        return await self._transaction(work, write=True)

    async def set_display_name(self, meeting_id: int, uid: int, name: str | None) -> None:
        """Name a participant (None clears the name).

        Raises:
            NotFoundError: the meeting has no participant with this uid.
        """

        async def work(connection: AsyncConnection) -> None:
            result = await connection.execute(
                update(ParticipantRow)
                .where(ParticipantRow.meeting_id == meeting_id, ParticipantRow.uid == uid)
                .values(display_name=clean_optional(name))
            )
            if result.rowcount == 0:
                raise NotFoundError(
                    f"meeting {meeting_id} has no participant with uid {uid}; "
                    f"see 'recorder show {meeting_id}' for who took part"
                )

        await self._transaction(work, write=True)

    async def open_stream_session(
        self,
        meeting_id: int,
        uid: int,
        opened_at: datetime,
        provider_session_id: str | None = None,
    ) -> int:
        """Record that an STT socket opened for a participant; returns the session id.

        The participant is recorded too if it was not yet.

        Raises:
            NotFoundError: no such meeting.
        """
        opened = SessionOpened(meeting_id, uid, opened_at, provider_session_id)
        return (await self.open_stream_sessions([opened]))[0]

    async def open_stream_sessions(self, opened: Sequence[SessionOpened]) -> list[int]:
        """Record STT sockets that opened, in one transaction; their session ids, in order.

        A recording opens a socket per turn of every speaker: the batch costs
        three or four statements however many sockets it holds
        (:func:`see_participants`, then one INSERT of every row), where one at a
        time cost two or three each.

        Raises:
            NotFoundError: no such meeting.
        """
        if not opened:
            return []

        async def work(connection: AsyncConnection) -> list[int]:
            participants = await see_participants(
                connection, self._dialect, [(o.meeting_id, o.uid, o.opened_at) for o in opened]
            )
            rows = [
                {
                    "meeting_id": o.meeting_id,
                    "participant_id": participants[o.meeting_id, o.uid],
                    "provider_session_id": clean_optional(o.provider_session_id),
                    "opened_at": o.opened_at,
                    "audio_seconds": 0.0,
                }
                for o in opened
            ]
            if len(rows) == 1:
                return [int((await connection.execute(_OPEN_SESSION, rows[0])).scalar_one())]
            if self._dialect != "sqlite":
                return [int(i) for i in (await connection.execute(_OPEN_SESSIONS, rows)).scalars()]
            # SQLite returns the rows in no set order, and SQLAlchemy keeps the order by
            # sending one INSERT a row. But one INSERT gives its rows rowids one above the
            # largest, in the order of its VALUES (https://www.sqlite.org/autoinc.html):
            # ascending ids are the rows in order.
            return sorted(int(i) for i in (await connection.execute(_OPEN_SESSION, rows)).scalars())

        return await self._transaction(work, write=True)

    async def set_provider_session_id(self, session_id: int, provider_session_id: str) -> None:
        """Store the provider's session id (``Begin.id``) once the socket has it."""
        await self._update_session(
            session_id, provider_session_id=clean_optional(provider_session_id)
        )

    async def close_stream_session(
        self,
        session_id: int,
        *,
        closed_at: datetime,
        audio_seconds: float,
        close_code: int | None = None,
        close_reason: str | None = None,
        provider_session_id: str | None = None,
    ) -> None:
        """Record that an STT socket closed: the billed interval and why it closed.

        Raises:
            NotFoundError: no such stream session.
        """
        closed = SessionClosed(
            session_id, closed_at, audio_seconds, close_code, close_reason, provider_session_id
        )
        await self.close_stream_sessions([closed])

    async def close_stream_sessions(self, closed: Sequence[SessionClosed]) -> None:
        """Record STT sockets that closed, in one transaction (one UPDATE for them all).

        Raises:
            NotFoundError: one of them names no stream session.
        """
        # An executemany needs the same columns in every row: with and without the
        # provider's id (known to the close when Begin came late) go apart.
        groups: dict[bool, list[dict[str, Any]]] = {}
        for close in closed:
            values: dict[str, Any] = {
                "session_id_": close.session_id,
                "closed_at": close.closed_at,
                "audio_seconds": float(close.audio_seconds),
                "close_code": close.close_code,
                "close_reason": clean_optional(close.close_reason),
            }
            if close.provider_session_id is not None:
                values["provider_session_id"] = storable_text(close.provider_session_id)
            groups.setdefault(close.provider_session_id is not None, []).append(values)
        if not groups:
            return

        async def work(connection: AsyncConnection) -> None:
            for rows in groups.values():
                await self._update_sessions(connection, rows)

        await self._transaction(work, write=True)

    async def _update_session(self, session_id: int, **values: Any) -> None:
        async def work(connection: AsyncConnection) -> None:
            await self._update_sessions(connection, [{"session_id_": session_id, **values}])

        await self._transaction(work, write=True)

    @staticmethod
    async def _update_sessions(connection: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        """One UPDATE of stream sessions; the columns set are the keys of ``rows``."""
        result = await connection.execute(_UPDATE_SESSION, rows[0] if len(rows) == 1 else rows)
        counted = len(rows) == 1 or connection.dialect.supports_sane_multi_rowcount
        if counted and result.rowcount == len(rows):
            return
        # asyncpg counts no rows of a batch, and a short count names no session: look.
        wanted = {row["session_id_"] for row in rows}
        found = set(await connection.scalars(_SESSION_IDS, {"session_ids_": list(wanted)}))
        if absent := sorted(wanted - found):
            raise NotFoundError(f"no stream session with id {', '.join(map(str, absent))}")

    # -- turns and notes ------------------------------------------------------

    async def upsert_turns(self, records: Sequence[TurnRecord]) -> None:
        """Store final turns in one transaction; a repeated (session, turn order) is replaced.

        Within a batch and across batches the later record wins (a formatted
        final replacing the unformatted one).

        Raises:
            NotFoundError: a record names a stream session that does not exist.
            StorageError: a record's meeting or uid does not match its session.
        """
        if not records:
            return

        async def work(connection: AsyncConnection) -> None:
            await upsert_turn_rows(connection, self._dialect, records)
            await record_turn_events(connection, self._dialect, records)

        await self._transaction(work, write=True)

    async def add_note(
        self,
        meeting_id: int,
        kind: str,
        text: str,
        *,
        created_at: datetime,
        spoken: bool = False,
        meta: dict[str, Any] | None = None,
    ) -> int:
        """Attach a note (a recap, ...) to a meeting; returns its id.

        Raises:
            NotFoundError: no such meeting.
        """

        async def work(connection: AsyncConnection) -> int:
            await self.require_meeting(connection, meeting_id)
            result = await connection.execute(
                insert(NoteRow)
                .values(
                    meeting_id=meeting_id,
                    kind=storable_text(kind),
                    text=storable_text(text),
                    created_at=created_at,
                    spoken=spoken,
                    meta=dict(meta or {}),
                )
                .returning(NoteRow.id)
            )
            return int(result.scalar_one())

        return await self._transaction(work, write=True)

    async def set_note_spoken(self, note_id: int, spoken: bool = True) -> None:
        """Record whether a note was spoken into the channel.

        Raises:
            NotFoundError: no such note.
        """

        async def work(connection: AsyncConnection) -> None:
            result = await connection.execute(
                update(NoteRow).where(NoteRow.id == note_id).values(spoken=spoken)
            )
            if result.rowcount == 0:
                raise NotFoundError(f"no note with id {note_id}")

        await self._transaction(work, write=True)
