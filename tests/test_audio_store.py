"""The audio writer thread and the keeper: runs, files, FLAC, the index, reading back, failures."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import soundfile

from recorder.audio import Chunk
from recorder.audio_store import AudioKeeper, covered_ms, read_stretch
from storage.audio import list_segments
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
    failures = []
    keeper = AudioKeeper(store, meeting, blocker, on_failure=failures.append)
    for chunk in chunks(0, 3000, seed=6):
        keeper.feed(1, chunk)
        await asyncio.sleep(0)
    await keeper.aclose()
    assert len(failures) == 1 and "not-a-dir" in str(failures[0])
    assert keeper.failure is not None
    assert keeper.lost_from_ms == {1: 0.0}
    assert keeper.kept_ms == {1: 0.0}
