"""A long accelerated meeting with kept audio: memory, audio completeness, words lost.

Plays a generated meeting (default 2 hours, 6 participants taking turns, each
with mutes) through ``app.record`` against the streaming and async emulators,
keeping every participant's audio. Prints RSS every 10 minutes of meeting time
(memory must stay flat), then checks the audio files: per participant, the
kept audio the index lists equals what the recorder received, and every file's
SHA-256 matches. Last, words said / stored / lost.

Run: ``python bench/bench_long_meeting.py`` (BENCH_MINUTES, BENCH_PARTICIPANTS,
BENCH_SPEED change the meeting; the default takes about 6-10 minutes).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recorder.app import RecordingOptions, record  # noqa: E402
from recorder.config import Config  # noqa: E402
from recorder.emulator.batch import BatchEmulator  # noqa: E402
from recorder.emulator.streaming.records import StreamingBehaviour  # noqa: E402
from recorder.emulator.streaming.server import StreamingEmulator  # noqa: E402
from recorder.transport.replay import ReplayTransport  # noqa: E402
from recorder.transport.script import parse_script  # noqa: E402
from storage.audio import list_segments  # noqa: E402
from storage.store import TranscriptStore  # noqa: E402

MINUTES = float(os.environ.get("BENCH_MINUTES", "120"))
PARTICIPANTS = int(os.environ.get("BENCH_PARTICIPANTS", "6"))
SPEED = float(os.environ.get("BENCH_SPEED", "20"))


def meeting() -> dict[str, Any]:
    uids = [100 + i for i in range(PARTICIPANTS)]
    events: list[dict[str, Any]] = [
        {"at": 0.1 * i, "uid": uid, "join": True} for i, uid in enumerate(uids)
    ]
    at, turn = 1.0, 0
    while at < MINUTES * 60 - 10:
        uid = uids[turn % len(uids)]
        events.append(
            {"at": round(at, 2), "uid": uid, "say": f"Topic {turn} moves on, alpha bravo."}
        )
        if turn % 17 == 5:
            events.append({"at": round(at + 4.0, 2), "uid": uid, "mute": True})
            events.append({"at": round(at + 9.0, 2), "uid": uid, "unmute": True})
        at += 4.5
        turn += 1
    return {"channel": "long", "events": events, "end": MINUTES * 60}


def _checksums_match(segments: list[Any]) -> list[bool]:
    return [s.sha256 == hashlib.sha256(Path(s.path).read_bytes()).hexdigest() for s in segments]


class Watched(ReplayTransport):
    """The replay, printing RSS every 10 minutes of meeting time."""

    async def start(self, sink: Any) -> None:
        marks = iter(range(10, int(MINUTES) + 1, 10))
        state = {"next": next(marks, None)}

        class Sink:
            def on_event(self, event: Any) -> None:
                sink.on_event(event)

            def on_audio(self, uid: int, chunk: Any) -> None:
                mark = state["next"]
                if mark is not None and chunk.start_ms >= mark * 60_000:
                    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                    print(f"  {mark:4d} min: max RSS {rss:.0f} MB", flush=True)
                    state["next"] = next(marks, None)
                sink.on_audio(uid, chunk)

        await super().start(Sink())


async def main() -> None:
    script = parse_script(meeting())
    print(f"{MINUTES:.0f} min, {PARTICIPANTS} participants, {SPEED:g}x")
    with tempfile.TemporaryDirectory() as folder:
        db_url = f"sqlite+aiosqlite:///{Path(folder) / 'long.db'}"
        streaming = StreamingEmulator(
            realtime_factor=SPEED * 3, behaviour=StreamingBehaviour(record_frames=False)
        )
        async with (
            streaming.serve() as live,
            BatchEmulator().serve() as repair,
            await TranscriptStore.open(db_url, auto_migrate=True) as store,
        ):
            config = Config(
                database_url=db_url, assemblyai_api_key="k", stt_url=live.url, async_url=repair.url
            )
            report = await record(
                config,
                Watched(script, speed=SPEED),
                options=RecordingOptions(sessions_per_minute=6000.0, realtime_factor=SPEED * 2),
                store=store,
            )
            segments = await list_segments(store, report.meeting_id)
            stored = 0
            async for turn in store.iter_turns(report.meeting_id):
                stored += len(turn.words)
        indexed_s = sum(s.duration_ms for s in segments) / 1000
        intact = all(await asyncio.to_thread(_checksums_match, segments))
        on_disk = sum(s.bytes for s in segments) / 1e6
    said = len(script.expected_words())
    print(f"status {report.status}, {len(report.gaps)} gap(s)")
    print(
        f"audio: {report.audio_kept_s:.0f} s received, {indexed_s:.0f} s in {len(segments)} "
        f"indexed files ({on_disk:.0f} MB), checksums {'match' if intact else 'DIFFER'}"
    )
    print(f"words said {said} / stored {stored} / lost {said - stored}")


if __name__ == "__main__":
    asyncio.run(main())
