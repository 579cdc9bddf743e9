"""The writer thread: appends participants' PCM to files, off the event loop, in batches.

While a run of audio is being recorded it goes to a raw ``.pcm`` file (PCM16LE
mono), the cheapest thing to append to and readable as it is if the process
dies. When the run ends the thread compresses it to FLAC (lossless, via
libsndfile: https://python-soundfile.readthedocs.io/), checks it, and deletes
the raw file. Every failure (a full disk, an unwritable directory) is caught
here, reported once through :attr:`AudioFiles.failure`, and ends writing: the
recording itself never sees an exception from this thread.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AudioFailure", "AudioFiles", "FileResult", "encode_flac"]

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
_BYTES_PER_MS = SAMPLE_RATE_HZ * 2 // 1000
# Raw audio read per step while compressing: 10 s.
_ENCODE_BLOCK_BYTES = SAMPLE_RATE_HZ * 2 * 10


@dataclass(frozen=True, slots=True)
class FileResult:
    """A finished file: where it is, its format, length, size and checksum."""

    path: str
    format: str
    duration_ms: int
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class AudioFailure:
    """Why audio stopped being kept: the file and the operating system's reason."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"cannot write audio to {self.path}: {self.reason}"


def encode_flac(raw_path: Path, flac_path: Path) -> None:
    """Compress a raw PCM16LE mono file to FLAC, block by block (flat memory)."""
    import soundfile

    with (
        raw_path.open("rb") as raw,
        soundfile.SoundFile(
            flac_path,
            "w",
            samplerate=SAMPLE_RATE_HZ,
            channels=1,
            subtype="PCM_16",
            format="FLAC",
        ) as out,
    ):
        while block := raw.read(_ENCODE_BLOCK_BYTES):
            out.buffer_write(block[: len(block) // 2 * 2], dtype="int16")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class _Open:
    __slots__ = ("file", "path", "written")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = path.open("ab", buffering=0)
        self.written = 0


class AudioFiles:
    """One thread that owns every open audio file of a recording.

    Call :meth:`open`, :meth:`write` and :meth:`close` from the event loop; they
    only queue a command and never block. :meth:`close` returns a future with the
    :class:`FileResult`. :meth:`stop` finishes everything queued and ends the thread.

    Args:
        compress: compress each finished run to FLAC (False keeps the raw file).
    """

    def __init__(self, *, compress: bool = True) -> None:
        self._compress = compress
        self._commands: queue.SimpleQueue[tuple[object, ...]] = queue.SimpleQueue()
        self._files: dict[int, _Open] = {}
        # Bytes each run got on disk, kept after it ends (read once the thread stopped).
        self.written: dict[int, int] = {}
        self.failed_keys: set[int] = set()
        self.failure: concurrent.futures.Future[AudioFailure] = concurrent.futures.Future()
        self.failures = 0
        self.cpu_s = 0.0  # the thread's own CPU time, for the benchmark
        self._thread = threading.Thread(target=self._run, name="audio-files", daemon=True)
        self._thread.start()

    # -- the loop's side ----------------------------------------------------

    def open(self, key: int, path: Path) -> None:
        """Start a raw file for run ``key`` at ``path`` (its directory is made)."""
        self._commands.put(("open", key, path))

    def write(self, key: int, blocks: list[bytes]) -> None:
        """Append these PCM blocks to run ``key``."""
        self._commands.put(("writes", -1, [(key, blocks)]))

    def write_many(self, writes: list[tuple[int, list[bytes]]]) -> None:
        """Append each run's PCM blocks to it: one command, so the thread wakes once for all."""
        self._commands.put(("writes", -1, writes))

    def close(self, key: int) -> concurrent.futures.Future[FileResult | None]:
        """Finish run ``key``; the future gets its file (None if writing it failed)."""
        done: concurrent.futures.Future[FileResult | None] = concurrent.futures.Future()
        self._commands.put(("close", key, done))
        return done

    def sync(self) -> concurrent.futures.Future[None]:
        """A future resolved once every write queued before it is on disk (readable)."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._commands.put(("sync", -1, done))
        return done

    def stop(self) -> concurrent.futures.Future[None]:
        """Finish what is queued and end the thread; the future resolves when it has."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._commands.put(("stop", done))
        return done

    @property
    def is_failed(self) -> bool:
        """Whether writing failed (no more audio is being kept)."""
        return self.failure.done()

    # -- the thread ------------------------------------------------------------

    def _run(self) -> None:
        start = _thread_cpu()
        try:
            while True:
                command = self._commands.get()
                if command[0] == "stop":
                    for key in list(self._files):
                        self._finish(key)
                    done = command[1]
                    assert isinstance(done, concurrent.futures.Future)
                    done.set_result(None)
                    return
                self._handle(command)
                self.cpu_s = _thread_cpu() - start
        finally:
            self.cpu_s = _thread_cpu() - start

    def _handle(self, command: tuple[object, ...]) -> None:
        kind, key = command[0], command[1]
        assert isinstance(key, int)
        if kind == "open":
            path = command[2]
            assert isinstance(path, Path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._files[key] = _Open(path)
            except OSError as exc:
                self._fail(key, path, exc)
        elif kind == "writes":
            writes = command[2]
            assert isinstance(writes, list)
            for run_key, run_blocks in writes:
                self._write(run_key, run_blocks)
        elif kind == "sync":
            # Files are unbuffered (``buffering=0``): what was written is readable now.
            synced = command[2]
            assert isinstance(synced, concurrent.futures.Future)
            synced.set_result(None)
        elif kind == "close":
            done = command[2]
            assert isinstance(done, concurrent.futures.Future)
            done.set_result(self._finish(key))

    def _write(self, key: int, blocks: list[bytes]) -> None:
        opened = self._files.get(key)
        if opened is None:
            return
        try:
            data = memoryview(b"".join(blocks))
            while data:
                # A short write (the disk or the file size limit reached) is
                # followed by one that raises, naming the reason.
                done = opened.file.write(data) or 0
                opened.written += done
                self.written[key] = opened.written
                data = data[done:]
        except OSError as exc:
            self._fail(key, opened.path, exc)

    def _finish(self, key: int) -> FileResult | None:
        opened = self._files.pop(key, None)
        if opened is None:
            return None
        try:
            opened.file.close()
        except OSError as exc:
            self._fail(key, opened.path, exc)
            return None
        duration_ms = opened.written // _BYTES_PER_MS
        path, fmt = opened.path, "pcm_s16le"
        if self._compress and opened.written:
            flac = opened.path.with_suffix(".flac")
            try:
                encode_flac(opened.path, flac)
            except (OSError, RuntimeError) as exc:  # soundfile's errors are RuntimeErrors
                # Keep the raw file: it is complete, only bigger.
                log.warning("! audio: cannot compress %s, keeping it raw: %s", opened.path, exc)
                with contextlib.suppress(OSError):
                    flac.unlink()
            else:
                with contextlib.suppress(OSError):
                    opened.path.unlink()
                path, fmt = flac, "flac"
        try:
            return FileResult(str(path), fmt, duration_ms, path.stat().st_size, _sha256(path))
        except OSError as exc:
            self._fail(key, path, exc)
            return None

    def _fail(self, key: int, path: Path, exc: OSError) -> None:
        self.failures += 1
        self.failed_keys.add(key)
        opened = self._files.pop(key, None)
        if opened is not None:
            with contextlib.suppress(OSError):
                opened.file.close()
        if not self.failure.done():
            reason = exc.strerror or str(exc)
            log.info("! audio: cannot write %s: %s", path, reason)  # the recorder says it
            self.failure.set_result(AudioFailure(str(path), reason))


def _thread_cpu() -> float:
    return time.thread_time()
