"""The transcript store: every read and write the bot, the CLI and exports make.

Each method owns one short transaction and returns frozen records from
:mod:`storage.records`, never ORM objects. Text is cleaned the same way on
both databases before it is stored (see :func:`storable_text`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

from sqlalchemy import Select, select, update
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from recorder.errors import MigrationRequired, NotFoundError, RecorderError
from storage import db
from storage.bounded import run_bounded_query
from storage.costs import MeetingCost, select_costs
from storage.errors import is_locked_error, mask_url, raise_translated
from storage.events import record_meeting_event, record_turn_events
from storage.models import MeetingRow, NoteRow, ParticipantRow, StreamSessionRow, TurnRow
from storage.records import (
    MEETING_STATUSES,
    Meeting,
    MeetingSummary,
    QueryResult,
    SearchHit,
    Turn,
    TurnRecord,
)
from storage.rows import (
    clean_optional,
    load_meeting,
    pick_revision,
    storable_text,
    summary_from_row,
    summary_select,
    turn_from_row,
    turn_select,
)
from storage.search import (
    build_count,
    build_search,
    estimate_statement,
    is_dense_estimate,
    make_snippet,
    parse_query,
)
from storage.writes import (
    insert_for,
    mark_abandoned_meetings,
    upsert_participant,
    upsert_turn_rows,
)

__all__ = ["DEFAULT_MAX_ROWS", "DEFAULT_STALE_AFTER", "TranscriptStore", "storable_text"]

log = logging.getLogger("storage.store")

T = TypeVar("T")

# SQLite: after busy_timeout (db.BUSY_TIMEOUT_S) a writer may still meet
# "database is locked" (e.g. a checkpoint); retry the whole short transaction
# a few times before telling the user.
_LOCK_RETRIES = 3
_LOCK_BACKOFF_S = 0.05
# A 'recording' meeting of another host (or of an unknown process) is only
# declared interrupted once nothing was written to it for this long, so a
# restart on one machine of a fleet never closes a live meeting on another.
DEFAULT_STALE_AFTER = timedelta(hours=6)
DEFAULT_MAX_ROWS = 1000
_HOST = socket.gethostname()


class TranscriptStore:
    """Async access to the transcript database.

    Open with :meth:`open` (or ``async with await TranscriptStore.open(url)``)
    and :meth:`close` when done.
    """

    def __init__(self, engine: AsyncEngine, url: URL) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**db.WRITE)
        self._url = url
        self._dialect = url.get_backend_name()

    # -- lifecycle ------------------------------------------------------------

    @classmethod
    async def open(cls, url: str | URL, *, auto_migrate: bool | None = None) -> TranscriptStore:
        """Connect to the database and make sure its schema is current.

        Args:
            url: an async SQLAlchemy URL (``sqlite+aiosqlite://`` or
                ``postgresql+asyncpg://``).
            auto_migrate: migrate to head if behind. Defaults to True only for the
                default SQLite file (and in-memory SQLite); every other database
                needs an explicit ``recorder db upgrade``.

        Raises:
            ConfigError: the URL is malformed or unsupported.
            DatabaseUnreachable: the database cannot be opened or reached.
            MigrationRequired: the schema is behind and auto_migrate is off.
        """
        parsed = db.normalize_url(url)
        if auto_migrate is None:
            auto_migrate = (
                db.is_memory_database(parsed)
                or parsed.render_as_string(hide_password=False) == db.default_database_url()
            )
        path = db.sqlite_path(parsed)
        if path is not None:
            if auto_migrate:
                db.prepare_sqlite_file(parsed)
            elif not path.exists():
                where = mask_url(parsed)
                raise MigrationRequired(
                    f"there is no database at {where} yet; create it with "
                    f"'recorder db upgrade --db {where}'"
                )
        engine = db.create_engine(parsed)
        try:
            await db.ensure_schema(engine, auto_migrate=auto_migrate, url=parsed)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, parsed)

    async def close(self) -> None:
        """Close every pooled connection."""
        await self._engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """The database URL with the password masked."""
        return mask_url(self._url)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._dialect

    # -- transactions ---------------------------------------------------------

    async def _transaction(
        self, work: Callable[[AsyncConnection], Awaitable[T]], *, write: bool
    ) -> T:
        engine = self._writer if write else self._engine
        attempt = 0
        while True:
            try:
                async with engine.begin() as connection:
                    return await work(connection)
            except RecorderError:
                raise
            except Exception as exc:
                if is_locked_error(exc) and attempt < _LOCK_RETRIES:
                    attempt += 1
                    log.debug("= database locked, retry %d of %d", attempt, _LOCK_RETRIES)
                    await asyncio.sleep(_LOCK_BACKOFF_S * 2**attempt)
                    continue
                raise_translated(exc, self._url)

    def _insert(self, model: Any) -> Any:
        return insert_for(self._dialect, model)

    async def run_in_transaction(
        self, work: Callable[[AsyncConnection], Awaitable[T]], *, write: bool
    ) -> T:
        """Run ``work`` in one short transaction, as the store's own methods do.

        For the store's companion modules (``storage.gaps``, ``storage.audio``).
        """
        return await self._transaction(work, write=write)

    # -- meetings -------------------------------------------------------------

    async def start_meeting(self, channel: str, bot_uid: int, started_at: datetime) -> int:
        """Record that a meeting started; returns its id (status ``recording``)."""

        async def work(connection: AsyncConnection) -> int:
            result = await connection.execute(
                self._insert(MeetingRow)
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
            found = (
                await connection.execute(
                    select(MeetingRow.started_at, MeetingRow.status).where(
                        MeetingRow.id == meeting_id
                    )
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
            await connection.execute(
                update(MeetingRow).where(MeetingRow.id == meeting_id).values(heartbeat_at=at)
            )

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

    async def _require_meeting(self, connection: AsyncConnection, meeting_id: int) -> None:
        found = await connection.scalar(select(MeetingRow.id).where(MeetingRow.id == meeting_id))
        if found is None:
            raise NotFoundError(f"no meeting with id {meeting_id}")

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
            await self._require_meeting(connection, meeting_id)
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

        async def work(connection: AsyncConnection) -> int:
            await self._require_meeting(connection, meeting_id)
            participant_id = await upsert_participant(
                connection, self._dialect, meeting_id, uid, opened_at, None
            )
            result = await connection.execute(
                self._insert(StreamSessionRow)
                .values(
                    meeting_id=meeting_id,
                    participant_id=participant_id,
                    provider_session_id=clean_optional(provider_session_id),
                    opened_at=opened_at,
                    audio_seconds=0.0,
                )
                .returning(StreamSessionRow.id)
            )
            return int(result.scalar_one())

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
        values: dict[str, Any] = {
            "closed_at": closed_at,
            "audio_seconds": float(audio_seconds),
            "close_code": close_code,
            "close_reason": clean_optional(close_reason),
        }
        if provider_session_id is not None:
            values["provider_session_id"] = storable_text(provider_session_id)
        await self._update_session(session_id, **values)

    async def _update_session(self, session_id: int, **values: Any) -> None:
        async def work(connection: AsyncConnection) -> None:
            result = await connection.execute(
                update(StreamSessionRow).where(StreamSessionRow.id == session_id).values(**values)
            )
            if result.rowcount == 0:
                raise NotFoundError(f"no stream session with id {session_id}")

        await self._transaction(work, write=True)

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
            await self._require_meeting(connection, meeting_id)
            result = await connection.execute(
                self._insert(NoteRow)
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

    # -- reading --------------------------------------------------------------

    async def list_meetings(
        self, *, channel: str | None = None, since: datetime | None = None
    ) -> list[MeetingSummary]:
        """Meetings, newest first, optionally of one channel or started since a time."""
        query = summary_select().order_by(MeetingRow.started_at.desc(), MeetingRow.id.desc())
        if channel is not None:
            query = query.where(MeetingRow.channel == channel)
        if since is not None:
            query = query.where(MeetingRow.started_at >= since)

        async def work(connection: AsyncConnection) -> list[MeetingSummary]:
            return [summary_from_row(row) for row in (await connection.execute(query)).all()]

        return await self._transaction(work, write=False)

    async def meeting_costs(self, meeting_ids: Iterable[int]) -> dict[int, MeetingCost]:
        """Billed socket time and speech of each meeting (``storage.costs``)."""
        ids = list(meeting_ids)
        return await self._transaction(lambda c: select_costs(c, ids), write=False)

    async def resolve_meeting(self, ref: str | int, *, channel: str | None = None) -> int:
        """Turn a user's meeting reference (an id, or ``latest``) into a meeting id.

        Raises:
            NotFoundError: no such meeting, or nothing recorded yet; the message
                says what to do.
        """
        where = f" in channel {channel!r}" if channel is not None else ""
        text = str(ref).strip()
        if text.lower() == "latest":
            query = select(MeetingRow.id).order_by(
                MeetingRow.started_at.desc(), MeetingRow.id.desc()
            )
            if channel is not None:
                query = query.where(MeetingRow.channel == channel)

            async def latest(connection: AsyncConnection) -> int | None:
                found: int | None = await connection.scalar(query.limit(1))
                return found

            found = await self._transaction(latest, write=False)
            if found is None:
                raise NotFoundError(
                    f"no meetings recorded{where} yet; record one with 'recorder join' "
                    "or try 'recorder demo'"
                )
            return int(found)
        if not (text.isascii() and text.isdigit()):
            raise NotFoundError(
                f"{text!r} is not a meeting; give a meeting id from 'recorder meetings' or 'latest'"
            )
        if int(text) >= 2**63:  # beyond any id a database holds (SQLite's INTEGER)
            raise NotFoundError(f"no meeting with id {text}; run 'recorder meetings' to list them")
        by_id = select(MeetingRow.id).where(MeetingRow.id == int(text))
        if channel is not None:
            by_id = by_id.where(MeetingRow.channel == channel)

        async def exact(connection: AsyncConnection) -> int | None:
            found: int | None = await connection.scalar(by_id)
            return found

        if await self._transaction(exact, write=False) is None:
            raise NotFoundError(
                f"no meeting with id {text}{where}; run 'recorder meetings' to list them"
            )
        return int(text)

    async def get_meeting(
        self, meeting_id: int, *, with_turns: bool = True, revision: int | None = None
    ) -> Meeting:
        """A whole meeting: header, participants with talk time, turns, notes, sessions, gaps.

        Args:
            meeting_id: the meeting.
            with_turns: False leaves ``turns`` empty (stream them with :meth:`iter_turns`).
            revision: the transcript revision (None: the latest).

        Raises:
            NotFoundError: no such meeting, or no such revision.
        """

        async def work(connection: AsyncConnection) -> Meeting:
            return await load_meeting(
                connection, meeting_id, with_turns=with_turns, revision=revision
            )

        return await self._transaction(work, write=False)

    async def iter_turns(
        self,
        meeting_id: int,
        *,
        batch: int = 1000,
        with_words: bool = True,
        revision: int | None = None,
    ) -> AsyncIterator[Turn]:
        """Yield a meeting's turns in time order, ``batch`` rows per query.

        Keyset pagination on (start_ms, id): memory stays flat however long the
        meeting, and no transaction stays open while the caller works.
        ``with_words=False`` leaves each turn's ``words`` empty, which is several
        times cheaper for readers that need only the text. ``revision`` picks a
        transcript revision (None: the latest).

        Raises:
            NotFoundError: no such meeting, or no such revision.
        """
        if batch < 1:
            raise ValueError("batch must be at least 1")

        async def exists(connection: AsyncConnection) -> int:
            await self._require_meeting(connection, meeting_id)
            return (await pick_revision(connection, meeting_id, revision))[0]

        chosen = await self._transaction(exists, write=False)
        after: tuple[int, int] | None = None
        while True:
            query = turn_select(with_words=with_words).where(
                TurnRow.meeting_id == meeting_id, TurnRow.revision == chosen
            )
            if after is not None:
                query = query.where(
                    (TurnRow.start_ms > after[0])
                    | ((TurnRow.start_ms == after[0]) & (TurnRow.id > after[1]))
                )
            query = query.order_by(TurnRow.start_ms, TurnRow.id).limit(batch)

            async def page(connection: AsyncConnection, query: Select[Any] = query) -> list[Turn]:
                return [turn_from_row(row) for row in await connection.execute(query)]

            turns = await self._transaction(page, write=False)
            for turn in turns:
                yield turn
            if len(turns) < batch:
                return
            after = (turns[-1].start_ms, turns[-1].id)

    async def search(
        self,
        query: str,
        *,
        channel: str | None = None,
        speaker: str | None = None,
        since: datetime | None = None,
        limit: int = 20,
    ) -> list[SearchHit]:
        """Full-text search over every turn, best match first.

        Any text is accepted (see :func:`storage.search.parse_query`); text
        without words finds nothing. Snippets mark matches as ``«word»``.

        Args:
            query: what to look for: words, "quoted phrases", prefix*.
            channel: only meetings of this channel.
            speaker: only this participant (display name, case-insensitive, or uid).
            since: only meetings started at or after this time.
            limit: at most this many hits.
        """
        terms = parse_query(query)
        if not terms or limit < 1:
            return []

        async def work(connection: AsyncConnection) -> list[SearchHit]:
            is_dense = True
            if self._dialect == "postgresql":
                plan = (await connection.execute(estimate_statement(terms))).scalar()
                is_dense = is_dense_estimate(plan)
            statement = build_search(
                self._dialect,
                terms,
                channel=channel,
                speaker=speaker,
                since=since,
                limit=limit,
                is_dense=is_dense,
            )
            return [
                SearchHit(
                    turn_id=row.turn_id,
                    meeting_id=row.meeting_id,
                    channel=row.channel,
                    meeting_started_at=row.meeting_started_at,
                    uid=row.uid,
                    display_name=row.display_name,
                    start_ms=row.start_ms,
                    end_ms=row.end_ms,
                    text=row.text,
                    snippet=row.snippet or make_snippet(row.text, terms),
                    rank=float(row.rank or 0.0),
                )
                for row in await connection.execute(statement)
            ]

        return await self._transaction(work, write=False)

    async def count_matches(
        self,
        query: str,
        *,
        channel: str | None = None,
        speaker: str | None = None,
        since: datetime | None = None,
        cap: int = 10_000,
    ) -> int:
        """How many turns :meth:`search` would find with no limit, counting at most ``cap``."""
        terms = parse_query(query)
        if not terms:
            return 0
        statement = build_count(
            self._dialect, terms, channel=channel, speaker=speaker, since=since, cap=cap
        )

        async def work(connection: AsyncConnection) -> int:
            return int((await connection.execute(statement)).scalar() or 0)

        return await self._transaction(work, write=False)

    async def run_query(
        self, sql: str, *, max_rows: int = DEFAULT_MAX_ROWS, timeout_s: float = 30.0
    ) -> QueryResult:
        """Run one SQL statement on a connection the database itself keeps read-only.

        Args:
            sql: a single statement.
            max_rows: return at most this many rows (``truncated`` says if more existed).
            timeout_s: stop the statement after this long.

        Raises:
            ReadOnlyViolation: the statement tried to change something.
            StorageError: the statement failed (syntax, unknown table, timeout, ...).
        """
        return await run_bounded_query(self._url, sql, max_rows=max_rows, timeout_s=timeout_s)
