"""The loop's side of durable audio: runs of each participant's audio, batched to the thread.

:class:`AudioKeeper` takes every chunk a participant sends (on the loop, a few
microseconds each), gathers ``batch_ms`` of it, and hands the batch to the
:class:`~recorder.audio_store.files.AudioFiles` thread at the end of the loop's
tick, together with every other run holding half a batch or more: one command
wakes the thread for many participants, not one each (at 200 speakers, 400 a
second), and runs fall into step so the next batch goes together too. A run is audio that
arrives back to back; a pause in the audio shorter than ``max_fill_ms`` is
filled with silence so the file stays on the meeting clock, a longer one (a
mute, a rejoin, no frames during silence) starts a new file. Each file is
indexed in the store when it opens and completed when it is finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from recorder.audio import Chunk
from recorder.audio_store.files import SAMPLE_RATE_HZ, AudioFailure, AudioFiles, FileResult
from recorder.errors import RecorderError
from recorder.persist import segment_finished_write, segment_write
from storage.audio import add_segment, finish_segment
from storage.store import TranscriptStore

if TYPE_CHECKING:
    from recorder.writer import TranscriptWriter

__all__ = ["AudioKeeper"]

log = logging.getLogger(__name__)

_BYTES_PER_MS = SAMPLE_RATE_HZ * 2 // 1000


@dataclass(slots=True)
class _Run:
    key: int
    uid: int
    start_ms: float
    path: Path
    next_ms: float = 0.0  # where the next chunk continues the file, on the meeting clock
    due_ms: float = 0.0  # once next_ms reaches it, a batch is held: hand it over
    blocks: list[bytes] = field(default_factory=list)
    indexed: asyncio.Task[int | None] | None = None


class AudioKeeper:
    """Keeps every participant's received audio on disk and in the index.

    Args:
        store: where the files are indexed.
        meeting_id: the meeting being recorded.
        directory: the audio directory (a folder per meeting is made in it).
        batch_ms: audio gathered on the loop before the thread gets it.
        max_fill_ms: a pause up to this long is filled with silence, not a new file.
        on_failure: told once when audio can no longer be written.
        writer: the recording's writer: the index writes go through it (in order,
            journaled while the database is away) instead of straight to the store.
    """

    def __init__(
        self,
        store: TranscriptStore,
        meeting_id: int,
        directory: Path,
        *,
        batch_ms: float = 500.0,
        max_fill_ms: float = 1000.0,
        on_failure: Callable[[AudioFailure], None] | None = None,
        writer: TranscriptWriter | None = None,
    ) -> None:
        self._writer = writer
        self._store = store
        self._meeting_id = meeting_id
        self._folder = directory / f"meeting-{meeting_id}"
        self._batch_ms = float(int(batch_ms))
        self._max_fill_ms = max_fill_ms
        self._files = AudioFiles()
        self._runs: dict[int, _Run] = {}
        self._all_runs: list[_Run] = []
        self._failed_runs: list[_Run] = []
        self._next_key = 0
        self._is_closed = False
        self._is_handover_due = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_failure = on_failure
        self.failure: AudioFailure | None = None
        # After a failure: where each participant's audio stopped being kept, and
        # where their audio ends (followed only once it failed), for the gaps.
        self.lost_from_ms: dict[int, float] = {}
        self.last_end_ms: dict[int, float] = {}
        self.kept_ms: dict[int, float] = {}
        self._watch = asyncio.ensure_future(asyncio.wrap_future(self._files.failure))
        self._watch.add_done_callback(self._failed)

    @property
    def files(self) -> AudioFiles:
        """The writer thread (its CPU time is in ``files.cpu_s``)."""
        return self._files

    def feed(self, uid: int, chunk: Chunk) -> None:
        """Keep one chunk of a participant's audio (on the loop; never blocks)."""
        if self.failure is not None:
            if not any(run.uid == uid for run in self._failed_runs):
                self.lost_from_ms.setdefault(uid, chunk.start_ms)
            self.last_end_ms[uid] = chunk.end_ms
            return
        # Once per chunk per participant: the common case is one lookup, two
        # comparisons, an append and an addition, with no call and no allocation.
        run = self._runs.get(uid)
        if run is not None:
            pause = chunk.start_ms - run.next_ms
            if pause >= 1.0 or pause < -self._max_fill_ms:
                run = self._after_pause(run, pause)
        if run is None:
            run = self._start_run(uid, chunk.start_ms)
        run.blocks.append(chunk.pcm)
        run.next_ms += chunk.duration_ms
        if run.next_ms >= run.due_ms:
            self._batch_held(run)

    def end_run(self, uid: int) -> None:
        """The participant's audio stopped (mute, leave): finish its file."""
        run = self._runs.pop(uid, None)
        if run is None:
            return
        self._hand_over(run)
        done = asyncio.wrap_future(self._files.close(run.key))
        self._spawn(self._index_finished(run, done), f"audio-close-{run.uid}")

    async def flush(self, uid: int) -> None:
        """Put ``uid``'s audio received so far on disk, readable by a repair meanwhile.

        The run being recorded stays open; its raw file can be read up to here
        (:func:`~recorder.audio_store.reader.read_stretch` reads an unfinished file).
        """
        if self._is_closed:
            return
        run = self._runs.get(uid)
        if run is not None:
            self._hand_over(run)
        if self.failure is None:
            await asyncio.wrap_future(self._files.sync())
        # A repair finds the files through the index: wait for the open run's row.
        indexing = [r.indexed for r in self._all_runs if r.uid == uid and r.indexed is not None]
        await asyncio.gather(*indexing, return_exceptions=True)

    async def aclose(self) -> None:
        """Finish every file, wait for the thread and the index, stop the thread."""
        self._is_closed = True
        for uid in list(self._runs):
            self.end_run(uid)
        await asyncio.wrap_future(self._files.stop())
        if self.failure is None and self._files.failure.done():
            # It failed as it finished, before the loop heard of it.
            self.failure = self._files.failure.result()
            if self._on_failure is not None:
                self._on_failure(self.failure)
        # The thread has stopped: what reached the disk is final.
        written = self._files.written
        self.kept_ms = {}
        for run in self._all_runs:
            kept = written.get(run.key, 0) / _BYTES_PER_MS
            self.kept_ms[run.uid] = self.kept_ms.get(run.uid, 0.0) + kept
        for run in self._all_runs:
            if run.key in self._files.failed_keys:
                lost_from = run.start_ms + written.get(run.key, 0) / _BYTES_PER_MS
                self.lost_from_ms[run.uid] = min(
                    self.lost_from_ms.get(run.uid, lost_from), lost_from
                )
                self.last_end_ms[run.uid] = max(self.last_end_ms.get(run.uid, 0.0), run.next_ms)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        indexing = [run.indexed for run in self._all_runs if run.indexed is not None]
        await asyncio.gather(*indexing, return_exceptions=True)
        self._watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watch

    # -- internals ---------------------------------------------------------

    def _start_run(self, uid: int, start_ms: float) -> _Run:
        key = self._next_key
        self._next_key += 1
        path = self._folder / f"uid-{uid}-{int(start_ms):010d}ms.pcm"
        run = self._runs[uid] = _Run(
            key, uid, start_ms, path, next_ms=start_ms, due_ms=start_ms + self._batch_ms
        )
        self._all_runs.append(run)
        self._files.open(key, path)
        run.indexed = asyncio.create_task(self._index_opened(run), name=f"audio-index-{uid}-{key}")
        return run

    def _after_pause(self, run: _Run, pause: float) -> _Run | None:
        """A pause before the next chunk: fill it with silence, or end the run (None)."""
        if pause > self._max_fill_ms or pause < -self._max_fill_ms:
            self.end_run(run.uid)
            return None
        fill = int(pause)
        run.blocks.append(bytes(fill * _BYTES_PER_MS))
        run.next_ms += fill
        if run.next_ms >= run.due_ms:
            self._batch_held(run)
        return run

    def _batch_held(self, run: _Run) -> None:
        """``run`` holds a batch: it goes to the thread at the end of this tick, with others."""
        if run.next_ms - run.due_ms >= self._batch_ms:
            # Two batches held: the loop is draining a backlog in one go; hand this
            # one over now rather than hold more until the drain ends.
            self._hand_over(run)
        elif not self._is_handover_due:
            self._is_handover_due = True
            asyncio.get_running_loop().call_soon(self._hand_over_due)

    def _hand_over_due(self) -> None:
        """Hand every run holding half a batch or more to the thread, in one command."""
        self._is_handover_due = False
        half = self._batch_ms / 2
        writes: list[tuple[int, list[bytes]]] = []
        for run in self._runs.values():
            if run.blocks and run.due_ms - run.next_ms <= half:
                writes.append((run.key, run.blocks))
                run.blocks = []
                run.due_ms = run.next_ms + self._batch_ms
        if writes:
            self._files.write_many(writes)

    def _hand_over(self, run: _Run) -> None:
        if run.blocks:
            self._files.write(run.key, run.blocks)
            run.blocks = []
        run.due_ms = run.next_ms + self._batch_ms

    async def _index_opened(self, run: _Run) -> int | None:
        if self._writer is not None:
            self._writer.submit(
                segment_write(
                    str(run.path),
                    self._meeting_id,
                    run.uid,
                    start_ms=int(round(run.start_ms)),
                    sample_rate_hz=SAMPLE_RATE_HZ,
                    format="pcm_s16le",
                    path=str(run.path),
                )
            )
            return 0  # the writer knows the row by its ref, the file's first path

        def write() -> Awaitable[int]:
            return add_segment(
                self._store,
                self._meeting_id,
                run.uid,
                start_ms=int(round(run.start_ms)),
                sample_rate_hz=SAMPLE_RATE_HZ,
                format="pcm_s16le",
                path=str(run.path),
            )

        try:
            return await write()
        except RecorderError as exc:
            log.warning("! audio file %s not indexed: %s", run.path, exc)
            return None

    async def _index_finished(self, run: _Run, done: asyncio.Future[FileResult | None]) -> None:
        result = await done
        assert run.indexed is not None
        segment_id = await run.indexed
        if result is None or segment_id is None:
            return
        if self._writer is not None:
            self._writer.submit(
                segment_finished_write(
                    str(run.path),
                    duration_ms=result.duration_ms,
                    size=result.size,
                    sha256=result.sha256,
                    format=result.format,
                    path=result.path,
                )
            )
            return

        def write() -> Awaitable[None]:
            return finish_segment(
                self._store,
                segment_id,
                duration_ms=result.duration_ms,
                size=result.size,
                sha256=result.sha256,
                format=result.format,
                path=result.path,
            )

        try:
            await write()
        except RecorderError as exc:
            log.warning("! audio file %s not indexed: %s", result.path, exc)

    def _failed(self, watch: asyncio.Future[AudioFailure]) -> None:
        if watch.cancelled() or self.failure is not None:
            return
        self.failure = watch.result()
        # Where each run stopped reaching the disk is known once the thread stops.
        self._failed_runs = list(self._runs.values())
        for run in self._failed_runs:
            self.last_end_ms[run.uid] = run.next_ms
        self._runs.clear()
        if self._on_failure is not None:
            self._on_failure(self.failure)

    def _spawn(self, coroutine: object, name: str) -> None:
        assert asyncio.iscoroutine(coroutine)
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
