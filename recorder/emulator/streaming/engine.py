"""The sans-I/O turn engine of the streaming emulator: audio in, v3 messages out.

It hears audio through an injected :class:`Recognizer` (the synthetic speech
codec's stream decoder) and decides turns the way ``u3-rt-pro`` does: at each
pause of ``min_turn_silence`` a final if the turn ends in terminal punctuation,
else one partial; a pause of ``max_turn_silence`` forces the final. All times
are audio times of this socket (sample counts). The message shapes and rules
followed are in docs/providers.md, "Streaming: messages".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from recorder.emulator.streaming.params import SessionParams

__all__ = ["EngineOptions", "Recognizer", "RecognizedWord", "TurnEngine"]

_TERMINAL = (".", "?", "!")
_PUNCTUATION = re.compile(r"[^\w\s'\-\[\]]")
_EM_DASH = "\u2014"
# u3-rt-pro's early partial comes 256 ms after interruption_delay.
_EARLY_PARTIAL_FIXED_MS = 256
# Turns shorter than this get speaker "UNKNOWN".
_SHORT_TURN_MS = 1000


class RecognizedWord(Protocol):
    """One word the recogniser heard; ``text`` None means speech it could not decode."""

    @property
    def text(self) -> str | None:
        """The word with attached punctuation, or None."""

    @property
    def start_ms(self) -> int:
        """Start in audio time of this stream."""

    @property
    def end_ms(self) -> int:
        """End in audio time of this stream."""


class Recognizer(Protocol):
    """What the engine needs from a streaming speech decoder (tonecode.StreamDecoder)."""

    def feed(self, pcm: bytes) -> Sequence[RecognizedWord]:
        """Take PCM16LE mono audio; return the words completed by it."""

    def flush(self) -> Sequence[RecognizedWord]:
        """End the word in progress, if any, and return it."""

    @property
    def position_ms(self) -> float:
        """Audio time fed so far."""

    @property
    def in_speech(self) -> bool:
        """Whether a word is in progress at the end of the audio fed."""

    @property
    def speech_start_ms(self) -> float | None:
        """Start of the word in progress, if any."""


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """Model behaviours that changed during 2026; the defaults are Feb-Mar 2026.

    Attributes:
        early_partials: one partial after ``interruption_delay`` + 256 ms of speech.
        continuous_partials: partials every ``continuous_interval_ms`` during speech
            (also switched on per session by the ``continuous_partials`` parameter).
        continuous_interval_ms: the continuous-partial period.
        formatted_final_pair: Universal-Streaming style: an unformatted final, then
            a formatted final with the same ``turn_order``.
        legacy: Feb-Mar 2026 server: ``SpeechStarted`` without ``confidence``.
        partial_em_dash: partials mark the trailing word with an em dash.
    """

    early_partials: bool = False
    continuous_partials: bool = False
    continuous_interval_ms: int = 1000
    formatted_final_pair: bool = False
    legacy: bool = False
    partial_em_dash: bool = True


@dataclass(slots=True)
class _Word:
    text: str
    start_ms: int
    end_ms: int
    confidence: float


def _word_text(word: RecognizedWord) -> str:
    if word.text is not None:
        return word.text
    # Speech energy the codec could not decode: real speech (task brief).
    return f"[speech {(word.end_ms - word.start_ms) / 1000:.1f} s]"


def _unformatted(text: str) -> str:
    return _PUNCTUATION.sub("", text).lower()


class TurnEngine:
    """Turns one socket's audio into ``SpeechStarted`` and ``Turn`` messages.

    Call :meth:`receive_audio` per binary frame, :meth:`force_endpoint`,
    :meth:`update` and :meth:`terminate` for the control messages; each returns
    the messages to send, in order, as JSON-ready dicts.

    Args:
        params: the session settings.
        recognizer: the decoder that hears the audio.
        options: model behaviour switches.
    """

    def __init__(
        self,
        params: SessionParams,
        recognizer: Recognizer,
        options: EngineOptions | None = None,
    ) -> None:
        self.params = params
        self._recognizer = recognizer
        self._options = options or EngineOptions()
        self._turn_order = 0
        self._words: list[_Word] = []
        self._is_check_armed = False
        self._has_early_partial = False
        self._last_partial_ms = 0
        self._partial_word_count = 0

    @property
    def turn_order(self) -> int:
        """The ``turn_order`` of the next or current turn."""
        return self._turn_order

    @property
    def has_open_turn(self) -> bool:
        """Whether a turn has words that are not final yet."""
        return bool(self._words)

    def update(self, params: SessionParams) -> None:
        """Use new settings for audio received from now on (``UpdateConfiguration``)."""
        self.params = params

    def receive_audio(self, pcm: bytes) -> list[dict[str, Any]]:
        """Hear one chunk of PCM16LE audio; return the messages it produces."""
        out: list[dict[str, Any]] = []
        for word in self._recognizer.feed(pcm):
            if self._words:
                # A pause inside the chunk: judge it where it happened.
                self._on_pause(word.start_ms - self._words[-1].end_ms, out)
            self._add(word, out)
        if self._words:
            recognizer = self._recognizer
            last_end = self._words[-1].end_ms
            if recognizer.in_speech and recognizer.speech_start_ms is not None:
                self._on_pause(recognizer.speech_start_ms - last_end, out)
            else:
                self._on_pause(recognizer.position_ms - last_end, out)
        if self._words:
            self._maybe_speech_partial(out)
        return out

    def force_endpoint(self) -> list[dict[str, Any]]:
        """End the turn in progress now (``ForceEndpoint``); nothing if there is none."""
        out: list[dict[str, Any]] = []
        for word in self._recognizer.flush():
            self._add(word, out)
        if self._words:
            self._final(out)
        return out

    def terminate(self) -> list[dict[str, Any]]:
        """Flush the turn in progress as a final, before ``Termination``."""
        return self.force_endpoint()

    def _add(self, word: RecognizedWord, out: list[dict[str, Any]]) -> None:
        if not self._words:
            self._start_turn(word, out)
        known = word.text is not None
        self._words.append(
            _Word(_word_text(word), int(word.start_ms), int(word.end_ms), 0.97 if known else 0.5)
        )
        self._is_check_armed = True

    def _start_turn(self, word: RecognizedWord, out: list[dict[str, Any]]) -> None:
        self._has_early_partial = False
        self._partial_word_count = 0
        self._last_partial_ms = int(word.start_ms)
        if self.params.speech_model is not None and self.params.speech_model.startswith(
            "universal-streaming"
        ):
            return  # SpeechStarted is u3-rt-pro only
        message: dict[str, Any] = {"type": "SpeechStarted", "timestamp": int(word.start_ms)}
        if not self._options.legacy:
            message["confidence"] = 0.9
        out.append(message)

    def _on_pause(self, silence_ms: float, out: list[dict[str, Any]]) -> None:
        if silence_ms >= self.params.max_turn_silence_ms:
            self._final(out)
        elif silence_ms >= self.params.min_turn_silence_ms and self._is_check_armed:
            if self._words[-1].text.endswith(_TERMINAL):
                self._final(out)
            else:
                # One partial per pause; re-armed by the next word.
                self._partial(out)
                self._is_check_armed = False

    def _maybe_speech_partial(self, out: list[dict[str, Any]]) -> None:
        if not self._recognizer.in_speech:
            return
        position = int(self._recognizer.position_ms)
        turn_start = self._words[0].start_ms
        if self._options.early_partials and not self._has_early_partial:
            delay = self.params.interruption_delay_ms + _EARLY_PARTIAL_FIXED_MS
            if position - turn_start >= delay:
                self._has_early_partial = True
                self._partial(out)
                return
        if self._options.continuous_partials or self.params.continuous_partials:
            interval = self._options.continuous_interval_ms
            if position - self._last_partial_ms >= interval:
                if len(self._words) > self._partial_word_count:
                    self._partial(out)

    def _turn(self, *, is_final: bool, is_formatted: bool) -> dict[str, Any]:
        words = self._words
        texts = [word.text for word in words]
        if not is_final and self._options.partial_em_dash and texts[-1][-1:].isalnum():
            texts[-1] += _EM_DASH
        if not is_formatted and is_final:
            texts = [_unformatted(text) for text in texts]
        transcript = " ".join(texts)
        message: dict[str, Any] = {
            "type": "Turn",
            "turn_order": self._turn_order,
            "turn_is_formatted": is_formatted,
            "end_of_turn": is_final,
            "transcript": transcript,
            "utterance": transcript if is_final else "",
            "end_of_turn_confidence": 1 if is_final else 0,
            "words": [
                {
                    "text": text,
                    "start": word.start_ms,
                    "end": word.end_ms,
                    "confidence": word.confidence,
                    "word_is_final": is_final,
                }
                for text, word in zip(texts, words, strict=True)
            ],
        }
        if is_final and self.params.language_detection:
            message["language_code"] = "en"
            message["language_confidence"] = 0.98
        if self.params.speaker_labels:
            duration = words[-1].end_ms - words[0].start_ms
            message["speaker_label"] = "UNKNOWN" if duration < _SHORT_TURN_MS else "A"
        return message

    def _partial(self, out: list[dict[str, Any]]) -> None:
        out.append(self._turn(is_final=False, is_formatted=False))
        self._partial_word_count = len(self._words)
        self._last_partial_ms = int(self._recognizer.position_ms)

    def _final(self, out: list[dict[str, Any]]) -> None:
        if self._options.formatted_final_pair:
            out.append(self._turn(is_final=True, is_formatted=False))
        out.append(self._turn(is_final=True, is_formatted=True))
        self._turn_order += 1
        self._words = []
        self._is_check_armed = False
