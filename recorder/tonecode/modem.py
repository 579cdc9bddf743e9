"""The tone modem under :mod:`recorder.tonecode`: one word as one burst of FSK tones.

A burst is a start marker symbol (300 Hz) followed by the word's UTF-8 bytes and a CRC-16, four
bits per 15 ms symbol, each symbol one of 16 tones between 400 and 3400 Hz (the telephone band,
so 16 kHz <-> 24 kHz resampling is harmless). A burst that is cut, glued or noisy fails the
symbol-count, tone-purity or CRC check and decodes as ``None`` instead of as a different word.
"""

from __future__ import annotations

import binascii
import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "DATA_HZ",
    "FULL_SCALE",
    "MARKER_HZ",
    "RAMP_MS",
    "SYMBOL_MS",
    "TONE_PEAK",
    "DecodedWord",
    "burst_samples",
    "demodulate",
    "high_level",
    "modulate",
    "tonality",
]

FloatArray = npt.NDArray[np.float64]

#: Full scale of PCM16, the reference for every dBFS figure here (RMS of a full-scale square).
FULL_SCALE = 32768.0
#: One symbol carries one nibble. 15 ms is incommensurate with the 100 ms chunks clients send,
#: so a dropped chunk always leaves a fractional symbol count (rejected before the CRC).
SYMBOL_MS = 15
#: The decoder reads the middle 10 ms of each symbol: 2.5 ms of guard either side absorbs onset
#: error, and every tone below is a multiple of 100 Hz, so the 10 ms windows are orthogonal.
WINDOW_MS = 10.0
GUARD_MS = 2.5
#: Raised-cosine fade at both ends of a burst; avoids clicks (broadband splatter, resampler
#: ringing). The decoder measures onset and offset at the fades' half-amplitude points.
RAMP_MS = 2.0
MARKER_HZ = 300.0
DATA_HZ: tuple[float, ...] = tuple(400.0 + 200.0 * k for k in range(16))
#: Peak amplitude of every tone: -15 dBFS peak, -18 dBFS RMS. +12 dB of gain still fits PCM16.
TONE_PEAK = 0.18 * FULL_SCALE

_ALL_HZ = np.array((MARKER_HZ, *DATA_HZ))
#: Minimum share of a symbol window's energy in its strongest tone. A clean tone scores ~1,
#: 30 dB SNR ~0.99, white noise below 0.1.
_MIN_PURITY = 0.5
#: Largest distance of the measured burst length from a whole number of symbols.
_MAX_SYMBOL_SLIP = 0.25
#: Smallest burst: marker, one byte of text and two bytes of CRC.
_MIN_SYMBOLS = 1 + 2 * 3


@dataclass(frozen=True, slots=True)
class DecodedWord:
    """One word (burst of speech) found in audio.

    Attributes:
        text: The word with its punctuation, or ``None`` for speech-like energy that does not
            decode (real speech, noise, a damaged burst).
        start_ms: Start of the burst, in ms from the start of the audio.
        end_ms: End of the burst, in ms from the start of the audio.
    """

    text: str | None
    start_ms: int
    end_ms: int


def _symbols_for(payload: bytes) -> npt.NDArray[np.intp]:
    """Return the tone indices of a burst: 0 is the marker, 1-16 the data nibbles."""
    crc = binascii.crc_hqx(payload, 0xFFFF)
    data = np.frombuffer(payload + crc.to_bytes(2, "big"), dtype=np.uint8)
    symbols = np.empty(1 + 2 * data.size, dtype=np.intp)
    symbols[0] = 0
    symbols[1::2] = (data >> 4) + 1
    symbols[2::2] = (data & 0x0F) + 1
    return symbols


def burst_samples(payload_len: int, sample_rate_hz: int) -> int:
    """Return the length in samples of the burst carrying ``payload_len`` bytes."""
    return round((1 + 2 * (payload_len + 2)) * SYMBOL_MS * sample_rate_hz / 1000)


