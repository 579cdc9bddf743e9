"""The statements behind the store's writes: upserts of participants and turns.

Each function works on a connection (and transaction) the caller owns and
uses the dialect's ``INSERT .. ON CONFLICT DO UPDATE``.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql.base import PGDialect as pg_dialect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.dialects.sqlite.base import SQLiteDialect as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from recorder.errors import NotFoundError, StorageError
from storage.events import record_meeting_event
from storage.models import MeetingRow, ParticipantRow, StreamSessionRow, TurnRow
from storage.records import TurnRecord
from storage.rows import clean_optional, storable_text, words_to_json

__all__ = [
    "BEAT_EVERY",
    "Heartbeats",
    "insert_for",
    "is_pid_alive",
    "mark_abandoned_meetings",
    "require_meeting",
    "see_participants",
    "upsert_participant",
    "upsert_turn_rows",
]

# Rows per INSERT statement: keeps SQLite under its bound-variable limit.
_TURN_CHUNK = 500


def insert_for(dialect: str, model: Any) -> Any:
    """The dialect's INSERT construct (both offer ``on_conflict_do_update``)."""
    return (sqlite_insert if dialect == "sqlite" else pg_insert)(model)


def is_pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # no permission to signal it: it exists
        return True
    return True


async def upsert_participant(
    connection: AsyncConnection,
    dialect: str,
    meeting_id: int,
    uid: int,
    seen_at: datetime,
    display_name: str | None,
) -> int:
    """Add a participant or move its last_seen forward; returns its row id.

    Also counts as a heartbeat of the meeting (see :class:`Heartbeats`).

    Raises:
        NotFoundError: no such meeting.
    """
    # A participant is seen many times (every socket it opens) and added once: the
    # UPDATE first, a statement SQLAlchemy compiles once (it never caches the
    # dialects' INSERT .. ON CONFLICT), which stays for the first sighting (and a race).
    params = {"meeting_id_": meeting_id, "uid_": uid, "seen_at_": seen_at}
    if display_name is not None:
        params["display_name"] = clean_optional(display_name)
    seen_again = _seen_again(dialect, display_name is not None)
    found = (await connection.execute(seen_again, params)).scalar_one_or_none()
    if found is not None:
        # The participant's row exists, so does its meeting: no lookup needed.
        await _beat(connection, [meeting_id], seen_at)
        return int(found)
    await require_meeting(connection, meeting_id)
    first_sight = {
        "meeting_id": meeting_id,
        "uid": uid,
        "display_name": clean_optional(display_name),
        "first_seen": seen_at,
        "last_seen": seen_at,
    }
    statement = _first_sight(dialect, display_name is not None)
    participant_id = int((await connection.execute(statement, first_sight)).scalar_one())
    await _beat(connection, [meeting_id], seen_at)
    return participant_id


async def see_participants(
    connection: AsyncConnection,
    dialect: str,
    sightings: Sequence[tuple[int, int, datetime]],
) -> dict[tuple[int, int], int]:
    """:func:`upsert_participant` for many ``(meeting_id, uid, seen_at)``: their row ids.

    Participants already stored (every socket after a speaker's first) cost one
    SELECT and one UPDATE for the whole batch, not a statement each; a new one
    is added on its own first, seen first at its earliest sighting.

    Raises:
        NotFoundError: no such meeting.
    """
    earliest: dict[tuple[int, int], datetime] = {}
    latest: dict[tuple[int, int], datetime] = {}
    for meeting_id, uid, seen_at in sightings:
        key = (meeting_id, uid)
        if key not in earliest or seen_at < earliest[key]:
            earliest[key] = seen_at
        if key not in latest or seen_at > latest[key]:
            latest[key] = seen_at
    if len(latest) == 1 and len(sightings) == 1:
        ((meeting_id, uid), seen_at), *_ = latest.items()
        participant_id = await upsert_participant(
            connection, dialect, meeting_id, uid, seen_at, None
        )
        return {(meeting_id, uid): participant_id}
    uids: dict[int, list[int]] = {}
    for meeting_id, uid in latest:
        uids.setdefault(meeting_id, []).append(uid)
    ids: dict[tuple[int, int], int] = {}
    for meeting_id, wanted in uids.items():
        found = await connection.execute(
            _PARTICIPANT_IDS, {"meeting_id_": meeting_id, "uids_": wanted}
        )
        ids.update(((meeting_id, uid), participant_id) for uid, participant_id in found)
    for key in latest.keys() - ids.keys():  # first sightings (each checks the meeting)
        ids[key] = await upsert_participant(connection, dialect, *key, earliest[key], None)
    await connection.execute(
        _seen_again_many(dialect),
        [{"meeting_id_": m, "uid_": u, "seen_at_": at} for (m, u), at in latest.items()],
    )
    await _beat(connection, list(uids), max(latest.values()))
    return ids


