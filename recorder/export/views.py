"""View models for the export templates, built from the store's records.

Templates never see the database: they get a :class:`MeetingView` (header,
participants, notes) and an async stream of :class:`TurnView` whose text is
already cleaned of control characters and which know where a run of one
speaker's turns starts and ends, so grouping needs no lookahead in a template.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime

from recorder.export.escape import clean_text
from storage.notes import MeetingNotes, NoteItem
from storage.records import Meeting, Note, Participant, Turn, Word

__all__ = [
    "PALETTE_SIZE",
    "GapView",
    "MeetingView",
    "NoteItemView",
    "NoteView",
    "SpeakerView",
    "Speakers",
    "TurnView",
    "WrittenNotesView",
    "build_meeting_view",
    "turn_views",
    "written_notes_view",
]

# Colours are CSS classes .s0 ... .s9 in the HTML; beyond ten speakers they repeat.
PALETTE_SIZE = 10


@dataclass(frozen=True, slots=True)
class SpeakerView:
    """A participant as shown: name (or uid), colour and talk time."""

    uid: int
    name: str
    has_name: bool
    index: int
    talk_ms: int = 0
    turn_count: int = 0
    share: float = 0.0

    @property
    def colour(self) -> int:
        """The palette slot (``s0`` ... ``s9`` in CSS)."""
        return self.index % PALETTE_SIZE


@dataclass(frozen=True, slots=True)
class NoteView:
    """A note (recap, ...) with its place on the meeting timeline."""

    kind: str
    title: str
    text: str
    created_at: datetime
    offset_ms: int
    spoken: bool


@dataclass(frozen=True, slots=True)
class NoteItemView:
    """A decision, action item, open question or bullet, cleaned, with its first turn.

    Attributes:
        turn_id: the first turn it comes from (the HTML links to ``#t<turn_id>``).
    """

    text: str
    start_ms: int
    end_ms: int
    turn_id: int
    turn_ids: tuple[int, ...]
    owner: str | None
    due: str | None


@dataclass(frozen=True, slots=True)
class WrittenNotesView:
    """The meeting's written notes (LLM Gateway), cleaned for rendering."""

    revision: int
    model: str
    summary: tuple[str, ...]
    bullets: tuple[NoteItemView, ...]
    decisions: tuple[NoteItemView, ...]
    action_items: tuple[NoteItemView, ...]
    open_questions: tuple[NoteItemView, ...]
    input_tokens: int
    output_tokens: int
    price_usd: float | None


@dataclass(frozen=True, slots=True)
class TurnView:
    """One turn ready to render.

    Attributes:
        is_group_start: the first of a run of consecutive turns by one speaker.
        is_group_end: the last of such a run.
    """

    id: int
    speaker: SpeakerView
    start_ms: int
    end_ms: int
    text: str
    words: tuple[Word, ...]
    is_group_start: bool
    is_group_end: bool
    is_repaired: bool = False


@dataclass(frozen=True, slots=True)
class GapView:
    """A stretch of one participant's speech nothing could transcribe."""

    speaker: SpeakerView
    from_ms: int
    to_ms: int
    cause: str
    state: str


@dataclass(frozen=True, slots=True)
class MeetingView:
    """Everything in an export except the turns, which stream."""

    id: int
    channel: str
    started_at: datetime
    ended_at: datetime | None
    status: str
    duration_ms: int | None
    speakers: tuple[SpeakerView, ...]
    notes: tuple[NoteView, ...]
    turn_count: int
    title: str
    gaps: tuple[GapView, ...] = ()
    written: WrittenNotesView | None = None


class Speakers:
    """Speaker views by uid; a uid first seen in the turns gets the next colour."""

    def __init__(self, participants: Iterable[Participant]) -> None:
        ordered = sorted(participants, key=lambda p: (p.first_seen, p.uid))
        total_ms = sum(max(0, p.talk_ms) for p in ordered) or 1
        self._by_uid: dict[int, SpeakerView] = {}
        for participant in ordered:
            if participant.uid in self._by_uid:
                continue
            name = clean_text(participant.display_name or "")
            self._by_uid[participant.uid] = SpeakerView(
                uid=participant.uid,
                name=name or str(participant.uid),
                has_name=bool(name),
                index=len(self._by_uid),
                talk_ms=participant.talk_ms,
                turn_count=participant.turn_count,
                share=max(0, participant.talk_ms) / total_ms,
            )

    def all(self) -> tuple[SpeakerView, ...]:
        """Every speaker known so far, in colour order."""
        return tuple(self._by_uid.values())

    def get(self, uid: int, display_name: str | None = None) -> SpeakerView:
        """The view for a uid, created on first sight."""
        view = self._by_uid.get(uid)
        if view is None:
            name = clean_text(display_name or "")
            view = SpeakerView(
                uid=uid, name=name or str(uid), has_name=bool(name), index=len(self._by_uid)
            )
            self._by_uid[uid] = view
        return view


def _note_title(note: Note) -> str:
    kind = clean_text(note.kind) or "note"
    title = kind[:1].upper() + kind[1:]
    return f"{title} (spoken)" if note.spoken else title


def _item_view(item: NoteItem) -> NoteItemView:
    return NoteItemView(
        text=clean_text(item.text),
        start_ms=item.start_ms,
        end_ms=item.end_ms,
        turn_id=item.turn_ids[0] if item.turn_ids else 0,
        turn_ids=item.turn_ids,
        owner=clean_text(item.owner) if item.owner else None,
        due=clean_text(item.due) if item.due else None,
    )


def written_notes_view(notes: MeetingNotes | None) -> WrittenNotesView | None:
    """The written notes ready to render, or None."""
    if notes is None:
        return None
    content = notes.content
    return WrittenNotesView(
        revision=notes.revision,
        model=clean_text(notes.model),
        summary=tuple(clean_text(s) for s in content.summary),
        bullets=tuple(_item_view(i) for i in content.bullets),
        decisions=tuple(_item_view(i) for i in content.decisions),
        action_items=tuple(_item_view(i) for i in content.action_items),
        open_questions=tuple(_item_view(i) for i in content.open_questions),
        input_tokens=notes.usage.input_tokens,
        output_tokens=notes.usage.output_tokens,
        price_usd=notes.usage.price_usd,
    )


def build_meeting_view(meeting: Meeting, speakers: Speakers | None = None) -> MeetingView:
    """The header part of an export.

    Args:
        meeting: the meeting; its ``turns`` are not used (they stream separately).
        speakers: the speaker registry to share with :func:`turn_views`.
    """
    summary = meeting.summary
    speakers = speakers or Speakers(meeting.participants)
    duration_s = summary.duration_s
    notes = tuple(
        NoteView(
            kind=clean_text(note.kind),
            title=_note_title(note),
            text=clean_text(note.text, keep_newlines=True),
            created_at=note.created_at,
            offset_ms=max(0, int((note.created_at - summary.started_at).total_seconds() * 1000)),
            spoken=note.spoken,
        )
        for note in sorted(meeting.notes, key=lambda n: (n.created_at, n.id))
    )
    channel = clean_text(summary.channel)
    return MeetingView(
        id=summary.id,
        channel=channel,
        started_at=summary.started_at,
        ended_at=summary.ended_at,
        status=summary.status,
        duration_ms=None if duration_s is None else round(duration_s * 1000),
        speakers=speakers.all(),
        notes=notes,
        turn_count=summary.turn_count,
        title=f"{channel} · meeting {summary.id}",
        gaps=tuple(
            GapView(
                speaker=speakers.get(gap.uid),
                from_ms=gap.from_ms,
                to_ms=gap.to_ms,
                cause=clean_text(gap.cause),
                state=gap.state,
            )
            for gap in meeting.gaps
            if gap.state != "repaired"
        ),
        written=written_notes_view(meeting.meeting_notes),
    )


async def turn_views(turns: AsyncIterable[Turn], speakers: Speakers) -> AsyncIterator[TurnView]:
    """Turn records into view models, marking runs of one speaker.

    Holds back one turn to know whether the next one continues its run, so
    memory stays constant however long the meeting is.
    """
    pending: Turn | None = None
    pending_starts = True
    async for turn in turns:
        if pending is not None:
            continues = turn.uid == pending.uid
            yield _view(pending, speakers, pending_starts, not continues)
            pending_starts = not continues
        pending = turn
    if pending is not None:
        yield _view(pending, speakers, pending_starts, True)


def _view(turn: Turn, speakers: Speakers, starts: bool, ends: bool) -> TurnView:
    return TurnView(
        id=turn.id,
        speaker=speakers.get(turn.uid, turn.display_name),
        start_ms=turn.start_ms,
        end_ms=turn.end_ms,
        text=clean_text(turn.text),
        words=turn.words,
        is_group_start=starts,
        is_group_end=ends,
        is_repaired=turn.source == "repaired",
    )
