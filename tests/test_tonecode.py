from __future__ import annotations

import itertools

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.tonecode import (
    SENTENCE_GAP_MS,
    TONE_DBFS,
    WORD_GAP_MS,
    DecodedWord,
    StreamDecoder,
    decode,
    encode,
    encode_words,
    ends_sentence,
    silence,
)

SENTENCE = "Hello everyone, welcome to the weekly sync. Any questions? Let's start!"
TOLERANCE_MS = 20


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def pcm16(signal: np.ndarray) -> bytes:
    assert np.abs(signal).max() < 32767, "the test itself would clip"
    return np.rint(signal).astype("<i2").tobytes()


def assert_matches(decoded: list[DecodedWord], truth: list[DecodedWord]) -> None:
    assert [w.text for w in decoded] == [w.text for w in truth]
    for got, want in zip(decoded, truth, strict=True):
        assert abs(got.start_ms - want.start_ms) <= TOLERANCE_MS, (got, want)
        assert abs(got.end_ms - want.end_ms) <= TOLERANCE_MS, (got, want)


def feed_in_chunks(pcm: bytes, sizes: list[int], sample_rate_hz: int = 16000) -> list[DecodedWord]:
    decoder = StreamDecoder(sample_rate_hz)
    out: list[DecodedWord] = []
    position = 0
    for size in itertools.cycle(sizes):
        if position >= len(pcm):
            break
        out += decoder.feed(pcm[position : position + 2 * size])
        position += 2 * size
    return out + decoder.flush()


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        SENTENCE,
        "🎉 👩‍👩‍👧‍👦 🇺🇦 👍🏽",  # emoji, ZWJ sequences, flags, skin tones
        "你好，世界。 日本語のテキスト 한국어",  # CJK
        "שלום עולם مرحبا بالعالم",  # RTL
        "e\u0301 a\u0308\u0304 Z\u0351\u0352\u0353",  # combining marks
        "\x00 \x7f \u200b \ufeff \U0010ffff",  # NUL, DEL, zero-width, BOM, last code point
        "x" * 200 + " done.",  # a long word
    ],
)
def test_round_trip(text: str) -> None:
    pcm, truth = encode_words(text)
    assert [w.text for w in truth] == text.split()
    assert_matches(decode(pcm, 16000), truth)


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=30).filter(lambda t: t.split()))
def test_round_trip_any_unicode(text: str) -> None:
    decoded = decode(encode(text), 16000)
    assert " ".join(w.text or "<none>" for w in decoded) == " ".join(text.split())


@pytest.mark.parametrize("rate", [8000, 24000, 44100, 48000])
def test_round_trip_at_other_rates(rate: int) -> None:
    pcm, truth = encode_words(SENTENCE, rate)
    assert abs(len(pcm) // 2 - rate * (truth[-1].end_ms + SENTENCE_GAP_MS) / 1000) <= rate / 1000
    assert_matches(decode(pcm, rate), truth)


def test_empty_text_is_empty_audio() -> None:
    assert encode_words(" \t\n ") == (b"", [])
    assert decode(b"", 16000) == []


def test_encode_words_offsets_times() -> None:
    _, plain = encode_words(SENTENCE)
    _, shifted = encode_words(SENTENCE, start_ms=5000)
    assert [(w.start_ms - 5000, w.end_ms - 5000) for w in shifted] == [
        (w.start_ms, w.end_ms) for w in plain
    ]


def test_texts_concatenate() -> None:
    assert encode("Hello there.") + encode("Bye now") == encode("Hello there. Bye now")


# --- what the audio looks like ----------------------------------------------------------------


def test_speech_rhythm() -> None:
    pcm, truth = encode_words(SENTENCE)
    seconds = len(pcm) / 2 / 16000
    in_sentence = [
        b.start_ms - a.end_ms
        for a, b in itertools.pairwise(truth)
        if not ends_sentence(a.text or "")
    ]
    after_sentence = [
        b.start_ms - a.end_ms for a, b in itertools.pairwise(truth) if ends_sentence(a.text or "")
    ]
    assert set(in_sentence) == {WORD_GAP_MS} and WORD_GAP_MS < 100
    assert set(after_sentence) == {SENTENCE_GAP_MS} and SENTENCE_GAP_MS > 1000
    speaking = sum(SENTENCE_GAP_MS for w in truth if ends_sentence(w.text or ""))
    rate = len(truth) / (seconds - speaking / 1000)
    assert 2.0 <= rate <= 4.0, rate


def test_levels_and_band() -> None:
    pcm, truth = encode_words(SENTENCE)
    x = samples(pcm)
    for word in truth:
        burst = x[word.start_ms * 16 + 40 : word.end_ms * 16 - 40]
        level = 20 * np.log10(np.sqrt(np.mean(burst**2)) / 32768)
        assert level > -30 and abs(level - TONE_DBFS) < 0.5
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / 16000)
    in_band = spectrum[(freqs >= 250) & (freqs <= 3500)].sum()
    assert in_band / spectrum.sum() > 0.99
    assert spectrum[freqs > 6000].sum() / spectrum.sum() < 1e-4  # clear of 16 kHz's band edge


