"""Cost of the recap's 24 kHz -> 16 kHz streaming resampler, and chunk-edge fidelity.

Run: .venv/bin/python bench/bench_resampler.py [--seconds 600]

Feeds a tone-code recap (speech-like tone bursts) and a 1 kHz tone through
``StreamingResampler(24000, 16000)`` in the chunk sizes the Voice Agent sends
(the emulator's reply chunks, 100 ms by default) and at
random sizes, and prints CPU time as a share of real time and the SNR of the
chunked output against one unchunked call.
"""

from __future__ import annotations

import argparse
import math
import random
import time

import numpy as np

from recorder.audio import StreamingResampler
from recorder.tonecode import encode

RATE_IN = 24_000
RATE_OUT = 16_000


def tone(duration_s: float) -> bytes:
    t = np.arange(int(duration_s * RATE_IN)) / RATE_IN
    return (np.sin(2 * np.pi * 1000 * t) * 0.5 * 32767).astype("<i2").tobytes()


def speech(duration_s: float) -> bytes:
    text = "Ana said: we ship the beta on Friday. Bruno said: the login bug is fixed."
    one = encode(text, RATE_IN)
    repeats = math.ceil(duration_s * RATE_IN * 2 / len(one))
    return (one * repeats)[: int(duration_s * RATE_IN) * 2]


def run_chunked(pcm: bytes, sizes: list[int]) -> tuple[bytes, float]:
    resampler = StreamingResampler(RATE_IN, RATE_OUT)
    out = bytearray()
    offset = 0
    index = 0
    started = time.process_time()
    while offset < len(pcm):
        size = sizes[index % len(sizes)]
        out += resampler.process(pcm[offset : offset + size])
        offset += size
        index += 1
    out += resampler.process(b"", last=True)
    return bytes(out), time.process_time() - started


def snr_db(reference: bytes, other: bytes) -> float:
    a = np.frombuffer(reference, "<i2").astype(np.float64)
    b = np.frombuffer(other, "<i2").astype(np.float64)
    n = min(a.size, b.size)
    noise = float(np.sum((a[:n] - b[:n]) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(float(np.sum(a[:n] ** 2)) / noise)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="audio to push through")
    args = parser.parse_args()
    rng = random.Random(1)
    random_sizes = [rng.randrange(1, 6_000) * 2 for _ in range(10_000)]
    chunk_100ms = [RATE_IN // 10 * 2]
    for name, pcm in (
        ("1 kHz tone", tone(args.seconds)),
        ("tone-code speech", speech(args.seconds)),
    ):
        reference = StreamingResampler(RATE_IN, RATE_OUT).process(pcm, last=True)
        for label, sizes in (("100 ms chunks", chunk_100ms), ("random chunks", random_sizes)):
            out, cpu_s = run_chunked(pcm, sizes)
            share = cpu_s / args.seconds * 100
            print(
                f"{name:17} {label:14} {args.seconds:6.0f} s audio: cpu {cpu_s * 1000:7.1f} ms"
                f" = {share:.3f}% of real time; SNR vs one call {snr_db(reference, out):6.1f} dB;"
                f" length {len(out) // 2} vs {len(reference) // 2} samples"
            )


if __name__ == "__main__":
    main()
