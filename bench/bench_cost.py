"""Billed streaming seconds against speech on four meeting shapes, old and new close policy.

Plays meetings generated from a seed (tests/support/meeting_shapes.py: a stand-up, a
review, a lecture with questions, a 12-person all-hands) through the real pipeline
(``app.record``: replay transport, STT client, streaming emulator, SQLite) faster than
real time, with the emulator billing and limiting new sessions on the meeting's clock.
For each shape, session rate and policy it prints billed/speech, sockets opened per
minute, refusals (3009), first words and words lost, and the session rate learned.

The pauses printed first are what the hold is chosen from: a speaker's next sentence
starts within about half a second of the last (p90 0.6-1.1 s), while their next turn
comes after someone else's, seconds later (p10 3 s or more). Holding longer than a
sentence pause only pays for silence (a reopen bills nothing extra: the socket opens on
speech with the pre-roll), so the hold is the typical sentence pause, 0.6 s
(``DEFAULT_HOLD_MS`` in recorder/stt/hold.py, with the measured figures); ``--holds``
measures others.

    PYTHONPATH=. python bench/bench_cost.py
    PYTHONPATH=. python bench/bench_cost.py --shapes standup --holds 0.5,1,1.5 --rates 100
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recorder.stt.hold import DEFAULT_HOLD_MS, ClosePolicy  # noqa: E402
from tests.support.meeting_shapes import SHAPES, Meeting, generate, record_meeting  # noqa: E402


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def print_pauses(meeting: Meeting) -> None:
    pauses = [p / 1000 for p in meeting.sentence_pauses_ms]
    returns = [p / 1000 for p in meeting.turn_returns_ms]
    print(
        f"{meeting.name:9} pauses between one speaker's sentences: n={len(pauses):3d} "
        f"p50 {_quantile(pauses, 0.5):.2f} s  p90 {_quantile(pauses, 0.9):.2f} s  "
        f"max {max(pauses, default=float('nan')):.2f} s | a speaker's next turn after: "
        f"n={len(returns):3d} p10 {_quantile(returns, 0.1):.1f} s  "
        f"p50 {_quantile(returns, 0.5):.1f} s",
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=2.0, help="length of each meeting")
    parser.add_argument("--speed", type=float, default=8.0, help="replay speed")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--rates", default="100,5", help="sessions per minute to run at")
    parser.add_argument(
        "--holds", default=str(DEFAULT_HOLD_MS / 1000), help="turn-end holds, seconds"
    )
    parser.add_argument("--no-old", action="store_true", help="skip the idle-close policy")
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    meetings = {shape: generate(shape, args.seed, args.minutes) for shape in args.shapes.split(",")}
    for meeting in meetings.values():
        print_pauses(meeting)
    print()
    header = (
        f"{'shape':9} {'rate':>4} {'policy':13} {'speech s':>8} {'billed s':>8} {'ratio':>6} "
        f"{'opens/min':>9} {'refused':>7} {'1st lost':>8} {'lost':>4} {'extra':>5} "
        f"{'learned/min':>11}"
    )
    print(header)
    print("-" * len(header))
    policies: list[tuple[str, ClosePolicy, float]] = []
    if not args.no_old:
        policies.append(("idle 2 s", ClosePolicy.IDLE, 0.0))
    for hold in args.holds.split(","):
        policies.append((f"turn-end {float(hold):.1f}", ClosePolicy.TURN_END, float(hold)))
    ratios: dict[tuple[str, str], list[float]] = {}
    for name, meeting in meetings.items():
        script = meeting.script()
        for rate in (float(r) for r in args.rates.split(",")):
            for label, policy, hold in policies:
                with tempfile.TemporaryDirectory() as folder:
                    out = await record_meeting(
                        script,
                        Path(folder),
                        policy=policy,
                        hold_s=hold or DEFAULT_HOLD_MS / 1000,
                        sessions_per_minute=rate,
                        speed=args.speed,
                    )
                ratios.setdefault((label, f"{rate:g}"), []).append(out.ratio)
                print(
                    f"{name:9} {rate:4g} {label:13} {out.speech_s:8.1f} {out.billed_s:8.1f} "
                    f"{out.ratio:5.2f}x {out.opens_per_minute:9.1f} {out.refused:7d} "
                    f"{out.first_words_lost:4d}/{out.utterances:<3d} {out.words_lost:4d} "
                    f"{out.words_extra:5d} {out.learned_per_minute:11.1f}",
                    flush=True,
                )
    print()
    for (label, rate), values in ratios.items():
        print(f"mean billed/speech, {label} at {rate}/min: {statistics.fmean(values):.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
