"""A bounded, disk-backed journal of the writes a recording could not store yet.

While the database is away, :class:`~recorder.writer.TranscriptWriter` moves
its pending writes here instead of holding them in memory: one JSON object a
line, appended and fsync'd in batches (one ``write`` and one ``fsync`` per
spill), so memory stays bounded and a recorder killed while the database is
away leaves them on disk. When the database is back they are replayed in
order and the file is removed. A process that died leaves its journal behind:
the next start, or ``recorder repair``, replays it (:func:`leftover_journals`).

The file is locked (``flock``) while a recorder writes it, so another process
never replays a live meeting's journal. A torn last line (a crash mid-append)
is ignored: it was never acknowledged as stored. The file is bounded in bytes;
past the bound, or on a full disk, :class:`JournalFull` is raised and the
writer says so and keeps the writes in memory.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recorder.errors import RecorderError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "Journal",
    "JournalFull",
    "journal_path",
    "leftover_journals",
    "read_entries",
]

log = logging.getLogger(__name__)

#: A turn is a few hundred bytes as JSON: 256 MiB holds days of a large meeting's turns.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
_SUFFIX = ".jsonl"


class JournalFull(RecorderError):
    """The journal could not take more writes (its bound reached, or the disk full)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"the write journal {self.path} is full ({self.reason}); free some disk space"


def journal_path(directory: Path, meeting_id: int) -> Path:
    """Where a meeting's journal lives under ``directory`` (the audio directory)."""
    return directory / "journals" / f"meeting-{meeting_id}{_SUFFIX}"


def leftover_journals(directory: Path, meeting_id: int | None = None) -> list[Path]:
    """Journals left by recorders that died (unlocked), oldest meeting first.

    A journal locked by a live recorder is skipped: that recorder replays it.
    """
    folder = directory / "journals"
    if meeting_id is not None:
        candidates = [journal_path(directory, meeting_id)]
    else:
        candidates = sorted(folder.glob(f"meeting-*{_SUFFIX}"), key=_meeting_number)
    found = []
    for path in candidates:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live recorder holds it
        finally:
            os.close(fd)
        found.append(path)
    return found


def _meeting_number(path: Path) -> int:
    digits = path.stem.removeprefix("meeting-")
    return int(digits) if digits.isdigit() else 0


def read_entries(path: Path, offset: int = 0, *, limit: int | None = None) -> tuple[list[Any], int]:
    """Entries from byte ``offset`` on (at most ``limit``), and the offset after them.

    A last line without its newline is a torn append and is left out. A
    complete line that is not JSON is skipped with a warning (it cannot be
    stored; the rest still can).
    """
    entries: list[Any] = []
    with path.open("rb") as file:
        file.seek(offset)
        for line in file:
            if not line.endswith(b"\n"):
                log.warning("! ignoring a torn last line in %s (a crash mid-append)", path)
                break
            offset += len(line)
            try:
                entries.append(json.loads(line))
            except ValueError:
                log.warning("! skipping a corrupt line in %s at byte %d", path, offset - len(line))
                continue
            if limit is not None and len(entries) >= limit:
                break
    return entries, offset


class Journal:
    """One meeting's journal file, written by one recorder (blocking calls: use a thread).

    Args:
        path: the file (created, with its folder, on the first append).
        max_bytes: the bound on the file's size.
    """

    def __init__(self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._fd: int | None = None
        self.size = 0
        self.appended = 0

    @property
    def exists(self) -> bool:
        """Whether the file is open (something was appended and not yet removed)."""
        return self._fd is not None

    def append(self, entries: Sequence[Any]) -> None:
        """Append ``entries`` as JSON lines and fsync them: all of them, or none.

        Raises:
            JournalFull: the bound would be passed, or the disk is full or unwritable.
        """
        if not entries:
            return
        data = _encode(entries)
        if self.size + len(data) > self._max_bytes:
            raise JournalFull(self.path, f"over its bound of {self._max_bytes} bytes")
        try:
            fd = self._open()
            _write_all(fd, data)
            os.fsync(fd)
        except OSError as exc:
            if self._fd is not None:
                # Cut a partial append back off: the journal only ever holds whole lines.
                try:
                    os.ftruncate(self._fd, self.size)
                except OSError:
                    pass  # a torn last line is ignored when read
            reason = "no space left on the device" if exc.errno == errno.ENOSPC else exc.strerror
            raise JournalFull(self.path, reason or str(exc)) from exc
        self.size += len(data)
        self.appended += len(entries)

    def insert_first(self, entries: Sequence[Any]) -> None:
        """Put ``entries`` before everything journaled so far (after the header line).

        For writes that were in flight when later ones were journaled, and are
        left over as the writer stops. The file is rewritten and renamed over.

        Raises:
            JournalFull: the disk is full or unwritable (the journal is unchanged).
        """
        if not entries or self._fd is None:
            return
        old = self._fd
        try:
            content = os.pread(old, self.size, 0)
            split = content.find(b"\n") + 1
            data = content[:split] + _encode(entries) + content[split:]
            temporary = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            try:
                _write_all(fd, data)
                os.fsync(fd)
                os.replace(temporary, self.path)
            except OSError:
                os.close(fd)
                temporary.unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise JournalFull(self.path, exc.strerror or str(exc)) from exc
        os.close(old)
        self._fd = fd
        self.size = len(data)
        self.appended += len(entries)

    def read(self, offset: int, limit: int) -> tuple[list[Any], int]:
        """Up to ``limit`` entries from byte ``offset`` on, and the offset after them."""
        return read_entries(self.path, offset, limit=limit)

    def remove(self) -> None:
        """Delete the file (everything in it is stored) and release the lock."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
        self.size = 0

    def close(self) -> None:
        """Release the file, keeping it (its writes were not all stored)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                os.close(fd)
                raise OSError(errno.EBUSY, "another recorder holds it") from exc
            # A journal left by a dead recorder of this meeting (a resumed meeting) is
            # kept: it is replayed before anything appended now. A torn last line of
            # it is cut off, so the next append starts on a line of its own.
            self.size = _whole_lines(fd)
            os.ftruncate(fd, self.size)
            self._fd = fd
        return self._fd


def _whole_lines(fd: int) -> int:
    """The length of the file up to and including its last newline."""
    size = os.fstat(fd).st_size
    tail = 4096
    end = size
    while end > 0:
        start = max(0, end - tail)
        block = os.pread(fd, end - start, start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def _encode(entries: Sequence[Any]) -> bytes:
    return b"".join(
        json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        for entry in entries
    )


def _write_all(fd: int, data: bytes) -> None:
    written = 0
    while written < len(data):
        written += os.write(fd, data[written:])
