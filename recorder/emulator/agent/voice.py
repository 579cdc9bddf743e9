"""The emulated Voice Agent's "LLM" and "TTS": deterministic, honest text and tone-code audio.

The LLM is extractive: for a recap it speaks the first sentence of each
speaker's latest turn, read from the ``[hh:mm:ss] Name: text`` lines the client
put in its system prompt or instructions, so it never says anything the
meeting did not. The TTS is the synthetic speech codec at the output rate, so
a test can decode what a client played and compare it with ``transcript.agent``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recorder.audio import resample
from recorder.tonecode import encode_words

__all__ = [
    "NOTHING_TO_RECAP",
    "OUTPUT_FORMATS",
    "Speech",
    "at_output_rate",
    "encode_output",
    "extractive_reply",
    "heard_prefix",
    "synthesize",
]

#: Output encodings and their sample rates (docs/providers.md, "Voice Agent: protocol").
OUTPUT_FORMATS: dict[str, int] = {"audio/pcm": 24_000, "audio/pcmu": 8_000, "audio/pcma": 8_000}

_LINE = re.compile(r"^\[\d{2}:\d{2}:\d{2}\] (?P<speaker>[^:\n]+): (?P<text>.+)$", re.MULTILINE)
_SENTENCE = re.compile(r"^.*?[.!?](?=\s|$)")
# "Read this recap aloud exactly as written: ..." (the default reply text).
_READ_PREFIX = re.compile(r"^\s*Read\b[^:]*:\s*(?P<text>.+)$", re.DOTALL)
NOTHING_TO_RECAP = "There is nothing to recap yet."


def _first_sentence(text: str) -> str:
    match = _SENTENCE.match(text.strip())
    sentence = match.group(0) if match else text.strip()
    return sentence if sentence[-1:] in ".!?" else sentence + "."


def extractive_reply(system_prompt: str | None, instructions: str | None) -> str:
    """The deterministic reply to a ``reply.create``.

    ``instructions`` starting with ``Read …:`` are spoken as given; otherwise
    the transcript lines in the instructions and system prompt are recapped,
    one sentence per speaker, in the order of each speaker's latest turn.

    Args:
        system_prompt: the session's current system prompt.
        instructions: the ``reply.create`` instructions, if any.

    Returns:
        The reply text.
    """
    if instructions:
        read = _READ_PREFIX.match(instructions)
        if read:
            return " ".join(read.group("text").split())
    latest: dict[str, str] = {}
    for source in (system_prompt or "", instructions or ""):
        for match in _LINE.finditer(source):
            speaker = " ".join(match.group("speaker").split())
            latest.pop(speaker, None)  # re-insert: order by each speaker's latest turn
            latest[speaker] = match.group("text")
    if not latest:
        return NOTHING_TO_RECAP
    return " ".join(f"{speaker} said: {_first_sentence(text)}" for speaker, text in latest.items())


@dataclass(frozen=True, slots=True)
class Speech:
    """A reply's words and their audio.

    Attributes:
        text: the words as spoken.
        pcm: PCM16 mono at ``sample_rate_hz`` (before volume and output encoding).
        sample_rate_hz: the rate of ``pcm``.
        word_ends_ms: where each word's audio ends.
    """

    text: str
    pcm: bytes
    sample_rate_hz: int
    word_ends_ms: tuple[int, ...]

    @property
    def duration_ms(self) -> float:
        """Length of the audio."""
        return len(self.pcm) / 2 * 1000 / self.sample_rate_hz


def synthesize(text: str, sample_rate_hz: int = 24_000) -> Speech:
    """Speak ``text`` as tone code."""
    pcm, words = encode_words(text, sample_rate_hz)
    return Speech(text, pcm, sample_rate_hz, tuple(word.end_ms for word in words))


def heard_prefix(speech: Speech, played_ms: float) -> str:
    """The words whose audio was wholly sent by ``played_ms`` (an interrupted reply)."""
    words = speech.text.split()
    count = sum(1 for end in speech.word_ends_ms if end <= played_ms)
    return " ".join(words[:count])


def _mulaw(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    # ITU-T G.711 mu-law, bias 0x84, clip 32635.
    x = np.clip(samples.astype(np.int32), -32635, 32635)
    sign = np.where(x < 0, 0x80, 0)
    magnitude = np.abs(x) + 0x84
    exponent = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return np.asarray(~(sign | (exponent << 4) | mantissa) & 0xFF, dtype=np.uint8)


def _alaw(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    # ITU-T G.711 A-law on the 13-bit magnitude; even bits inverted (0x55).
    x = samples.astype(np.int32) >> 3
    sign = np.where(x >= 0, 0x80, 0)
    magnitude = np.minimum(np.where(x < 0, -x - 1, x), 0x0FFF)
    exponent = np.clip(np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int32) - 4, 0, 7)
    mantissa = np.where(exponent == 0, magnitude >> 1, magnitude >> exponent) & 0x0F
    return np.asarray((sign | (exponent << 4) | mantissa) ^ 0x55, dtype=np.uint8)


def at_output_rate(speech: Speech, encoding: str) -> bytes:
    """The speech as PCM16 at the output encoding's rate."""
    target_hz = OUTPUT_FORMATS[encoding]
    if speech.sample_rate_hz == target_hz:
        return speech.pcm
    return resample(speech.pcm, speech.sample_rate_hz, target_hz)


def encode_output(pcm: bytes, encoding: str, volume: float) -> bytes:
    """Apply ``output.volume`` (0-100) and the output encoding to PCM16 audio.

    Args:
        pcm: PCM16 mono audio already at the encoding's rate (:func:`at_output_rate`).
        encoding: ``audio/pcm`` (PCM16), ``audio/pcmu`` or ``audio/pcma`` (8-bit G.711).
        volume: 0 is silence, 100 leaves the level as it is.
    """
    samples = np.frombuffer(pcm, dtype="<i2")
    if volume != 100:
        samples = np.clip(np.rint(samples * (volume / 100.0)), -32768, 32767).astype("<i2")
    if encoding == "audio/pcmu":
        return _mulaw(samples).tobytes()
    if encoding == "audio/pcma":
        return _alaw(samples).tobytes()
    return samples.astype("<i2").tobytes()
