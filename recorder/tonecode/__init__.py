"""Synthetic speech whose words are carried by the audio, so the offline world can "hear" them.

Nothing offline can turn real speech into text, so the emulator, the replay transport, the demo,
the tests and the benchmarks speak tone code: every word becomes a short burst of tones
(:mod:`recorder.tonecode.modem`), words are 60 ms apart and sentences 1.2 s apart,
which an energy VAD sees as speech, pauses and turn ends (docs/providers.md, "Streaming:
messages", how u3-rt-pro ends turns). Decoding is what the
emulator calls recognition, so a chunk a client fails to deliver is a word missing from the
transcript. Decoding survives resampling, gain and mild noise; damaged bursts decode as ``None``.
Use :func:`encode_words` or :func:`encode` to speak, :func:`decode` for a whole recording and
:class:`StreamDecoder` for a live stream, and :func:`silence` for a silent participant.
"""

from __future__ import annotations

import numpy as np

from recorder.tonecode.modem import FULL_SCALE, TONE_PEAK, DecodedWord, modulate
from recorder.tonecode.stream import MERGE_GAP_MS, StreamDecoder

__all__ = [
    "MERGE_GAP_MS",
    "SENTENCE_GAP_MS",
    "SILENCE_DBFS",
    "TONE_DBFS",
    "WORD_GAP_MS",
    "DecodedWord",
    "StreamDecoder",
    "decode",
    "encode",
    "encode_words",
    "ends_sentence",
    "silence",
]

#: Silence after a word inside a sentence: below the emulator's 100 ms pause
#: (``min_turn_silence``) so a sentence is one stretch of speech.
WORD_GAP_MS = 60
#: Silence after a sentence (a word ending in . ? !): above the 1000 ms ``max_turn_silence``, so
#: every sentence ends a turn even without punctuation-based endpointing (docs/providers.md,
#: "Streaming: messages").
SENTENCE_GAP_MS = 1200
#: Level of background noise in :func:`silence`: a joined, unmuted, silent participant.
SILENCE_DBFS = -70.0
#: RMS level of tone-code speech in dBFS (PCM16 full scale as 0 dB).
TONE_DBFS = float(20.0 * np.log10(TONE_PEAK / np.sqrt(2.0) / FULL_SCALE))

_SENTENCE_END = frozenset(".?!")


def ends_sentence(word: str) -> bool:
    """Return whether ``word`` ends a sentence (its last character is . ? or !)."""
    return bool(word) and word[-1] in _SENTENCE_END


def encode_words(
    text: str, sample_rate_hz: int = 16000, *, start_ms: int = 0
) -> tuple[bytes, list[DecodedWord]]:
    """Speak ``text`` as tone code and say where each word is.

    Words are split on whitespace and keep their punctuation. Each word is followed by
    :data:`WORD_GAP_MS` of silence, or :data:`SENTENCE_GAP_MS` if it ends a sentence, so the
    audio of two texts concatenated equals the audio of the texts joined by a space.

    Args:
        text: Any Unicode text.
        sample_rate_hz: Output sample rate, at least 8000.
        start_ms: Where the audio starts on the caller's timeline; added to every time.

    Returns:
        PCM16 little-endian mono audio, and each word with its burst's start and end in ms.

    Raises:
        ValueError: If the sample rate is too low or the text cannot be encoded as UTF-8
            (lone surrogates).
    """
    if sample_rate_hz < 8000:
        raise ValueError(f"sample rate {sample_rate_hz} Hz is too low; use 8000 Hz or more")
    pieces: list[np.ndarray] = []
    words: list[DecodedWord] = []
    position = 0
    for word in text.split():
        burst = modulate(word.encode("utf-8"), sample_rate_hz)
        end = position + burst.size
        words.append(
            DecodedWord(
                word,
                start_ms + round(position * 1000 / sample_rate_hz),
                start_ms + round(end * 1000 / sample_rate_hz),
            )
        )
        gap_ms = SENTENCE_GAP_MS if ends_sentence(word) else WORD_GAP_MS
        pieces.append(burst)
        pieces.append(np.zeros(round(gap_ms * sample_rate_hz / 1000)))
        position = end + pieces[-1].size
    if not pieces:
        return b"", words
    audio = np.rint(np.concatenate(pieces)).astype("<i2")
    return audio.tobytes(), words


def encode(text: str, sample_rate_hz: int = 16000) -> bytes:
    """Speak ``text`` as tone code.

    Args:
        text: Any Unicode text; see :func:`encode_words`.
        sample_rate_hz: Output sample rate, at least 8000.

    Returns:
        PCM16 little-endian mono audio.
    """
    return encode_words(text, sample_rate_hz)[0]


def decode(pcm: bytes, sample_rate_hz: int) -> list[DecodedWord]:
    """Find the words in a whole recording.

    Args:
        pcm: PCM16 little-endian mono audio.
        sample_rate_hz: Its sample rate, at least 8000.

    Returns:
        Words in order, with ``text=None`` for speech-like stretches that do not decode.
    """
    decoder = StreamDecoder(sample_rate_hz)
    return decoder.feed(pcm) + decoder.flush()


def silence(
    duration_ms: int,
    sample_rate_hz: int = 16000,
    *,
    noise_dbfs: float | None = SILENCE_DBFS,
    seed: int = 0,
) -> bytes:
    """Return background noise: what a joined, unmuted participant who says nothing sends.

    Args:
        duration_ms: Length of the audio.
        sample_rate_hz: Its sample rate.
        noise_dbfs: RMS level of the white noise, or ``None`` for digital silence.
        seed: Seed of the noise, so tests are repeatable.

    Returns:
        PCM16 little-endian mono audio.
    """
    count = round(duration_ms * sample_rate_hz / 1000)
    if noise_dbfs is None:
        return bytes(2 * count)
    sigma = FULL_SCALE * 10.0 ** (noise_dbfs / 20.0)
    noise = np.random.default_rng(seed).normal(0.0, sigma, count)
    return np.clip(np.rint(noise), -32768, 32767).astype("<i2").tobytes()