def test_silence_level() -> None:
    x = samples(silence(2000, 16000, seed=3))
    assert x.size == 32000
    assert abs(20 * np.log10(np.sqrt(np.mean(x**2)) / 32768) - -70) < 1
    assert silence(10, 16000, noise_dbfs=None) == bytes(320)
    assert silence(100, seed=1) == silence(100, seed=1) != silence(100, seed=2)


# --- robustness -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source_hz", "target_hz"), [(16000, 24000), (24000, 16000), (16000, 48000)]
)
def test_resampled(source_hz: int, target_hz: int) -> None:
    pcm, truth = encode_words(SENTENCE, source_hz)
    there = soxr.resample(samples(pcm), source_hz, target_hz)
    assert_matches(decode(pcm16(there), target_hz), truth)
    back = soxr.resample(there, target_hz, source_hz)
    assert_matches(decode(pcm16(back), source_hz), truth)


@pytest.mark.parametrize("gain_db", [-12, -6, 6, 12])
def test_gain(gain_db: int) -> None:
    pcm, truth = encode_words(SENTENCE)
    assert_matches(decode(pcm16(samples(pcm) * 10 ** (gain_db / 20)), 16000), truth)


@pytest.mark.parametrize(("gain_db", "seed"), [(-12, 1), (0, 2), (0, 3), (12, 4)])
def test_noise_at_30_db_snr(gain_db: int, seed: int) -> None:
    # Noise from the very first sample: the decoder cannot know the floor in advance.
    pcm, truth = encode_words(SENTENCE)
    x = samples(pcm) * 10 ** (gain_db / 20)
    signal_rms = np.sqrt(np.mean(x[x != 0] ** 2))
    noise = np.random.default_rng(seed).normal(0, signal_rms * 10 ** (-30 / 20), x.size)
    assert_matches(decode(pcm16(x + noise), 16000), truth)


@settings(max_examples=20, deadline=None)
@given(
    text=st.text(max_size=20).filter(lambda t: t.split()),
    gain_db=st.floats(min_value=-12, max_value=12),
    rate=st.sampled_from([16000, 24000]),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    sizes=st.lists(st.integers(min_value=1, max_value=4000), min_size=1, max_size=4),
)
def test_everything_at_once(
    text: str, gain_db: float, rate: int, seed: int, sizes: list[int]
) -> None:
    # Resampled, rescaled, noisy (SNR 30 dB) and streamed in odd chunks, all at once.
    pcm, truth = encode_words(text)
    x = (
        soxr.resample(samples(pcm) * 10 ** (gain_db / 20), 16000, rate)
        if rate != 16000
        else (samples(pcm) * 10 ** (gain_db / 20))
    )
    level = TONE_DBFS + gain_db - 30
    noise = np.random.default_rng(seed).normal(0, 32768 * 10 ** (level / 20), x.size)
    assert_matches(feed_in_chunks(pcm16(x + noise), sizes, rate), truth)


