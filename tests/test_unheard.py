"""recorder.unheard: speech spans from chunks, and what of them no turn or gap covers."""

from __future__ import annotations

import gc

from recorder.audio import Chunk, bytes_for_ms
from recorder.unheard import SpeechSpans, _uncovered


def chunk(start_ms: float, is_speech: bool = True, ms: float = 100.0) -> Chunk:
    return Chunk(bytes(bytes_for_ms(ms)), start_ms, is_speech)


def test_speech_chunks_merge_across_short_pauses_and_silence_is_not_kept() -> None:
    spans = SpeechSpans()
    for at in (0, 100, 200, 500, 600):  # a 200 ms pause: one span
        spans.heard(7, chunk(at))
    spans.heard(7, chunk(700, is_speech=False))
    spans.heard(7, chunk(2000))  # a second later: a span of its own
    spans.heard(8, chunk(0, is_speech=False))
    assert spans.of(7) == [(0, 700), (2000, 2100)]
    assert spans.uids == [7] and spans.of(8) == []


def test_a_long_meetings_spans_are_no_work_for_the_garbage_collector() -> None:
    # A span a sentence: an hour of 500 speakers is some 500,000, which a full
    # collection (a pause of everyone's audio) must not have to walk.
    spans = SpeechSpans()
    spans.heard(7, chunk(0))
    gc.collect()
    before = len(gc.get_objects())
    for second in range(1, 2001):
        spans.heard(7, chunk(second * 1000.0))
    assert len(gc.get_objects()) - before < 100
    assert len(spans.of(7)) == 2001 and spans.of(7)[-1] == (2_000_000, 2_000_100)


def test_only_what_no_cover_reaches_is_uncovered() -> None:
    speech = [(0.0, 3000.0), (5000.0, 5200.0), (8000.0, 9000.0)]
    covers = [(100.0, 1000.0), (2000.0, 2800.0), (8300.0, 8700.0)]
    # 0-100 and 2800-3000 are within the slack of a cover; 1000-2000 is not covered
    # (1250-1750 after the slack); 5000-5200 is too short to be a word; 8000-9000 is
    # covered but for its edges, which are within the slack.
    assert _uncovered(speech, covers) == [(1250, 1750)]
    assert _uncovered([(0.0, 2000.0)], []) == [(0, 2000)]
    assert _uncovered([(0.0, 2000.0)], [(0.0, 2000.0)]) == []
