"""The index of stored audio: one row per file of a participant's continuous audio.

The files themselves are written by ``recorder.audio_store``; a row is added
when a file is opened (so a recorder killed mid-meeting leaves its files
findable) and completed when the file is finished, with its length, size and
SHA-256.
"""

from __future__ import annotations

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from recorder.errors import NotFoundError
from storage.models import AudioSegmentRow
from storage.records import AudioSegment
from storage.store import TranscriptStore

__all__ = ["add_segment", "finish_segment", "list_segments"]

# Built once (a file opens and finishes every few seconds per speaker): building a
# statement costs more than running it once SQLAlchemy has cached its compiled form.
_ADD_SEGMENT = insert(AudioSegmentRow).returning(AudioSegmentRow.id)
_FINISH_SEGMENT = update(AudioSegmentRow).where(AudioSegmentRow.id == bindparam("segment_id_"))


async def add_segment(
    store: TranscriptStore,
    meeting_id: int,
    uid: int,
    *,
    start_ms: int,
    sample_rate_hz: int,
    format: str,
    path: str,
) -> int:
    """Index a file that is being written; returns the segment id."""

    async def work(connection: AsyncConnection) -> int:
        result = await connection.execute(
            _ADD_SEGMENT,
            {
                "meeting_id": meeting_id,
                "uid": uid,
                "start_ms": int(start_ms),
                "duration_ms": 0,
                "sample_rate_hz": sample_rate_hz,
                "format": format,
                "bytes": 0,
                "sha256": None,
                "path": path,
                "is_complete": False,
            },
        )
        return int(result.scalar_one())

    return await store.run_in_transaction(work, write=True)


async def finish_segment(
    store: TranscriptStore,
    segment_id: int,
    *,
    duration_ms: int,
    size: int,
    sha256: str | None,
    format: str,
    path: str,
    is_complete: bool = True,
) -> None:
    """Record a file's final length, size, checksum, format and path.

    Raises:
        NotFoundError: no such segment.
    """

    async def work(connection: AsyncConnection) -> None:
        result = await connection.execute(
            _FINISH_SEGMENT,
            {
                "segment_id_": segment_id,
                "duration_ms": int(duration_ms),
                "bytes": int(size),
                "sha256": sha256,
                "format": format,
                "path": path,
                "is_complete": is_complete,
            },
        )
        if result.rowcount == 0:
            raise NotFoundError(f"no audio segment with id {segment_id}")

    await store.run_in_transaction(work, write=True)


async def list_segments(
    store: TranscriptStore, meeting_id: int, uid: int | None = None
) -> list[AudioSegment]:
    """A meeting's stored audio files (of one participant, if given), in time order."""
    query = select(AudioSegmentRow).where(AudioSegmentRow.meeting_id == meeting_id)
    if uid is not None:
        query = query.where(AudioSegmentRow.uid == uid)
    query = query.order_by(AudioSegmentRow.uid, AudioSegmentRow.start_ms, AudioSegmentRow.id)

    async def work(connection: AsyncConnection) -> list[AudioSegment]:
        return [
            AudioSegment(
                id=row.id,
                meeting_id=row.meeting_id,
                uid=row.uid,
                start_ms=row.start_ms,
                duration_ms=row.duration_ms,
                sample_rate_hz=row.sample_rate_hz,
                format=row.format,
                bytes=row.bytes,
                sha256=row.sha256,
                path=row.path,
                is_complete=bool(row.is_complete),
            )
            for row in await connection.execute(query)
        ]

    return await store.run_in_transaction(work, write=False)
