"""Keep a recording's writes going while the database is away.

Every write a recording makes while it records (turns, stream sessions,
participants, gaps, the audio index) is a :data:`Write`, a JSON-ready value the
one :class:`~recorder.writer.TranscriptWriter` stores in order through
:class:`StoreWrites`, and journals to disk while the database is away
(:mod:`recorder.journal`). The few writes whose answer the recording waits for
(starting and finishing the meeting) go through :meth:`DatabaseGuard.run`. The
guard keeps the one notion of "the database is away": the console says once
that it is away and once that it is back. Errors retrying cannot fix (no such
row) are raised at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from recorder.errors import (
    MigrationRequired,
    NotFoundError,
    ReadOnlyViolation,
    RecorderError,
    StorageError,
)
from storage.audio import finish_segment
from storage.keyed import add_gap_once, add_segment_once, open_stream_session_once
from storage.records import SessionClosed, SessionOpened, TurnRecord, Word
from storage.store import TranscriptStore

__all__ = [
    "BadWrite",
    "DatabaseGuard",
    "StoreWrites",
    "Write",
    "gap_write",
    "heartbeat_write",
    "is_transient",
    "journal_header",
    "participant_write",
    "segment_finished_write",
    "segment_write",
    "session_closed_write",
    "session_write",
    "turn_write",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


def is_transient(error: BaseException) -> bool:
    """Whether retrying may fix a storage failure (the database away, a lost connection)."""
    return isinstance(error, StorageError) and not isinstance(
        error, NotFoundError | ReadOnlyViolation | MigrationRequired
    )


class DatabaseGuard:
    """Retries writes while the database is away, and says so once per change.

    Args:
        say: where to tell the user (the live console).
        initial_delay_s: first pause before a retry.
        max_delay_s: longest pause between retries.
    """

    def __init__(
        self,
        say: Callable[[str], None],
        *,
        initial_delay_s: float = 0.25,
        max_delay_s: float = 5.0,
    ) -> None:
        self._say = say
        self._initial_delay_s = initial_delay_s
        self._max_delay_s = max_delay_s
        self._is_away = False
        self.failures = 0

    def say(self, line: str) -> None:
        """Tell the user something about the database (the live console)."""
        self._say(line)

    @property
    def is_away(self) -> bool:
        """Whether the last write failed."""
        return self._is_away

    def trouble(self, error: BaseException) -> None:
        """A write failed; said once until the database is back."""
        self.failures += 1
        if not self._is_away:
            self._is_away = True
            self._say(
                f"! the database is unreachable ({error}); the recording goes on, holding "
                "what it records and retrying"
            )
        else:
            log.info("! database still away: %s", error)

    def recovered(self) -> None:
        """A write succeeded; said once if the database had been away."""
        if self._is_away:
            self._is_away = False
            self._say("+ the database is back; storing what was held")

    async def run(self, op: Callable[[], Awaitable[T]], *, give_up_s: float | None = None) -> T:
        """Run one write until it succeeds (or ``give_up_s`` passes: then it raises).

        Raises:
            StorageError: a failure retrying cannot fix, or the database stayed away
                longer than ``give_up_s``.
        """
        loop = asyncio.get_running_loop()
        deadline = None if give_up_s is None else loop.time() + give_up_s
        delay = self._initial_delay_s
        while True:
            try:
                result = await op()
            except StorageError as exc:
                if not is_transient(exc):
                    raise
                self.trouble(exc)
                if deadline is not None and loop.time() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_delay_s)
                continue
            self.recovered()
            return result


# -- the writes a recording makes, as journal entries ------------------------------
#
# Each write is a JSON-ready dict (``op`` names it), so the same value is held in
# memory, appended to the journal and replayed. A row the recording needs the id
# of later (a stream session for its turns, an audio file for its completion) is
# named by ``ref``, a key the recording picks; ``id`` is filled in once known.

Write = dict[str, Any]


def _at(moment: datetime) -> str:
    return moment.isoformat()


def journal_header(meeting_id: int, channel: str, started_at: datetime) -> Write:
    """A journal's first line: the meeting (of which database) its writes belong to."""
    return {
        "op": "journal",
        "meeting_id": meeting_id,
        "channel": channel,
        "started_at": _at(started_at),
    }


def heartbeat_write(meeting_id: int, at: datetime) -> Write:
    """The meeting's recorder is alive (written at once when the database is back)."""
    return {"op": "heartbeat", "meeting_id": meeting_id, "at": _at(at)}


_TURN_FIELDS = tuple(field.name for field in dataclasses.fields(TurnRecord))
_WORD_FIELDS = tuple(field.name for field in dataclasses.fields(Word))


def _turn_data(record: TurnRecord) -> dict[str, Any]:
    """``dataclasses.asdict(record)``, built directly: asdict deep-copies every word."""
    data = {name: getattr(record, name) for name in _TURN_FIELDS}
    data["words"] = tuple(
        {name: getattr(word, name) for name in _WORD_FIELDS} for word in record.words
    )
    return data


