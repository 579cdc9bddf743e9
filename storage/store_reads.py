"""The transcript store's reads: meetings, their turns, search, costs and read-only SQL.

Each call reads in one short transaction (see :class:`storage.store_base.StoreBase`)
and returns frozen records from :mod:`storage.records`; the statements are built in
:mod:`storage.rows` and :mod:`storage.search`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncConnection

from recorder.errors import NotFoundError
from storage.bounded import run_bounded_query
from storage.costs import MeetingCost, select_costs
from storage.models import MeetingRow, TurnRow
from storage.records import Meeting, MeetingSummary, QueryResult, SearchHit, Turn
from storage.rows import (
    load_meeting,
    pick_revision,
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
from storage.store_base import StoreBase

__all__ = ["DEFAULT_MAX_ROWS", "StoreReads"]

DEFAULT_MAX_ROWS = 1000


class StoreReads(StoreBase):
    """The reads of :class:`storage.store.TranscriptStore`."""

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
            await self.require_meeting(connection, meeting_id)
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
