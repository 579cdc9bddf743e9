"""The pre-recorded (async) transcription API client: upload, transcribe, poll.

Used to repair transcription gaps and to re-transcribe a meeting from its
stored audio (docs/providers.md, "Pre-recorded (async) API").
"""

from recorder.batch.client import AsyncClient, Transcript, TranscriptWord

__all__ = ["AsyncClient", "Transcript", "TranscriptWord"]