@functools.cache
def _first_sight(dialect: str, with_name: bool) -> Any:
    """The upsert of a participant not seen yet (built once per dialect and variant)."""
    statement = insert_for(dialect, ParticipantRow)
    latest = func.max if dialect == "sqlite" else func.greatest
    on_conflict: dict[str, Any] = {
        "last_seen": latest(ParticipantRow.last_seen, statement.excluded.last_seen)
    }
    if with_name:
        on_conflict["display_name"] = statement.excluded.display_name
    return statement.on_conflict_do_update(
        index_elements=[ParticipantRow.meeting_id, ParticipantRow.uid], set_=on_conflict
    ).returning(ParticipantRow.id)


@functools.cache
def _seen_again(dialect: str, with_name: bool) -> Any:
    """The UPDATE of a participant seen again (built once: building costs more than running)."""
    statement = _seen_again_many(dialect)
    if with_name:
        name = bindparam("display_name", type_=ParticipantRow.display_name.type)
        statement = statement.values(display_name=name)
    return statement.returning(ParticipantRow.id)


@functools.cache
def _seen_again_many(dialect: str) -> Any:
    """:func:`_seen_again` for a batch (no RETURNING: an UPDATE's executemany has none)."""
    latest = func.max if dialect == "sqlite" else func.greatest
    seen = bindparam("seen_at_", type_=ParticipantRow.last_seen.type)
    return (
        update(ParticipantRow)
        .where(
            ParticipantRow.meeting_id == bindparam("meeting_id_"),
            ParticipantRow.uid == bindparam("uid_"),
        )
        .values(last_seen=latest(ParticipantRow.last_seen, seen))
    )


_PARTICIPANT_IDS = select(ParticipantRow.uid, ParticipantRow.id).where(
    ParticipantRow.meeting_id == bindparam("meeting_id_"),
    ParticipantRow.uid.in_(bindparam("uids_", expanding=True)),
)
_MEETING_ID = select(MeetingRow.id).where(MeetingRow.id == bindparam("meeting_id_"))
_BEAT = (
    update(MeetingRow)
    .where(MeetingRow.id == bindparam("meeting_id_"))
    .values(heartbeat_at=bindparam("heartbeat_at"))
)
_BEAT_ALL = (
    update(MeetingRow)
    .where(MeetingRow.id.in_(bindparam("meeting_ids_", expanding=True)))
    .values(heartbeat_at=bindparam("heartbeat_at"))
)
_TURN_SESSIONS = (
    select(
        StreamSessionRow.id,
        StreamSessionRow.meeting_id,
        StreamSessionRow.participant_id,
        ParticipantRow.uid,
    )
    .join(ParticipantRow, ParticipantRow.id == StreamSessionRow.participant_id)
    .where(StreamSessionRow.id.in_(bindparam("session_ids_", expanding=True)))
)


async def require_meeting(connection: AsyncConnection, meeting_id: int) -> None:
    """Check, inside a transaction, that the meeting exists.

    Raises:
        NotFoundError: no such meeting.
    """
    found = await connection.scalar(_MEETING_ID, {"meeting_id_": meeting_id})
    if found is None:
        raise NotFoundError(f"no meeting with id {meeting_id}")