def turn_write(record: TurnRecord, *, session: str | None = None) -> Write:
    """A final turn; ``session`` is its socket's ref (else ``record.stream_session_id``)."""
    data = _turn_data(record)
    return {
        "op": "turn",
        "ref": session,
        "id": None if session is not None else record.stream_session_id,
        "record": data,
    }


def session_write(
    ref: str, meeting_id: int, uid: int, opened_at: datetime, provider_id: str | None
) -> Write:
    """A socket opened: its stream-session row (the billing record)."""
    return {
        "op": "session",
        "ref": ref,
        "meeting_id": meeting_id,
        "uid": uid,
        "opened_at": _at(opened_at),
        "provider_id": provider_id,
    }


def session_closed_write(
    ref: str,
    *,
    closed_at: datetime,
    audio_seconds: float,
    close_code: int | None,
    close_reason: str | None,
) -> Write:
    """A socket closed: the billed interval and why."""
    return {
        "op": "session_closed",
        "ref": ref,
        "id": None,
        "closed_at": _at(closed_at),
        "audio_seconds": audio_seconds,
        "close_code": close_code,
        "close_reason": close_reason,
    }


def participant_write(
    meeting_id: int, uid: int, seen_at: datetime, display_name: str | None, presence: str | None
) -> Write:
    """A participant seen (joined or left)."""
    return {
        "op": "participant",
        "meeting_id": meeting_id,
        "uid": uid,
        "seen_at": _at(seen_at),
        "display_name": display_name,
        "presence": presence,
    }


def gap_write(
    meeting_id: int, uid: int, from_ms: int, to_ms: int, cause: str, *, state: str = "open"
) -> Write:
    """A stretch live transcription missed."""
    return {
        "op": "gap",
        "meeting_id": meeting_id,
        "uid": uid,
        "from_ms": int(from_ms),
        "to_ms": int(to_ms),
        "cause": cause,
        "state": state,
    }


def segment_write(
    ref: str,
    meeting_id: int,
    uid: int,
    *,
    start_ms: int,
    sample_rate_hz: int,
    format: str,
    path: str,
) -> Write:
    """An audio file opened: its index row."""
    return {
        "op": "segment",
        "ref": ref,
        "meeting_id": meeting_id,
        "uid": uid,
        "start_ms": int(start_ms),
        "sample_rate_hz": sample_rate_hz,
        "format": format,
        "path": path,
    }


def segment_finished_write(
    ref: str, *, duration_ms: int, size: int, sha256: str | None, format: str, path: str
) -> Write:
    """An audio file finished: its length, size, checksum, format and path."""
    return {
        "op": "segment_finished",
        "ref": ref,
        "id": None,
        "duration_ms": int(duration_ms),
        "size": int(size),
        "sha256": sha256,
        "format": format,
        "path": path,
    }


class BadWrite(RecorderError):
    """A write that can never be stored (malformed); it is dropped with an error line."""


@dataclasses.dataclass(slots=True)
class _Held:
    """Writes of a batch stored together (see :meth:`StoreWrites._apply_held`)."""

    opened: list[Write] = dataclasses.field(default_factory=list)
    turns: list[Write] = dataclasses.field(default_factory=list)
    closed: list[Write] = dataclasses.field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.opened or self.turns or self.closed)

    def clear(self) -> None:
        self.opened.clear()
        self.turns.clear()
        self.closed.clear()