def test_long_quiet_word_at_stream_start() -> None:
    # 160 bytes (4.8 s) at -12 dB with no silence before it: the noise floor must not climb to
    # the word's own level.
    pcm, truth = encode_words("🎉" * 40 + " end.")
    assert truth[0].end_ms > 4500
    assert_matches(decode(pcm16(samples(pcm) * 10 ** (-12 / 20)), 16000), truth)


@pytest.mark.parametrize("noise_dbfs", [-50, -35])
def test_noise_appearing_mid_stream(noise_dbfs: float) -> None:
    # Digital silence, then a loud background from 1 s before the words: the decoder needs a
    # moment to learn the new floor, then delivers every word, late but intact.
    pcm, truth = encode_words(SENTENCE, start_ms=5000)
    x = np.concatenate([np.zeros(80000), samples(pcm)])
    noise = np.random.default_rng(10).normal(0, 32768 * 10 ** (noise_dbfs / 20), x.size)
    noise[:64000] = 0
    audio = pcm16(x + noise)
    decoder = StreamDecoder(16000)
    got: list[DecodedWord] = []
    for i in range(0, len(audio), 3200):
        for word in decoder.feed(audio[i : i + 3200]):
            assert decoder.position_ms - word.end_ms <= 3000
            got.append(word)
    assert_matches(got + decoder.flush(), truth)


def test_chirp_and_white_noise_are_undecodable_speech() -> None:
    rate = 16000
    quiet = samples(silence(1000, rate))
    t = np.arange(rate) / rate
    chirp = 0.18 * 32768 * np.sin(2 * np.pi * (300 * t + 1550 * t**2))  # 300 -> 3400 Hz
    noise = np.random.default_rng(5).normal(0, 3000, 12800)  # 0.8 s at about -21 dBFS
    decoded = decode(pcm16(np.concatenate([quiet, noise, quiet, chirp, quiet])), rate)
    assert decoded == [DecodedWord(None, 1000, 1800), DecodedWord(None, 2800, 3800)]


def test_speech_like_energy_is_one_segment() -> None:
    # Noise with short dips (like stops between syllables) reads as one stretch of speech.
    rng = np.random.default_rng(6)
    envelope = np.ones(32000)
    for k in range(5):
        envelope[4000 + 5000 * k : 4000 + 5000 * k + 1100] = 0.001  # 69 ms dips
    speech = rng.normal(0, 3000, 32000) * envelope
    quiet = samples(silence(1000))
    decoded = decode(pcm16(np.concatenate([quiet, speech, quiet])), 16000)
    assert decoded == [DecodedWord(None, 1000, 3000)]


def test_speech_before_words_is_its_own_segment() -> None:
    pcm, truth = encode_words("after noise.", start_ms=1880)
    noise = np.random.default_rng(7).normal(0, 3000, 12800)
    audio = np.concatenate([samples(silence(1000)), noise, np.zeros(1280), samples(pcm)])
    decoded = decode(pcm16(audio), 16000)
    assert decoded[0] == DecodedWord(None, 1000, 1800)
    assert_matches(decoded[1:], truth)


@pytest.mark.parametrize(
    "pcm",
    [
        silence(5000),
        silence(5000, noise_dbfs=None),
        silence(5000, noise_dbfs=-50, seed=9),  # loud background, still no speech
    ],
)
def test_silence_decodes_to_nothing(pcm: bytes) -> None:
    assert decode(pcm, 16000) == []


def test_random_bytes_decode_to_no_word() -> None:
    noise = np.random.default_rng(8).integers(-32768, 32767, 16000, dtype=np.int16)
    assert all(w.text is None for w in decode(noise.tobytes(), 16000))


