"""Read a stretch of one participant's stored audio back, on the meeting clock.

Finished files are FLAC; a file whose recorder died before finishing it is
still the raw PCM16LE it was being written as, and reads the same way. Where
no file covers part of the stretch, silence stands in, so positions in the
result map to meeting time by adding ``from_ms``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from recorder.audio_store.files import SAMPLE_RATE_HZ
from storage.records import AudioSegment

__all__ = ["covered_ms", "read_stretch"]

_BYTES_PER_MS = SAMPLE_RATE_HZ * 2 // 1000


def _actual(segment: AudioSegment) -> tuple[Path, str]:
    """The file and its format; a raw run compressed just before a crash is FLAC now."""
    path = Path(segment.path)
    if segment.format != "flac" and not path.exists() and path.with_suffix(".flac").exists():
        return path.with_suffix(".flac"), "flac"
    return path, segment.format


def _read_segment(segment: AudioSegment, skip_ms: int, take_ms: int) -> bytes:
    path, fmt = _actual(segment)
    if fmt == "flac":
        import soundfile

        with soundfile.SoundFile(path) as file:
            file.seek(min(skip_ms * SAMPLE_RATE_HZ // 1000, file.frames))
            return bytes(file.buffer_read(take_ms * SAMPLE_RATE_HZ // 1000, dtype="int16"))
    with path.open("rb") as file:  # raw PCM16LE, finished or not
        file.seek(skip_ms * _BYTES_PER_MS)
        data = file.read(take_ms * _BYTES_PER_MS)
        return data[: len(data) // 2 * 2]


def read_stretch(segments: Sequence[AudioSegment], from_ms: int, to_ms: int) -> bytes:
    """PCM16LE mono 16 kHz audio of ``from_ms``..``to_ms``, silence where none is stored.

    Args:
        segments: one participant's files (see ``storage.audio.list_segments``).
        from_ms: start on the meeting clock.
        to_ms: end on the meeting clock.

    Raises:
        OSError: a file cannot be read.
    """
    out = bytearray((to_ms - from_ms) * _BYTES_PER_MS)
    for segment in segments:
        end_ms = segment.start_ms + _length_ms(segment)
        lo, hi = max(from_ms, segment.start_ms), min(to_ms, end_ms)
        if hi <= lo:
            continue
        data = _read_segment(segment, lo - segment.start_ms, hi - lo)
        at = (lo - from_ms) * _BYTES_PER_MS
        out[at : at + len(data)] = data
    return bytes(out)


def _length_ms(segment: AudioSegment) -> int:
    if segment.is_complete:
        return segment.duration_ms
    # Being written when the recorder died: the file itself says how long it is.
    path, fmt = _actual(segment)
    try:
        if fmt == "flac":
            import soundfile

            return int(soundfile.info(str(path)).frames * 1000 // SAMPLE_RATE_HZ)
        return path.stat().st_size // _BYTES_PER_MS
    except (OSError, RuntimeError):
        return 0


def covered_ms(segments: Sequence[AudioSegment], from_ms: int, to_ms: int) -> int:
    """How much of ``from_ms``..``to_ms`` the files cover."""
    total = 0
    for segment in segments:
        lo = max(from_ms, segment.start_ms)
        hi = min(to_ms, segment.start_ms + _length_ms(segment))
        total += max(0, hi - lo)
    return total