def modulate(payload: bytes, sample_rate_hz: int) -> FloatArray:
    """Return the burst carrying ``payload`` as float samples in PCM16 units.

    Args:
        payload: The bytes to send (a word's UTF-8), at least one.
        sample_rate_hz: Output sample rate.

    Returns:
        The burst, phase-continuous, faded in and out, peak :data:`TONE_PEAK`.
    """
    symbols = _symbols_for(payload)
    n_total = burst_samples(len(payload), sample_rate_hz)
    n = np.arange(n_total, dtype=np.int64)
    # Integer arithmetic keeps the symbol grid exact at any sample rate.
    index = np.minimum(n * 1000 // (SYMBOL_MS * sample_rate_hz), symbols.size - 1)
    freq = _ALL_HZ[symbols[index]]
    phase = np.empty(n_total)
    phase[0] = 0.0
    np.cumsum(freq[:-1] * (2.0 * np.pi / sample_rate_hz), out=phase[1:])
    wave = np.sin(phase) * TONE_PEAK
    ramp = min(max(1, round(RAMP_MS * sample_rate_hz / 1000)), n_total // 2)
    fade = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
    wave[:ramp] *= fade
    wave[n_total - ramp :] *= fade[::-1]
    return wave


def high_level(values: npt.NDArray[np.float64]) -> float:
    """Return the 90th percentile of ``values`` (nearest rank; cheaper than np.percentile)."""
    k = (values.size - 1) * 9 // 10
    return float(np.partition(values, k)[k])


@functools.lru_cache(maxsize=16)
def _real_basis(width: int, sample_rate_hz: int) -> npt.NDArray[np.float32]:
    """Return cosines then sines of every code tone over ``width`` samples (width x 34)."""
    angle = 2 * np.pi * np.arange(width)[:, None] * _ALL_HZ[None, :] / sample_rate_hz
    return np.concatenate((np.cos(angle), np.sin(angle)), axis=1).astype(np.float32)


def tonality(
    frames: npt.NDArray[np.float32],
    sample_rate_hz: int,
    *,
    squares: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.float64]:
    """Return, per row of ``frames``, the share of its energy in its two strongest code tones.

    Tone-code frames score about 0.5 or more (two tones when a frame straddles a symbol
    boundary), white noise about 0.1-0.3, silence 0.

    Args:
        frames: Rows of samples, a few ms each.
        sample_rate_hz: Their sample rate.
        squares: each row's sum of squares (``einsum("ij,ij->i", frames, frames)`` in
            float64), when the caller has measured it already.
    """
    width = frames.shape[1]
    projection = (frames @ _real_basis(width, sample_rate_hz)).astype(np.float64)
    tones = _ALL_HZ.size
    np.square(projection, out=projection)
    power = projection[:, :tones] + projection[:, tones:]
    top_two = np.partition(power, tones - 2, axis=1)[:, tones - 2 :].sum(axis=1)
    if squares is None:
        squares = np.einsum("ij,ij->i", frames, frames, dtype=np.float64)
    energy = squares * (width / 2)
    return np.asarray(top_two / np.maximum(energy, 1.0))


@functools.lru_cache(maxsize=16)
def _basis(sample_rate_hz: int) -> tuple[npt.NDArray[np.complex128], int]:
    """Return the DFT basis (window x tones) for the symbol windows, and the window length."""
    width = round(WINDOW_MS * sample_rate_hz / 1000)
    n = np.arange(width)[:, None]
    return np.exp(-2j * np.pi * n * _ALL_HZ[None, :] / sample_rate_hz), width


@functools.lru_cache(maxsize=64)
def _symbol_grid(
    sample_rate_hz: int, count: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Return where the symbol windows of a burst of ``count`` symbols are (read-only arrays).

    That is each window's offset from the burst's start (samples, unrounded), the sample
    indices of one window (as a row) and ``arange(count)``; words of one length recur.
    """
    grid = (np.arange(count) * SYMBOL_MS + GUARD_MS) * sample_rate_hz / 1000
    window = np.arange(_basis(sample_rate_hz)[1])[None, :]
    rows = np.arange(count)
    for array in (grid, window, rows):
        array.flags.writeable = False
    return grid, window, rows


def _edges(
    signal: npt.NDArray[np.float32], core: slice, sample_rate_hz: int
) -> tuple[float, float]:
    """Return the burst's start and end (in samples of ``signal``) from its power envelope.

    The envelope is the power averaged over 2.5 ms; its crossings of a quarter of the burst's
    power (half amplitude) sit near the middle of the fade-in and fade-out. The burst's power is
    a high percentile, not the median, in case the detector glued background noise to it.
    """
    length = max(1, round(0.0025 * sample_rate_hz))
    power = np.square(signal, dtype=np.float64)
    cumulative = np.empty(power.size + 1)
    cumulative[0] = 0.0
    np.cumsum(power, out=cumulative[1:])
    envelope = cumulative[length:] - cumulative[:-length]
    envelope /= length
    core_env = envelope[core.start : max(core.start + 1, core.stop - length + 1)]
    level = 0.25 * high_level(core_env) if core_env.size else 0.0
    if level <= 0.0:
        return 0.0, 0.0
    # Only the first and the last crossing count: argmax finds them without listing them all.
    above = envelope >= level
    first = int(above.argmax())
    if not above[first]:
        return 0.0, 0.0
    last = above.size - 1 - int(above[::-1].argmax())
    centre = (length - 1) / 2
    half_ramp = RAMP_MS * sample_rate_hz / 2000
    return first + centre - half_ramp, last + centre + 1 + half_ramp


def demodulate(
    signal: npt.NDArray[np.float32], core: slice, sample_rate_hz: int
) -> tuple[str, float, float] | None:
    """Decode one burst.

    Args:
        signal: Samples around the burst, with a little silence either side.
        core: The part of ``signal`` the energy detector marked as loud.
        sample_rate_hz: Sample rate of ``signal``.

    Returns:
        ``(text, start, end)`` with start and end in samples of ``signal``, or ``None`` when the
        burst is not a whole, clean, checksummed tone-code word.
    """
    start, end = _edges(signal, core, sample_rate_hz)
    symbol_len = SYMBOL_MS * sample_rate_hz / 1000
    count_f = (end - start) / symbol_len
    count = round(count_f)
    if abs(count_f - count) > _MAX_SYMBOL_SLIP or count < _MIN_SYMBOLS or count % 2 == 0:
        return None
    basis, width = _basis(sample_rate_hz)
    grid, window, rows = _symbol_grid(sample_rate_hz, count)
    offsets = np.rint(start + grid).astype(np.intp)
    if offsets[0] < 0 or offsets[-1] + width > signal.size:
        return None
    windows = signal[offsets[:, None] + window].astype(np.float64)
    magnitude = np.abs(windows @ basis) ** 2
    best = magnitude.argmax(axis=1)
    tones: list[int] = best.tolist()
    if tones[0] != 0 or 0 in tones[1:]:
        return None
    energy = np.einsum("ij,ij->i", windows, windows) * (width / 2)
    purity = magnitude[rows, best] / np.maximum(energy, 1e-9)
    if float(purity.min()) < _MIN_PURITY:
        return None
    # Tones 1-16 are the nibbles 0-15, high nibble first.
    data = bytes(16 * high + low - 17 for high, low in zip(tones[1::2], tones[2::2], strict=True))
    payload, crc = data[:-2], int.from_bytes(data[-2:], "big")
    if binascii.crc_hqx(payload, 0xFFFF) != crc:
        return None
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text or len(text.split()) != 1 or text.split()[0] != text:
        return None
    return text, start, end