@pytest.mark.parametrize("offset_samples", [0, 371, 1213])
def test_dropped_chunk_never_changes_a_word(offset_samples: int) -> None:
    # A client drops one 100 ms chunk. The words it cuts (and a neighbour whose gap it eats)
    # vanish or become None; no word turns into a different one (checksum), the rest are intact.
    pcm, truth = encode_words(SENTENCE)
    texts = [w.text for w in truth]
    assert len(set(texts)) == len(texts)
    chunk = 1600
    for drop in range(offset_samples, len(pcm) // 2 - chunk, chunk):
        damaged = pcm[: 2 * drop] + pcm[2 * (drop + chunk) :]
        drop_ms, drop_end_ms = drop / 16, (drop + chunk) / 16
        got = [w.text for w in decode(damaged, 16000) if w.text is not None]
        remaining = iter(texts)
        assert all(text in remaining for text in got), (drop, got)  # an ordered subset
        far = [w.text for w in truth if w.end_ms < drop_ms - 100 or w.start_ms > drop_end_ms + 100]
        assert set(far) <= set(got), (drop, got)
        # A word that lost a few ms of fade may still decode, correctly; one that lost more
        # than half a symbol may not.
        cut = [w.text for w in truth if min(w.end_ms, drop_end_ms) - max(w.start_ms, drop_ms) >= 8]
        assert not set(cut) & set(got), (drop, got)


# --- streaming --------------------------------------------------------------------------------


def test_chunking_one_sample_at_a_time() -> None:
    pcm = encode("a b.")[:16000]
    whole = decode(pcm, 16000)
    assert [w.text for w in whole] == ["a", "b."]
    assert feed_in_chunks(pcm, [1]) == whole


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=6000), min_size=1, max_size=8))
def test_chunking_invariance(sizes: list[int]) -> None:
    pcm = (
        encode("Hi there, 😀 team.")
        + pcm16(np.random.default_rng(1).normal(0, 2000, 6000))
        + silence(300)
        + encode("Bye?", 16000)
    )
    assert feed_in_chunks(pcm, sizes) == decode(pcm, 16000)


def test_stream_state_for_turn_detection() -> None:
    words_pcm, truth = encode_words("Hello everyone. Next")
    pcm = silence(500) + words_pcm
    decoder = StreamDecoder(16000)
    assert decoder.speech_start_ms is None and not decoder.in_speech
    seen: list[DecodedWord] = []
    max_silence_in_sentence = 0
    max_silence_after = 0
    starts: set[int] = set()
    for i in range(0, len(pcm), 320):  # 10 ms
        seen += decoder.feed(pcm[i : i + 320])
        now = decoder.position_ms
        assert now == (i + len(pcm[i : i + 320])) // 32
        if decoder.in_speech:
            assert decoder.speech_start_ms is not None
            starts.add(decoder.speech_start_ms)
        if 600 <= now <= truth[1].end_ms + 500:
            max_silence_in_sentence = max(max_silence_in_sentence, decoder.trailing_silence_ms)
        if truth[1].end_ms + 500 < now < truth[2].start_ms + 500:
            max_silence_after = max(max_silence_after, decoder.trailing_silence_ms)
    assert decoder.trailing_silence_ms == WORD_GAP_MS  # the gap after the last word
    assert max_silence_in_sentence < 100
    assert 1000 < max_silence_after <= SENTENCE_GAP_MS + 5
    assert all(any(abs(s - (w.start_ms + 500)) <= 5 for w in truth) for s in starts)
    assert len(starts) == 3
    assert [w.text for w in seen + decoder.flush()] == ["Hello", "everyone.", "Next"]


def test_silence_before_speech_counts() -> None:
    decoder = StreamDecoder(24000)
    assert decoder.feed(silence(700, 24000)) == []
    assert decoder.trailing_silence_ms == 700 and decoder.position_ms == 700


def test_feeding_after_flush_continues_the_timeline() -> None:
    first, second = encode("One two."), encode("Three")
    decoder = StreamDecoder(16000)
    got = decoder.feed(first[:5000]) + decoder.flush() + decoder.feed(first[5000:])
    got += decoder.flush() + decoder.feed(second) + decoder.flush()
    offset = len(first) // 32
    _, truth = encode_words("Three", start_ms=offset)
    assert [w.text for w in got[-1:]] == ["Three"]
    assert_matches(got[-1:], truth)
    assert decoder.position_ms == (len(first) + len(second)) // 32


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="whole samples"):
        StreamDecoder(16000).feed(b"\x00\x00\x00")
    with pytest.raises(ValueError, match="too low"):
        StreamDecoder(4000)
    with pytest.raises(ValueError, match="too low"):
        encode("hi", 4000)
    with pytest.raises(UnicodeEncodeError):
        encode("lone \ud800 surrogate")
