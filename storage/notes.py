"""Written meeting notes: their records, their JSON form, and their reads and writes.

A meeting's notes are revisions: :meth:`NotesStore.save` adds the next one, and the
highest is the current one, so regenerating keeps the earlier notes. A meeting whose
notes were asked for but could not be made yet is *pending* until they are saved.
Every item (decision, action item, open question, bullet) carries the time range and
the turn ids it comes from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.models import MeetingNotesRow, NotesPendingRow

if TYPE_CHECKING:
    from storage.store import TranscriptStore

__all__ = [
    "MeetingNotes",
    "NoteItem",
    "NotesContent",
    "NotesStore",
    "NotesUsage",
    "PendingNotes",
    "content_from_json",
    "content_to_json",
    "load_current_notes",
]


@dataclass(frozen=True, slots=True)
class NoteItem:
    """One decision, action item, open question or summary bullet.

    Attributes:
        text: what was decided, is to be done, is asked, or the bullet.
        start_ms: where it starts on the meeting timeline.
        end_ms: where it ends.
        turn_ids: the turns it comes from (at least one).
        owner: for an action item, the participant who will do it, if named or implied.
        due: for an action item, when it is due, as said ("Friday"), if said.
    """

    text: str
    start_ms: int
    end_ms: int
    turn_ids: tuple[int, ...]
    owner: str | None = None
    due: str | None = None


@dataclass(frozen=True, slots=True)
class NotesContent:
    """What the notes say."""

    summary: tuple[str, ...] = ()
    bullets: tuple[NoteItem, ...] = ()
    decisions: tuple[NoteItem, ...] = ()
    action_items: tuple[NoteItem, ...] = ()
    open_questions: tuple[NoteItem, ...] = ()


@dataclass(frozen=True, slots=True)
class NotesUsage:
    """What making the notes cost: tokens, requests and the estimated price."""

    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    price_usd: float | None = None


@dataclass(frozen=True, slots=True)
class MeetingNotes:
    """One stored revision of a meeting's notes."""

    id: int
    meeting_id: int
    revision: int
    created_at: datetime
    model: str
    language: str | None
    prompt: str | None
    content: NotesContent
    usage: NotesUsage = field(default_factory=NotesUsage)


@dataclass(frozen=True, slots=True)
class PendingNotes:
    """A meeting whose notes are still to be made."""

    meeting_id: int
    requested_at: datetime
    attempts: int
    last_error: str | None
    options: dict[str, Any]


_LISTS = ("bullets", "decisions", "action_items", "open_questions")


def _item_to_json(item: NoteItem) -> dict[str, Any]:
    return {
        "text": item.text,
        "start_ms": item.start_ms,
        "end_ms": item.end_ms,
        "turn_ids": list(item.turn_ids),
        "owner": item.owner,
        "due": item.due,
    }


def content_to_json(content: NotesContent) -> dict[str, Any]:
    """The notes as a JSON-ready object (the export's ``meeting_notes.content``)."""
    data: dict[str, Any] = {"summary": list(content.summary)}
    for name in _LISTS:
        data[name] = [_item_to_json(item) for item in getattr(content, name)]
    return data


def content_from_json(data: Mapping[str, Any]) -> NotesContent:
    """Read back :func:`content_to_json`'s output."""

    def items(name: str) -> tuple[NoteItem, ...]:
        return tuple(
            NoteItem(
                text=str(raw["text"]),
                start_ms=int(raw["start_ms"]),
                end_ms=int(raw["end_ms"]),
                turn_ids=tuple(int(t) for t in raw.get("turn_ids", ())),
                owner=raw.get("owner"),
                due=raw.get("due"),
            )
            for raw in data.get(name, ())
        )

    return NotesContent(
        summary=tuple(str(s) for s in data.get("summary", ())),
        bullets=items("bullets"),
        decisions=items("decisions"),
        action_items=items("action_items"),
        open_questions=items("open_questions"),
    )


def _from_row(row: Any) -> MeetingNotes:
    return MeetingNotes(
        id=row.id,
        meeting_id=row.meeting_id,
        revision=row.revision,
        created_at=row.created_at,
        model=row.model,
        language=row.language,
        prompt=row.prompt,
        content=content_from_json(row.content or {}),
        usage=NotesUsage(
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            calls=row.calls,
            price_usd=row.price_usd,
        ),
    )


async def load_current_notes(connection: AsyncConnection, meeting_id: int) -> MeetingNotes | None:
    """The meeting's current (highest) revision of notes, or None."""
    row = (
        await connection.execute(
            select(MeetingNotesRow)
            .where(MeetingNotesRow.meeting_id == meeting_id)
            .order_by(MeetingNotesRow.revision.desc())
            .limit(1)
        )
    ).first()
    return None if row is None else _from_row(row)


