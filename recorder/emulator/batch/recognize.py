"""What the async emulator hears in an uploaded file: tone-code words, as the streaming one does."""

from __future__ import annotations

import io
from typing import Any

from recorder.tonecode import decode

__all__ = ["MIN_DURATION_MS", "NotAudio", "recognize"]

#: Shorter audio fails with "Audio duration is too short." (docs/providers.md,
#: "Pre-recorded (async) API").
MIN_DURATION_MS = 160
_RATE_HZ = 16000


class NotAudio(Exception):
    """The upload is not an audio file the emulator can read."""


def recognize(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """Words (API shape, ms) and the audio's duration in ms.

    Raises:
        NotAudio: not a readable audio file.
    """
    import numpy as np
    import soundfile

    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise NotAudio(str(exc)) from exc
    mono = samples[:, 0]
    if rate != _RATE_HZ:
        import soxr

        mono = soxr.resample(mono, rate, _RATE_HZ).astype(np.int16)
    duration_ms = len(mono) * 1000 // _RATE_HZ
    words = [
        {
            "text": word.text,
            "start": int(word.start_ms),
            "end": int(word.end_ms),
            "confidence": 0.99,
            "speaker": None,
        }
        for word in decode(mono.tobytes(), _RATE_HZ)
        if word.text
    ]
    return words, duration_ms
