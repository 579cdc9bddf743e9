"""StreamDecoder's shortcut for digital silence must be invisible: same words, same stream state."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from recorder.tonecode import StreamDecoder, decode, encode, silence
from recorder.tonecode import stream as tonecode_stream

State = tuple[object, ...]


def fed(pcm: bytes, sizes: list[int], rate: int = 16000) -> list[State]:
    """What the decoder says after every chunk: the words and the state a turn engine reads."""
    decoder = StreamDecoder(rate)
    states: list[State] = []
    position = 0
    for size in itertools.cycle(sizes):
        if position >= len(pcm):
            break
        words = decoder.feed(pcm[position : position + 2 * size])
        position += 2 * size
        states.append(
            (
                tuple(words),
                decoder.position_ms,
                decoder.in_speech,
                decoder.speech_start_ms,
                decoder.trailing_silence_ms,
            )
        )
    states.append((tuple(decoder.flush()), decoder.position_ms))
    return states


def speech_with_digital_gaps(rate: int = 16000) -> bytes:
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 900, rate // 2)
    # -50 dBFS: speech-like energy above a floor learnt from digital silence (-55 dBFS
    # threshold), background above one learnt from anything 10 dB louder.
    murmur = rng.normal(0, 32768 * 10 ** (-50 / 20), 3 * rate // 10)
    return (
        bytes(2 * (rate // 3))  # 333 ms of zeros first: no frame-aligned end
        + encode("Hi there, team. Next", rate)
        + np.rint(noise).astype("<i2").tobytes()  # loud background, not tones
        + bytes(2 * rate * 3)  # 3 s: long enough for the floor to be learnt from it alone
        + np.rint(murmur).astype("<i2").tobytes()
        + silence(400, rate)
        + encode("bye?", rate)
        + bytes(rate)
    )


@pytest.mark.parametrize("sizes", [[1600], [800], [1601, 1599], [333], [16000], [1, 1600, 7]])
def test_digital_silence_is_judged_as_if_measured(
    sizes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    pcm = speech_with_digital_gaps()
    shortcut = fed(pcm, sizes)
    # No chunk of PCM equals this, so every chunk is measured.
    monkeypatch.setattr(tonecode_stream, "_silent_pcm", lambda size: b"\x01" * size)
    assert fed(pcm, sizes) == shortcut
    words = [word for state in shortcut for word in state[0]]  # type: ignore[attr-defined]
    assert [w.text for w in words] == ["Hi", "there,", "team.", "Next", None, None, "bye?"]


def test_digital_silence_at_other_rates() -> None:
    for rate in (8000, 24000, 48000):
        pcm = speech_with_digital_gaps(rate)
        states = fed(pcm, [rate // 10], rate)
        assert [w for state in states for w in state[0]] == decode(pcm, rate)  # type: ignore[attr-defined]


def test_kept_silence_is_shared_and_never_written() -> None:
    # Two streams keep the same zeros; a word right after them decodes in both.
    first, second = StreamDecoder(16000), StreamDecoder(16000)
    zeros = bytes(3200)
    for decoder in (first, second):
        decoder.feed(zeros)
    pcm = encode("one.")
    words = [decoder.feed(pcm) + decoder.flush() for decoder in (first, second)]
    assert [w.text for w in words[0]] == [w.text for w in words[1]] == ["one."]
    assert words[0][0].start_ms == words[1][0].start_ms == 100
    assert not tonecode_stream._silent_samples(1600).flags.writeable
