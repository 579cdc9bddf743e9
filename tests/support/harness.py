"""Record scripted meetings through the real pipeline, emulator and store; check the script.

:func:`record_script` records through :func:`recorder.app.record`, the function
the CLI calls, so the tests exercise the production wiring.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recorder.app import RecordingOptions, record
from recorder.bot import MeetingReport
from recorder.config import Config
from recorder.emulator.faults import FaultPlan
from recorder.emulator.streaming.server import StreamingEmulator
from recorder.transport.base import Transport
from recorder.transport.replay import ReplayTransport
from recorder.transport.script import MeetingScript, parse_script
from storage.records import Meeting
from storage.store import TranscriptStore

__all__ = ["Recorded", "assert_matches_script", "record_script", "script_of"]


@dataclass
class Recorded:
    report: MeetingReport
    meeting: Meeting
    emulator: StreamingEmulator
    db_url: str


def script_of(data: dict[str, Any] | MeetingScript) -> MeetingScript:
    return data if isinstance(data, MeetingScript) else parse_script(data)


async def record_script(
    data: dict[str, Any] | MeetingScript,
    tmp_path: Path,
    *,
    speed: float = 10.0,
    idle_close_s: float = 2.0,
    faults: FaultPlan | None = None,
    sessions_per_minute: float = 600.0,
    transport: Transport | None = None,
    db_url: str | None = None,
) -> Recorded:
    script = script_of(data)
    db_url = db_url or f"sqlite+aiosqlite:///{tmp_path / 'recorder.db'}"
    emulator = StreamingEmulator(realtime_factor=speed * 3, faults=faults)
    async with (
        emulator.serve() as server,
        await TranscriptStore.open(db_url, auto_migrate=True) as store,
    ):
        report = await record(
            Config(database_url=db_url, assemblyai_api_key="test-key", stt_url=server.url),
            transport or ReplayTransport(script, speed=speed),
            options=RecordingOptions(
                idle_close_s=idle_close_s,
                sessions_per_minute=sessions_per_minute,
                names=dict(script.names),
                realtime_factor=speed * 2,
            ),
            store=store,
        )
        meeting = await store.get_meeting(report.meeting_id)
    return Recorded(report, meeting, emulator, db_url)


def assert_matches_script(
    meeting: Meeting, script: MeetingScript, *, tolerance_ms: float = 150.0
) -> None:
    """Every said word stored exactly once, right uid, within tolerance; merged in order."""
    expected = script.expected_words()
    uids = {w.uid for w in expected} | {t.uid for t in meeting.turns}
    for uid in uids:
        want = [w for w in expected if w.uid == uid]
        got = [w for t in meeting.turns if t.uid == uid for w in t.words]
        if [w.text for w in got] != [w.text for w in want]:
            diff = difflib.unified_diff(
                [f"{w.text} {w.start_ms:.0f}" for w in want],
                [f"{w.text} {w.start_ms:.0f}" for w in got],
                "said",
                "stored",
                n=1,
                lineterm="",
            )
            raise AssertionError(f"uid {uid} words differ:\n" + "\n".join(list(diff)[:40]))
        for stored, said in zip(got, want, strict=True):
            assert abs(stored.start_ms - said.start_ms) <= tolerance_ms, (uid, stored, said)
            assert abs(stored.end_ms - said.end_ms) <= tolerance_ms, (uid, stored, said)
        texts = [t.text for t in meeting.turns if t.uid == uid]
        assert " ".join(texts).split() == [w.text for w in want]
    # The merged transcript is in true time order.
    starts = [t.start_ms for t in meeting.turns]
    assert starts == sorted(starts)
    for turn in meeting.turns:
        if turn.words:
            assert turn.start_ms == turn.words[0].start_ms
