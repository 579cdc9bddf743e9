"""The audio writer thread and the keeper: runs, files, FLAC, the index, reading back, failures."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import soundfile

from recorder.audio import Chunk
from recorder.audio_store import AudioFailure, AudioKeeper, covered_ms, read_stretch
from recorder.audio_store.repair import place_repaired
from storage.audio import list_segments
from storage.records import Turn, Word
from storage.store import TranscriptStore

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
RATE = 16000


def pcm(ms: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 3000, RATE * ms // 1000)).astype(np.int16).tobytes()


def chunks(start_ms: int, total_ms: int, seed: int, step_ms: int = 100) -> list[Chunk]:
    audio = pcm(total_ms, seed)
    size = RATE * 2 * step_ms // 1000
    return [
        Chunk(audio[i : i + size], start_ms + i // 32, is_speech=True)
        for i in range(0, len(audio), size)
    ]


async def test_runs_become_flac_files_indexed_and_readable(
    tmp_path: Path, store: TranscriptStore
) -> None:
    meeting = await store.start_meeting("c", 1, T0)
    keeper = AudioKeeper(store, meeting, tmp_path / "audio", batch_ms=300)
    first = chunks(0, 2000, seed=1)
    # A 300 ms pause is filled with silence (same file); a 5 s pause starts a new file.
    second = chunks(2300, 1000, seed=2)
    third = chunks(8300, 1500, seed=3)
    other = chunks(500, 1200, seed=4)
    for chunk in first + second + third:
        keeper.feed(101, chunk)
    for chunk in other:
        keeper.feed(202, chunk)
    keeper.end_run(202)  # muted
    await keeper.aclose()
    segments = await list_segments(store, meeting)
    assert [(s.uid, s.start_ms, s.duration_ms, s.format) for s in segments] == [
        (101, 0, 3300, "flac"),
        (101, 8300, 1500, "flac"),
        (202, 500, 1200, "flac"),
    ]
    for segment in segments:
        path = Path(segment.path)
        assert path.parent == tmp_path / "audio" / f"meeting-{meeting}"
        data = path.read_bytes()  # noqa: ASYNC240 - a test reading its own files
        assert segment.is_complete and segment.bytes == len(data)
        assert segment.sha256 == hashlib.sha256(data).hexdigest()
        assert soundfile.info(str(path)).samplerate == RATE
        assert not path.with_suffix(".pcm").exists()  # noqa: ASYNC240
    mine = [s for s in segments if s.uid == 101]
    # Read back on the meeting clock: the audio as it was, silence in the filled pause.
    back = read_stretch(mine, 0, 9800)
    expected = (
        b"".join(c.pcm for c in first)
        + bytes(300 * 32)
        + b"".join(c.pcm for c in second)
        + bytes(5000 * 32)
        + b"".join(c.pcm for c in third)
    )
    assert back == expected
    assert covered_ms(mine, 0, 9800) == 4800
    assert keeper.kept_ms == {101: 4800.0, 202: 1200.0}


async def test_a_killed_recorders_raw_file_reads_back(
    tmp_path: Path, store: TranscriptStore
) -> None:
    meeting = await store.start_meeting("c", 1, T0)
    keeper = AudioKeeper(store, meeting, tmp_path, batch_ms=100)
    said = chunks(1000, 1000, seed=5)
    for chunk in said:
        keeper.feed(7, chunk)
    # Wait until the thread has written it all, then look before the run is finished,
    # as 'recorder repair' does after a crash.
    path = tmp_path / f"meeting-{meeting}" / "uid-7-0000001000ms.pcm"
    for _ in range(200):
        await asyncio.sleep(0.01)  # the writer thread has no event to wait on
        if path.exists() and path.stat().st_size == 32000:  # noqa: ASYNC240
            break
    [segment] = await list_segments(store, meeting)
    assert not segment.is_complete and segment.format == "pcm_s16le"
    assert read_stretch([segment], 1000, 2000) == b"".join(c.pcm for c in said)
    await keeper.aclose()


async def test_an_unwritable_directory_is_one_warning_and_no_crash(
    tmp_path: Path, store: TranscriptStore
) -> None:
    meeting = await store.start_meeting("c", 1, T0)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the audio folder should be")  # noqa: ASYNC240
    failures: list[AudioFailure] = []
    keeper = AudioKeeper(store, meeting, blocker, on_failure=failures.append)
    for chunk in chunks(0, 3000, seed=6):
        keeper.feed(1, chunk)
        await asyncio.sleep(0)
    await keeper.aclose()
    assert len(failures) == 1 and "not-a-dir" in str(failures[0])
    assert keeper.failure is not None
    assert keeper.lost_from_ms == {1: 0.0}
    assert keeper.kept_ms == {1: 0.0}


async def test_a_flushed_run_reads_back_while_it_is_still_being_recorded(
    tmp_path: Path, store: TranscriptStore
) -> None:
    # A repair during the meeting reads the file being written, up to what was flushed.
    meeting = await store.start_meeting("c", 1, T0)
    keeper = AudioKeeper(store, meeting, tmp_path, batch_ms=1000)
    said = chunks(2000, 700, seed=6)  # less than a batch: still held on the loop
    for chunk in said:
        keeper.feed(9, chunk)
    await keeper.flush(9)
    [segment] = await list_segments(store, meeting)
    assert not segment.is_complete
    assert read_stretch([segment], 2000, 2700) == b"".join(c.pcm for c in said)
    more = chunks(2700, 300, seed=7)
    for chunk in more:
        keeper.feed(9, chunk)  # the same run goes on after the flush
    await keeper.aclose()
    [segment] = await list_segments(store, meeting)
    assert segment.is_complete and segment.duration_ms == 1000
    assert read_stretch([segment], 2000, 3000) == b"".join(c.pcm for c in said + more)
    await keeper.flush(9)  # after the end: nothing to do, and no hang


def _turn(turn_id: int, words: list[tuple[str, int, int]], order: int = 0) -> Turn:
    placed = tuple(Word(text, start, end) for text, start, end in words)
    return Turn(
        id=turn_id,
        meeting_id=1,
        uid=5,
        display_name=None,
        stream_session_id=turn_id,
        turn_order=order,
        start_ms=placed[0].start_ms,
        end_ms=placed[-1].end_ms,
        text=" ".join(w.text for w in placed),
        words=placed,
    )


def test_a_repaired_word_across_a_gap_edge_replaces_the_live_fragment() -> None:
    # The gap is 10_000..20_000. Live transcription resumed inside "bravo" (19_900..
    # 20_200) and heard its tail as a fragment; "alpha" before the gap was heard whole.
    stored = [
        _turn(1, [("alpha", 9_500, 9_800)]),
        _turn(2, [("[speech 0.2 s]", 20_000, 20_200), ("charlie.", 20_260, 20_600)]),
        _turn(3, [("[speech 0.1 s]", 9_950, 10_050)]),  # live's own cut at the start
    ]
    heard = [  # the stored audio from 9_000 (the gap's padded stretch), whole words
        Word("alpha", 500, 800),
        Word("one", 900, 1_080),
        Word("two", 3_000, 3_200),
        Word("bravo", 10_900, 11_200),
        Word("charlie.", 11_260, 11_600),
    ]
    placed, displaced = place_repaired(heard, 9_000, stored, [10_000, 20_000])
    assert [(w.text, w.start_ms) for w in placed] == [
        ("one", 9_900),
        ("two", 12_000),
        ("bravo", 19_900),
    ]
    assert displaced == {(2, 0), (3, 0)}
    # A plain word inside the gap displaces nothing, and live words outside stay.
    placed, displaced = place_repaired(heard[2:3], 9_000, stored, [10_000, 20_000])
    assert [w.text for w in placed] == ["two"] and displaced == set()


class CountedWrites:
    """Counts the write commands a keeper sends its thread (each one wakes it)."""

    def __init__(self, keeper: AudioKeeper) -> None:
        self.commands: list[str] = []
        files = keeper.files
        write, write_many = files.write, files.write_many

        def one(key: int, blocks: list[bytes]) -> None:
            self.commands.append("write")
            write(key, blocks)

        def many(writes: list[tuple[int, list[bytes]]]) -> None:
            self.commands.append(f"write_many({len(writes)})")
            write_many(writes)

        files.write, files.write_many = one, many  # type: ignore[method-assign]


async def test_runs_due_in_one_tick_go_to_the_thread_in_one_command(
    tmp_path: Path, store: TranscriptStore
) -> None:
    meeting = await store.start_meeting("c", 1, T0)
    keeper = AudioKeeper(store, meeting, tmp_path, batch_ms=500)
    counted = CountedWrites(keeper)
    said = {uid: chunks(0, 1000, seed=uid) for uid in range(1, 51)}
    for step in range(10):  # ten ticks of the loop, each with every speaker's next chunk
        for uid, theirs in said.items():
            keeper.feed(uid, theirs[step])
        await asyncio.sleep(0)
    # Not 100 commands (one per speaker per batch): one per tick a batch fell due in.
    assert counted.commands == ["write_many(50)", "write_many(50)"]
    await keeper.aclose()
    segments = {s.uid: s for s in await list_segments(store, meeting)}
    for uid, theirs in said.items():
        assert read_stretch([segments[uid]], 0, 1000) == b"".join(c.pcm for c in theirs)


async def test_staggered_runs_fall_into_step(tmp_path: Path, store: TranscriptStore) -> None:
    # Speakers starting 0-400 ms apart: a batch handed over takes along every run
    # holding half a batch, so after the first few their batches go together.
    meeting = await store.start_meeting("c", 1, T0)
    keeper = AudioKeeper(store, meeting, tmp_path, batch_ms=500)
    counted = CountedWrites(keeper)
    said = {uid: chunks(100 * (uid % 5), 3000, seed=uid) for uid in range(1, 21)}
    for step in range(34):
        for uid, theirs in said.items():
            late = uid % 5  # this speaker's first chunk comes this many ticks later
            if 0 <= step - late < len(theirs):
                keeper.feed(uid, theirs[step - late])
        await asyncio.sleep(0)
    # Batch by batch, a command each: 20 speakers x 6 = 120. In step: 7.
    assert len(counted.commands) == 7
    assert all(command.startswith("write_many") for command in counted.commands)
    await keeper.aclose()  # each run's last part of a batch goes as its run ends
    segments = {s.uid: s for s in await list_segments(store, meeting)}
    for uid, theirs in said.items():
        start = 100 * (uid % 5)
        assert read_stretch([segments[uid]], start, start + 3000) == b"".join(c.pcm for c in theirs)


async def test_a_backlog_fed_in_one_go_is_handed_over_without_waiting_for_the_tick(
    tmp_path: Path, store: TranscriptStore
) -> None:
    # The loop draining seconds of queued audio at once holds at most two batches a run.
    meeting = await store.start_meeting("c", 1, T0)
    keeper = AudioKeeper(store, meeting, tmp_path, batch_ms=300)
    counted = CountedWrites(keeper)
    for chunk in chunks(0, 1200, seed=8):
        keeper.feed(3, chunk)
    assert counted.commands == ["write", "write"]  # at 600 ms and at 1200 ms held
    await keeper.aclose()
    [segment] = await list_segments(store, meeting)
    assert segment.duration_ms == 1200
