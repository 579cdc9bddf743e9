"""Exports stream: memory stays flat however many turns a meeting has."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator

import pytest

from recorder.export.exporter import export_meeting
from storage.records import Turn, Word
from tests.support.export_data import make_meeting

TEXT = "So I think we should ship the beta on Friday, if QA and ops agree with that plan."
WORDS = tuple(Word(w, i * 150, i * 150 + 120, 0.9) for i, w in enumerate(TEXT.split()))


async def _turns(count: int) -> AsyncIterator[Turn]:
    # Made on the fly, as the store's iter_turns does, so only the exporter holds memory.
    for i in range(count):
        uid = 101 + (i // 2) % 3
        yield Turn(
            id=i + 1,
            meeting_id=1,
            uid=uid,
            display_name=None,
            stream_session_id=uid,
            turn_order=i,
            start_ms=i * 3000,
            end_ms=i * 3000 + 2500,
            text=f"{TEXT} ({i})",
            words=tuple(Word(w.text, w.start_ms + i * 3000, w.end_ms + i * 3000) for w in WORDS),
        )


async def _peak_bytes(count: int, fmt: str) -> tuple[int, int]:
    meeting = make_meeting([(101, "Alice"), (102, None), (103, "Li")], [], duration_ms=count * 3000)
    written = 0

    def sink(piece: str) -> None:
        nonlocal written
        written += len(piece)

    tracemalloc.start()
    try:
        await export_meeting(meeting, _turns(count), fmt, sink)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, written


@pytest.mark.parametrize("fmt", ["html", "md", "srt", "vtt", "json", "txt"])
async def test_memory_does_not_grow_with_the_meeting(fmt: str) -> None:
    small_peak, small_size = await _peak_bytes(1_000, fmt)
    big_peak, big_size = await _peak_bytes(5_000, fmt)
    assert big_size > 4.5 * small_size  # five times the output ...
    # ... in about the same memory: a whole-file buffer would grow fivefold.
    assert big_peak < 1.5 * small_peak + 256 * 1024, (small_peak, big_peak)


@pytest.mark.slow
async def test_html_memory_flat_at_100k_turns() -> None:
    small_peak, _ = await _peak_bytes(20_000, "html")
    big_peak, big_size = await _peak_bytes(100_000, "html")
    assert big_peak < 1.5 * small_peak + 256 * 1024, (small_peak, big_peak)
    assert big_peak < big_size / 4  # far below holding the output (or the turns)


@pytest.mark.parametrize("fmt", ["html", "md", "txt"])
async def test_tiny_prefetch_batches_give_the_same_output(fmt: str) -> None:
    from recorder.export.render import stream_template
    from recorder.export.views import Speakers, build_meeting_view, turn_views

    meeting = make_meeting([(101, "Alice"), (102, None), (103, "Li")], [], duration_ms=300_000)

    async def rendered(batch: int) -> str:
        speakers = Speakers(meeting.participants)
        context = {"meeting": build_meeting_view(meeting, speakers)}
        if fmt == "html":
            context.update(script="", script_hash="sha256-x", style="")
        turns = turn_views(_turns(37), speakers)
        return "".join(
            [
                c
                async for c in stream_template(
                    f"meeting.{fmt}", batch=batch, turns=turns, **context
                )
            ]
        )

    whole = await rendered(1000)
    assert whole.count("(36)") == 1
    for batch in (1, 4, 5, 36):
        assert await rendered(batch) == whole


async def test_a_template_reading_ahead_of_the_buffer_fails_loudly() -> None:
    from recorder.errors import RenderError
    from recorder.export.render import _Prefetched

    feed = _Prefetched(_turns(10), batch=4)
    await feed.refill()
    assert len(feed) == 4
    for _ in range(4):
        next(feed)
    with pytest.raises(RenderError, match="every item of a streamed loop must produce output"):
        next(feed)