class NotesStore:
    """Reads and writes of meeting notes, in the transcript store's transactions."""

    def __init__(self, store: TranscriptStore) -> None:
        self._store = store

    async def save(
        self,
        meeting_id: int,
        content: NotesContent,
        *,
        model: str,
        created_at: datetime,
        usage: NotesUsage,
        language: str | None = None,
        prompt: str | None = None,
    ) -> MeetingNotes:
        """Store a new revision (the current one from now on) and clear the pending mark.

        Raises:
            NotFoundError: no such meeting.
        """
        from storage.rows import storable_text

        def clean(value: str | None) -> str | None:
            return None if value is None else storable_text(value)

        data = content_to_json(content)
        data["summary"] = [storable_text(s) for s in data["summary"]]
        for name in _LISTS:
            for item in data[name]:
                item["text"] = storable_text(item["text"])
                item["owner"] = clean(item["owner"])
                item["due"] = clean(item["due"])

        async def work(connection: AsyncConnection) -> MeetingNotes:
            await self._store.require_meeting(connection, meeting_id)
            latest = await connection.scalar(
                select(func.max(MeetingNotesRow.revision)).where(
                    MeetingNotesRow.meeting_id == meeting_id
                )
            )
            values: dict[str, Any] = {
                "meeting_id": meeting_id,
                "revision": int(latest or 0) + 1,
                "created_at": created_at,
                "model": storable_text(model),
                "language": clean(language),
                "prompt": clean(prompt),
                "content": data,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "calls": usage.calls,
                "price_usd": usage.price_usd,
            }
            result = await connection.execute(
                self._store.insert(MeetingNotesRow).values(**values).returning(MeetingNotesRow.id)
            )
            await connection.execute(
                delete(NotesPendingRow).where(NotesPendingRow.meeting_id == meeting_id)
            )
            return _from_row(_Row(id=int(result.scalar_one()), **values))

        return await self._store.run_in_transaction(work, write=True)

    async def current(self, meeting_id: int) -> MeetingNotes | None:
        """The meeting's current notes, or None when it has none."""

        async def work(connection: AsyncConnection) -> MeetingNotes | None:
            return await load_current_notes(connection, meeting_id)

        return await self._store.run_in_transaction(work, write=False)

    async def revisions(self, meeting_id: int) -> list[MeetingNotes]:
        """Every revision of the meeting's notes, oldest first."""

        async def work(connection: AsyncConnection) -> list[MeetingNotes]:
            rows = await connection.execute(
                select(MeetingNotesRow)
                .where(MeetingNotesRow.meeting_id == meeting_id)
                .order_by(MeetingNotesRow.revision)
            )
            return [_from_row(row) for row in rows]

        return await self._store.run_in_transaction(work, write=False)

    async def mark_pending(
        self,
        meeting_id: int,
        *,
        requested_at: datetime,
        options: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """Remember that the meeting's notes are still to be made (and why, if they failed).

        A meeting already pending keeps its request time and counts one more attempt
        when ``error`` is given.

        Raises:
            NotFoundError: no such meeting.
        """
        from storage.rows import storable_text

        async def work(connection: AsyncConnection) -> None:
            await self._store.require_meeting(connection, meeting_id)
            found = await connection.scalar(
                select(NotesPendingRow.attempts).where(NotesPendingRow.meeting_id == meeting_id)
            )
            message = None if error is None else storable_text(error)
            if found is None:
                await connection.execute(
                    self._store.insert(NotesPendingRow).values(
                        meeting_id=meeting_id,
                        requested_at=requested_at,
                        attempts=1 if error is not None else 0,
                        last_error=message,
                        options=dict(options or {}),
                    )
                )
                return
            values: dict[str, Any] = {}
            if error is not None:
                values.update(attempts=int(found) + 1, last_error=message)
            if options is not None:
                values["options"] = dict(options)
            if values:
                await connection.execute(
                    update(NotesPendingRow)
                    .where(NotesPendingRow.meeting_id == meeting_id)
                    .values(**values)
                )

        await self._store.run_in_transaction(work, write=True)

    async def pending(self) -> list[PendingNotes]:
        """Meetings whose notes are still to be made, oldest request first."""

        async def work(connection: AsyncConnection) -> list[PendingNotes]:
            rows = await connection.execute(
                select(NotesPendingRow).order_by(
                    NotesPendingRow.requested_at, NotesPendingRow.meeting_id
                )
            )
            return [
                PendingNotes(
                    meeting_id=row.meeting_id,
                    requested_at=row.requested_at,
                    attempts=row.attempts,
                    last_error=row.last_error,
                    options=dict(row.options or {}),
                )
                for row in rows
            ]

        return await self._store.run_in_transaction(work, write=False)


@dataclass(frozen=True, slots=True)
class _Row:
    """The inserted values, shaped like a selected row for :func:`_from_row`."""

    id: int
    meeting_id: int
    revision: int
    created_at: datetime
    model: str
    language: str | None
    prompt: str | None
    content: dict[str, Any]
    input_tokens: int
    output_tokens: int
    calls: int
    price_usd: float | None
