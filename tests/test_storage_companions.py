"""The store's companion modules (gaps, audio index, notes) go through its one transaction hook.

A store that guards writes overrides ``_transaction`` alone (the fleet's FencedStore
refuses them once its lease is lost); these check that no companion module gets
around it, through the public API (run_in_transaction, insert, require_meeting).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from recorder.fleet.job import FencedStore, LeaseLost
from storage.audio import add_segment, list_segments
from storage.db import create_engine, normalize_url, upgrade_database
from storage.gaps import add_gap, list_gaps
from storage.notes import NotesContent, NotesStore, NotesUsage
from storage.store import TranscriptStore

T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


class _LostLease:
    """The part of ActiveRecording that FencedStore asks: the lease is gone."""

    handback = False

    async def may_write(self) -> bool:
        return False


async def test_companion_writes_go_through_the_fence(db_url: str) -> None:
    await upgrade_database(db_url)
    plain = await TranscriptStore.open(db_url)
    engine = create_engine(normalize_url(db_url))
    lost: Any = _LostLease()
    fenced = FencedStore.sharing(engine, normalize_url(db_url), lost)
    try:
        meeting = await plain.start_meeting("fenced", 1, T0)
        notes = NotesStore(fenced)
        with pytest.raises(LeaseLost):
            await add_gap(fenced, meeting, 7, 0, 1000, "outage")
        with pytest.raises(LeaseLost):
            await add_segment(
                fenced, meeting, 7, start_ms=0, sample_rate_hz=16000, format="raw", path="a.raw"
            )
        with pytest.raises(LeaseLost):
            await notes.mark_pending(meeting, requested_at=T0)
        with pytest.raises(LeaseLost):
            await notes.save(
                meeting,
                NotesContent(summary=("s",)),
                model="m",
                created_at=T0,
                usage=NotesUsage(input_tokens=1, output_tokens=1, calls=1, price_usd=None),
            )
        # Reads are not fenced; and nothing was written.
        assert await list_gaps(fenced, meeting) == []
        assert await list_segments(fenced, meeting) == []
        assert await notes.pending() == [] and await notes.current(meeting) is None
        # The same calls on the plain store write (so the refusals above were the fence's).
        await add_gap(plain, meeting, 7, 0, 1000, "outage")
        await NotesStore(plain).mark_pending(meeting, requested_at=T0)
        assert len(await list_gaps(fenced, meeting)) == 1
        assert [p.meeting_id for p in await notes.pending()] == [meeting]
    finally:
        await engine.dispose()
        await plain.close()


async def test_companions_see_a_missing_meeting(store: TranscriptStore) -> None:
    from recorder.errors import NotFoundError

    with pytest.raises(NotFoundError, match="no meeting with id 404"):
        await NotesStore(store).mark_pending(404, requested_at=T0)
