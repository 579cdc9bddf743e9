"""Billed streaming seconds against talk time for several --idle-close values (prints a table).

Runs the real pipeline (replay transport, STT client, emulator, SQLite store) at 10x speed on
two meetings where each of five participants talks 20% of the time: one with long turns
(three sentences each) and one with short remarks (one sentence each). Billed seconds are
the emulator's socket-open seconds, scaled back to meeting time.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.harness import record_script, script_of  # noqa: E402
from tests.test_pipeline import round_robin_meeting, talk_seconds  # noqa: E402

SPEED = 10.0


async def measure(name: str, data: dict, idle_close_s: float) -> None:
    script = script_of(data)
    with tempfile.TemporaryDirectory() as folder:
        recorded = await record_script(data, Path(folder), speed=SPEED, idle_close_s=idle_close_s)
    talk = talk_seconds(script)
    billed = sum(s.billed_seconds for s in recorded.emulator.sessions) * SPEED
    always_open = 5 * script.end_ms / 1000
    print(
        f"{name:12} idle-close {idle_close_s:4.1f} s: talk {talk:6.1f} s  billed {billed:6.1f} s  "
        f"ratio {billed / talk:4.2f}  sessions {len(recorded.emulator.sessions):3d}  "
        f"(always-open would bill {always_open:6.1f} s, {always_open / talk:4.2f}x)",
        flush=True,
    )


async def main() -> None:
    logging.disable(logging.WARNING)
    meetings = {
        "long turns": round_robin_meeting(rounds=2, sentences=3),
        "short turns": round_robin_meeting(rounds=6, sentences=1),
    }
    for name, data in meetings.items():
        for idle in (1.0, 2.0, 3.0, 5.0, 10.0):
            await measure(name, data, idle)


if __name__ == "__main__":
    asyncio.run(main())