#: How often at most a participant or turn write beats its meeting. Readers take a
#: meeting for dead after ``storage.status.STALE_HEARTBEAT`` (minutes) without one, and
#: the recorder beats every minute besides: a beat skipped leaves one this much older.
BEAT_EVERY = timedelta(seconds=5)


class Heartbeats:
    """The meetings' heartbeats a store's participant and turn writes committed.

    Every such write beat its meeting: one more statement per socket opened. Now
    a write skips the beat when one at most :data:`BEAT_EVERY` older (or newer)
    was committed, or is in its own transaction. A beat counts once its
    transaction commits (:meth:`transaction`): a rolled-back one never did.
    """

    def __init__(self, every: timedelta = BEAT_EVERY) -> None:
        self._every = every
        self._committed: dict[int, datetime] = {}

    @contextmanager
    def transaction(self) -> Iterator[dict[int, datetime]]:
        """The beats of one transaction; the caller commits them with :meth:`committed`."""
        beats: dict[int, datetime] = {}
        token = _BEATS.set((self, beats))
        try:
            yield beats
        finally:
            _BEATS.reset(token)

    def committed(self, beats: dict[int, datetime]) -> None:
        """The transaction that made ``beats`` committed."""
        for meeting_id, at in beats.items():
            last = self._committed.get(meeting_id)
            if last is None or at > last:
                self._committed[meeting_id] = at

    def due(
        self, meeting_ids: Sequence[int], at: datetime, beats: dict[int, datetime]
    ) -> list[int]:
        """Which of ``meeting_ids`` to beat at ``at`` (noted in ``beats``, the transaction's)."""
        due = []
        for meeting_id in meeting_ids:
            last = max(
                (t for t in (self._committed.get(meeting_id), beats.get(meeting_id)) if t),
                default=None,
            )
            if last is None or at - last >= self._every:
                due.append(meeting_id)
                beats[meeting_id] = at
        return due


# The store transaction under way in this task: its Heartbeats and the beats it made.
_BEATS: ContextVar[tuple[Heartbeats, dict[int, datetime]] | None] = ContextVar(
    "storage_transaction_beats", default=None
)


async def _beat(connection: AsyncConnection, meeting_ids: Sequence[int], at: datetime) -> None:
    """Beat the meetings at ``at``, those not beaten lately (outside a store's transaction: all)."""
    current = _BEATS.get()
    if current is not None:
        heartbeats, beats = current
        meeting_ids = heartbeats.due(meeting_ids, at, beats)
    if len(meeting_ids) == 1:
        await connection.execute(_BEAT, {"meeting_id_": meeting_ids[0], "heartbeat_at": at})
    elif meeting_ids:
        await connection.execute(_BEAT_ALL, {"meeting_ids_": list(meeting_ids), "heartbeat_at": at})


async def upsert_turn_rows(
    connection: AsyncConnection, dialect: str, records: Sequence[TurnRecord]
) -> None:
    """Insert or replace turns by (stream_session_id, turn_order); the later record wins.

    Raises:
        NotFoundError: a record names a stream session that does not exist.
        StorageError: a record's meeting or uid does not match its session.
    """
    latest: dict[tuple[int, int], TurnRecord] = {}
    for record in records:
        latest[(record.stream_session_id, record.turn_order)] = record
    session_ids = sorted({record.stream_session_id for record in latest.values()})
    sessions = {
        row.id: row
        for row in (await connection.execute(_TURN_SESSIONS, {"session_ids_": session_ids})).all()
    }
    rows = []
    for record in latest.values():
        session = sessions.get(record.stream_session_id)
        if session is None:
            raise NotFoundError(f"no stream session with id {record.stream_session_id}")
        if (session.meeting_id, session.uid) != (record.meeting_id, record.uid):
            raise StorageError(
                f"turn {record.turn_order} of stream session {session.id} names meeting "
                f"{record.meeting_id} uid {record.uid}, but the session belongs to "
                f"meeting {session.meeting_id} uid {session.uid}"
            )
        rows.append(
            {
                "meeting_id": record.meeting_id,
                "participant_id": session.participant_id,
                "stream_session_id": record.stream_session_id,
                "turn_order": record.turn_order,
                "start_ms": record.start_ms,
                "end_ms": record.end_ms,
                "text": storable_text(record.text),
                "words": words_to_json(record.words),
                "end_of_turn_confidence": record.end_of_turn_confidence,
                "language": clean_optional(record.language),
                "source": record.source,
                "revision": record.revision,
            }
        )
    statement = _turn_upsert(dialect)
    for start in range(0, len(rows), _TURN_CHUNK):
        await connection.execute(statement, rows[start : start + _TURN_CHUNK])
    meeting_ids = sorted({record.meeting_id for record in latest.values()})
    await _beat(connection, meeting_ids, datetime.now(UTC))


