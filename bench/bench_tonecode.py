"""Speed of the tone-code codec, as multiples of real time in CPU time (higher is better).

The emulator decodes every participant's stream and the load benchmarks run 200 participants,
so ``StreamDecoder`` must stay under 0.5% of one core per stream: at least 200x real time.

Run: .venv/bin/python bench/bench_tonecode.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import time

from recorder.tonecode import StreamDecoder, decode, encode, silence

TARGET_X = 200.0
TEXT = (
    "Hello everyone, welcome to the weekly sync. I think we should look at the numbers first, "
    "then talk about the roadmap. Does that work for you? Great, let's go! "
)


def best_of(repeats: int, run: object) -> float:
    assert callable(run)
    times = []
    for _ in range(repeats):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rate = 16000
    one = encode(TEXT, rate)
    copies = max(1, round(args.seconds * rate * 2 / len(one)))
    text = TEXT * copies
    speech = encode(text, rate)
    audio_s = len(speech) / 2 / rate
    words = len(text.split())
    print(f"tone code: {audio_s:.1f} s of audio, {words} words ({words / audio_s:.1f} words/s)")

    took = best_of(args.repeats, lambda: encode(text, rate))
    print(f"  encode                  {audio_s / took:8.0f}x real time")

    took = best_of(args.repeats, lambda: decode(speech, rate))
    print(f"  decode (whole)          {audio_s / took:8.0f}x real time")

    worst = float("inf")
    for chunk_ms in (10, 20, 50, 100):
        step = 2 * rate * chunk_ms // 1000

        def stream(step: int = step) -> None:
            decoder = StreamDecoder(rate)
            for i in range(0, len(speech), step):
                decoder.feed(speech[i : i + step])
            decoder.flush()

        took = best_of(args.repeats, stream)
        worst = min(worst, audio_s / took) if chunk_ms >= 50 else worst
        cpu = 100 * took / audio_s
        print(
            f"  stream, {chunk_ms:3d} ms chunks    {audio_s / took:8.0f}x real time"
            f"  ({cpu:.3f}% of a core per stream)"
        )

    quiet = silence(round(audio_s * 1000), rate)
    step = 2 * rate // 10

    def idle() -> None:
        decoder = StreamDecoder(rate)
        for i in range(0, len(quiet), step):
            decoder.feed(quiet[i : i + step])

    took = best_of(args.repeats, idle)
    print(f"  stream of silence, 100 ms chunks {audio_s / took:8.0f}x real time")
    verdict = "ok" if worst >= TARGET_X else "TOO SLOW"
    print(f"  target >= {TARGET_X:.0f}x for 50-100 ms chunks: {verdict}")


if __name__ == "__main__":
    main()
