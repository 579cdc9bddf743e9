"""Durable per-participant audio: the writer thread, the loop's keeper and the reader.

Every participant's received audio is kept on disk as it arrives (the source
of truth that repairs transcription gaps), one file per continuous run, FLAC
once finished, indexed in the ``audio_segments`` table.
"""

from recorder.audio_store.files import AudioFailure, AudioFiles, FileResult
from recorder.audio_store.keeper import AudioKeeper
from recorder.audio_store.reader import covered_ms, read_stretch

__all__ = [
    "AudioFailure",
    "AudioFiles",
    "AudioKeeper",
    "FileResult",
    "covered_ms",
    "read_stretch",
]