_TURN_COLUMNS = (
    "meeting_id",
    "participant_id",
    "stream_session_id",
    "turn_order",
    "start_ms",
    "end_ms",
    "text",
    "words",
    "end_of_turn_confidence",
    "language",
    "source",
    "revision",
)


@functools.cache
def _turn_upsert(dialect: str) -> Any:
    """Insert or replace turns, as text SQL with typed parameters, built once per dialect.

    SQLAlchemy never caches an INSERT .. ON CONFLICT's compiled form: compiled on every
    batch of turns it cost about 1 ms of CPU. Its text, with the columns' types on its
    parameters, is cached like any statement.
    """
    statement = insert_for(dialect, TurnRow).values(
        {name: bindparam(name) for name in _TURN_COLUMNS}
    )
    replaced = _TURN_COLUMNS[4:]  # all but the key and the row's owners
    upsert = statement.on_conflict_do_update(
        index_elements=[TurnRow.stream_session_id, TurnRow.turn_order],
        set_={name: statement.excluded[name] for name in replaced},
    )
    named = (sqlite_dialect if dialect == "sqlite" else pg_dialect)(paramstyle="named")
    # PostgreSQL's dialect renders a JSON parameter as ":words::JSON", which text() would
    # not read as a parameter; CAST says the same.
    compiled = str(upsert.compile(dialect=named, for_executemany=True))
    sql = re.sub(r":(\w+)::(\w+)", r"CAST(:\1 AS \2)", compiled)
    columns = TurnRow.__table__.c
    return text(sql).bindparams(
        *(bindparam(name, type_=columns[name].type) for name in _TURN_COLUMNS)
    )


async def mark_abandoned_meetings(
    connection: AsyncConnection,
    *,
    channel: str | None,
    stale_after: timedelta,
    now: datetime,
    host: str,
) -> int:
    """Set ``interrupted`` on 'recording' meetings whose recorder is gone.

    Gone means: started on ``host`` by a process that no longer exists, or,
    on any host, no heartbeat for ``stale_after``. A meeting of this very
    process is never touched. ``ended_at`` becomes the last heartbeat.

    Returns:
        How many meetings were marked.
    """
    query = select(
        MeetingRow.id,
        MeetingRow.host,
        MeetingRow.pid,
        MeetingRow.started_at,
        MeetingRow.heartbeat_at,
    ).where(MeetingRow.status == "recording")
    if channel is not None:
        query = query.where(MeetingRow.channel == channel)
    me = os.getpid()
    marked = 0
    for row in (await connection.execute(query)).all():
        last = row.heartbeat_at or row.started_at
        if row.host == host and row.pid == me:
            continue
        is_dead = row.host == host and row.pid is not None and not is_pid_alive(row.pid)
        if is_dead or now - last >= stale_after:
            await connection.execute(
                update(MeetingRow)
                .where(MeetingRow.id == row.id, MeetingRow.status == "recording")
                .values(status="interrupted", ended_at=last)
            )
            await record_meeting_event(
                connection,
                connection.dialect.name,
                row.id,
                "meeting.ended",
                {"status": "interrupted", "at": last.isoformat()},
            )
            marked += 1
    return marked