class StoreWrites:
    """Applies writes to the store, remembering the ids of the rows named by a ref.

    Every write may be applied twice (a lost answer to a commit, a journal
    replayed again after a crash) and stores its row once: turns are upserts,
    updates are updates, and inserts look for their natural key first
    (:mod:`storage.keyed`), unless the caller says the batch is ``fresh``.
    """

    def __init__(self, store: TranscriptStore) -> None:
        self._store = store
        self.refs: dict[str, int] = {}

    def resolve(self, write: Write) -> Write:
        """``write`` with the id of its ref filled in, if known (for the journal)."""
        ref = write.get("ref")
        if "id" in write and write["id"] is None and ref is not None and ref in self.refs:
            return {**write, "id": self.refs[ref]}
        return write

    def _id(self, write: Write, stored: dict[str, int]) -> int:
        if write.get("id") is not None:
            return int(write["id"])
        ref = write.get("ref")
        found = stored.get(ref) if ref is not None else None
        if found is None:
            found = self.refs.get(ref) if ref is not None else None
        if found is None:
            raise NotFoundError(f"{write['op']} names {ref!r}, which was never stored")
        return found

    async def apply(self, writes: Sequence[Write], *, fresh: bool = False) -> None:
        """Apply writes in order, in one transaction (consecutive turns in one upsert).

        ``fresh``: none of ``writes`` was ever tried before (the first attempt of
        new writes, not a retry nor a journal), so none can be stored yet and the
        inserts skip looking for their row (one statement per socket and file).

        Raises:
            StorageError: the database failed (see :func:`is_transient`).
        """
        try:
            await self._apply(writes, fresh)
        except (KeyError, TypeError, ValueError) as exc:
            # A journal line of another version, or edited by hand: it cannot be stored.
            raise BadWrite(f"a malformed {writes[0].get('op')!r} write: {exc!r}") from exc

    async def _apply(self, writes: Sequence[Write], fresh: bool) -> None:
        if not writes:
            return
        # The ids of the rows this batch adds, known to the batch's later writes, and to
        # later batches once it is committed (a rolled-back row has no id).
        stored: dict[str, int] = {}

        async def work() -> None:
            stored.clear()  # run again from the start after "database is locked"
            # The batch's turns go in one upsert (one statement, compiled once), after
            # the writes that no turn depends on and that tell live streams nothing
            # (socket rows, gaps, audio files), but before a participant's: its
            # joined/left event comes after the turns said before it. A fresh batch's
            # socket rows go the same way: every open in one INSERT before the turns
            # (which name them), every close in one UPDATE after.
            held = _Held()
            for write in writes:
                op = write["op"]
                if op == "turn":
                    held.turns.append(write)
                elif fresh and op == "session":
                    held.opened.append(write)
                elif fresh and op == "session_closed":
                    held.closed.append(write)
                else:
                    if op == "participant" and held:
                        await self._apply_held(held, stored)
                    await self._apply_one(write, stored, fresh)
            await self._apply_held(held, stored)

        if len(writes) == 1 and not self._store.batches_in_thread:
            await work()  # one write: its own transactions, as it always had
        else:
            await self._store.run_as_one(work)
        self.refs.update(stored)

    async def _apply_held(self, held: _Held, stored: dict[str, int]) -> None:
        """Store ``held`` (opens, turns, closes: each may name the one before), and empty it."""
        if held.opened:
            ids = await self._store.open_stream_sessions(
                [
                    SessionOpened(
                        write["meeting_id"],
                        write["uid"],
                        datetime.fromisoformat(write["opened_at"]),
                        write["provider_id"],
                    )
                    for write in held.opened
                ]
            )
            stored.update(zip((write["ref"] for write in held.opened), ids, strict=True))
        if held.turns:
            await self._apply_turns(held.turns, stored)
        if held.closed:
            await self._store.close_stream_sessions(
                [
                    SessionClosed(
                        self._id(write, stored),
                        datetime.fromisoformat(write["closed_at"]),
                        write["audio_seconds"],
                        write["close_code"],
                        write["close_reason"],
                    )
                    for write in held.closed
                ]
            )
        held.clear()

    async def _apply_turns(self, writes: Sequence[Write], stored: dict[str, int]) -> None:
        records = []
        for write in writes:
            data = dict(write["record"])
            data["words"] = tuple(Word(**w) for w in data.get("words") or ())
            data["stream_session_id"] = self._id(write, stored)
            records.append(TurnRecord(**data))
        await self._store.upsert_turns(records)

    async def _apply_one(self, write: Write, stored: dict[str, int], fresh: bool) -> None:
        op, store = write["op"], self._store
        if op == "journal":
            return  # the header line: nothing to store
        if op == "heartbeat":
            await store.heartbeat(write["meeting_id"], datetime.fromisoformat(write["at"]))
            return
        if op == "session":
            stored[write["ref"]] = await open_stream_session_once(
                store,
                write["meeting_id"],
                write["uid"],
                datetime.fromisoformat(write["opened_at"]),
                write["provider_id"],
                fresh=fresh,
            )
        elif op == "session_closed":
            await store.close_stream_session(
                self._id(write, stored),
                closed_at=datetime.fromisoformat(write["closed_at"]),
                audio_seconds=write["audio_seconds"],
                close_code=write["close_code"],
                close_reason=write["close_reason"],
            )
        elif op == "participant":
            await store.record_participant(
                write["meeting_id"],
                write["uid"],
                datetime.fromisoformat(write["seen_at"]),
                display_name=write["display_name"],
                presence=write["presence"],
            )
        elif op == "gap":
            await add_gap_once(
                store,
                write["meeting_id"],
                write["uid"],
                write["from_ms"],
                write["to_ms"],
                write["cause"],
                state=write["state"],
            )
        elif op == "segment":
            stored[write["ref"]] = await add_segment_once(
                store,
                write["meeting_id"],
                write["uid"],
                start_ms=write["start_ms"],
                sample_rate_hz=write["sample_rate_hz"],
                format=write["format"],
                path=write["path"],
                fresh=fresh,
            )
        elif op == "segment_finished":
            await finish_segment(
                store,
                self._id(write, stored),
                duration_ms=write["duration_ms"],
                size=write["size"],
                sha256=write["sha256"],
                format=write["format"],
                path=write["path"],
            )
        else:
            raise BadWrite(f"an unknown write {op!r}")
