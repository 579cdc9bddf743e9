"""Scripted meetings with faults: the stored transcript (live + repaired) matches the script.

Each test plays a meeting through ``app.record`` against the streaming and the
async API emulators, breaks something, and checks every said word is stored
exactly once, for the right speaker, within 150 ms, and prints per fault:
words said / live / repaired / lost.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from recorder.app import RecordingOptions, record
from recorder.bot import MeetingReport
from recorder.config import Config
from recorder.console import LiveConsole
from recorder.emulator.batch import BatchBehaviour, BatchEmulator
from recorder.emulator.faults import Fault, FaultKind, FaultPlan
from recorder.emulator.streaming.server import StreamingEmulator
from recorder.gaps import DROPPED_CAUSE
from recorder.pipeline import ParticipantStream
from recorder.transport.base import TransportSink
from recorder.transport.replay import ReplayTransport
from recorder.unheard import UNHEARD_CAUSE
from storage.audio import list_segments
from storage.db import upgrade_database
from storage.records import AudioSegment, Meeting
from storage.store import TranscriptStore
from tests.support.harness import assert_matches_script, script_of
from tests.support.processes import recorder_exec
from tests.support.proxy import CuttableProxy, OutageAt
from tests.support.timing import TIMEOUT

pytestmark = pytest.mark.slow

SPEED = 10.0

MEETING: dict[str, Any] = {
    "channel": "durable",
    "participants": [{"uid": 101, "name": "Ada"}, {"uid": 202, "name": "Bo"}],
    "events": [
        {"at": 0.0, "uid": 101, "join": True},
        {"at": 0.1, "uid": 202, "join": True},
        {"at": 0.5, "uid": 101, "say": "Good morning, shall we start the review?"},
        {"at": 4.0, "uid": 202, "say": "Yes, the numbers look fine to me."},
        {"at": 8.0, "uid": 101, "say": "Then we ship on Friday."},
        {"at": 11.0, "uid": 202, "say": "Agreed, see you all then."},
    ],
    "end": 15.0,
}


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"ws://127.0.0.1:{port}/v3/ws"


def tally(name: str, meeting: Meeting, script: dict[str, Any]) -> dict[str, int]:
    said = len(script_of(script).expected_words())
    live = sum(len(t.words) for t in meeting.turns if t.source == "live")
    repaired = sum(len(t.words) for t in meeting.turns if t.source == "repaired")
    counts = {"said": said, "live": live, "repaired": repaired, "lost": said - live - repaired}
    print(f"{name}: words said {said} / live {live} / repaired {repaired} / lost {counts['lost']}")
    if os.environ.get("DEBUG_GAPS"):
        for gap in meeting.gaps:
            print("   gap", gap.uid, gap.from_ms, gap.to_ms, gap.state, gap.cause[:60])
    return counts


async def record_with_emulators(
    tmp_path: Path,
    transport: ReplayTransport,
    *,
    names: dict[int, str],
    faults: FaultPlan | None = None,
    stt_url: str | None = None,
    batch: BatchEmulator | None = None,
) -> tuple[MeetingReport, Meeting, list[AudioSegment]]:
    """Record ``transport``'s meeting against both emulators; the report, meeting, audio."""
    speed = transport.speed
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'recorder.db'}"
    streaming = StreamingEmulator(realtime_factor=speed * 3, faults=faults)
    batch = batch or BatchEmulator(behaviour=BatchBehaviour(processing_s=0.05))
    async with (
        streaming.serve() as live,
        batch.serve() as repair,
        await TranscriptStore.open(db_url, auto_migrate=True) as store,
    ):
        config = Config(
            database_url=db_url,
            assemblyai_api_key="test-key",
            stt_url=stt_url or live.url,
            async_url=repair.url,
        )
        report = await record(
            config,
            transport,
            options=RecordingOptions(
                sessions_per_minute=600.0, names=names, realtime_factor=speed * 2
            ),
            store=store,
        )
        meeting = await store.get_meeting(report.meeting_id)
        segments = await list_segments(store, report.meeting_id)
    return report, meeting, segments


async def record_meeting(
    tmp_path: Path,
    script: dict[str, Any],
    *,
    stt_url: str | None = None,
    batch: BatchEmulator | None = None,
) -> tuple[MeetingReport, Meeting, TranscriptStore | None]:
    report, meeting, segments = await record_with_emulators(
        tmp_path,
        ReplayTransport(script_of(script), speed=SPEED),
        names={101: "Ada", 202: "Bo"},
        stt_url=stt_url,
        batch=batch,
    )
    assert segments and all(s.is_complete and s.format == "flac" for s in segments)
    assert all(Path(s.path).is_file() for s in segments)  # noqa: ASYNC240 - after the run
    return report, meeting, None


async def test_a_clean_meeting_keeps_its_audio_and_ends_completed(tmp_path: Path) -> None:
    report, meeting, _ = await record_meeting(tmp_path, MEETING)
    assert_matches_script(meeting, script_of(MEETING))
    assert report.status == "completed" and meeting.gaps == ()
    counts = tally("no fault", meeting, MEETING)
    assert counts["repaired"] == 0 and counts["lost"] == 0
    # Audio kept for both participants, about as long as the meeting.
    assert report.audio_kept_s > 2 * 10


async def test_service_unreachable_for_the_whole_meeting_is_repaired(tmp_path: Path) -> None:
    report, meeting, _ = await record_meeting(tmp_path, MEETING, stt_url=closed_port_url())
    counts = tally("stt unreachable, whole meeting", meeting, MEETING)
    assert_matches_script(meeting, script_of(MEETING))
    assert report.status == "completed", meeting.gaps
    assert counts["live"] == 0 and counts["lost"] == 0
    assert meeting.gaps and all(g.state == "repaired" for g in meeting.gaps)
    assert {g.uid for g in meeting.gaps} == {101, 202}


# -- an outage of the streaming service mid-meeting ------------------------------------


LONG_MEETING: dict[str, Any] = {
    "channel": "outage",
    "participants": [{"uid": 101, "name": "Ada"}, {"uid": 202, "name": "Bo"}],
    "events": [
        {"at": 0.0, "uid": 101, "join": True},
        {"at": 0.1, "uid": 202, "join": True},
    ]
    + [
        {
            "at": 0.5 + 4.0 * i,
            "uid": 101 if i % 2 == 0 else 202,
            "say": f"Item {i} is on the list, alpha bravo charlie.",
        }
        for i in range(14)
    ],
    "end": 60.0,
}


class ClockedConsole(LiveConsole):
    """A quiet console that keeps every info line with the meeting time it was said at."""

    def __init__(self) -> None:
        super().__init__(quiet=True, status=io.StringIO())
        self.clock_ms: Callable[[], float] = lambda: 0.0
        self.lines: list[tuple[float, str]] = []

    def info(self, message: str) -> None:
        self.lines.append((self.clock_ms(), message))
        super().info(message)


BACK = re.compile(
    # A participant's further trouble while down is counted, not said again.
    r"^\+ transcription back for (Ada|Bo) \(\d+\)( \(seen \d+ times\))?; "
    r"repairing \d\d:\d\d:\d\d-\d\d:\d\d:\d\d from the stored audio$"
)


async def test_a_30_second_outage_mid_meeting_is_repaired(tmp_path: Path) -> None:
    # Repaired while the meeting goes on: when transcription is back the console says
    # which stretch it repairs, and repairs it then, not at the end.
    speed = 4.0
    console = ClockedConsole()
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'recorder.db'}"
    streaming = StreamingEmulator(realtime_factor=speed * 3)
    batch = BatchEmulator(behaviour=BatchBehaviour(processing_s=0.05))
    async with (
        streaming.serve() as live,
        batch.serve() as repair,
        CuttableProxy(int(live.url.rsplit(":", 1)[1].split("/")[0])) as proxy,
        await TranscriptStore.open(db_url, auto_migrate=True) as store,
    ):
        config = Config(
            database_url=db_url,
            assemblyai_api_key="test-key",
            stt_url=proxy.url,
            async_url=repair.url,
        )
        transport = OutageAt(script_of(LONG_MEETING), proxy, 15_000, 45_000, speed=speed)
        console.clock_ms = transport.clock_ms
        report = await record(
            config,
            transport,
            options=RecordingOptions(
                sessions_per_minute=600.0, names={101: "Ada", 202: "Bo"}, realtime_factor=speed * 2
            ),
            store=store,
            console=console,
        )
        meeting = await store.get_meeting(report.meeting_id)
    counts = tally("stt unreachable 30 s mid-meeting", meeting, LONG_MEETING)
    assert_matches_script(meeting, script_of(LONG_MEETING))
    assert report.status == "completed", meeting.gaps
    assert counts["live"] > 0 and counts["repaired"] > 0 and counts["lost"] == 0
    said = [line for _, line in console.lines]
    back_at = [at for at, line in console.lines if BACK.match(line)]
    assert len(back_at) == 2, said  # once per participant
    assert all(at < 60_000 for at in back_at), said
    # The repairs began then, while the meeting went on (the async API is polled every
    # 3 s, so at this speed they may finish just after its last audio) ...
    repaired_at = [at for at, line in console.lines if line.startswith("+ repaired ")]
    print(f"transcription back at {back_at} ms; repairs done at {repaired_at} ms of meeting time")
    assert len(repaired_at) == 2, said
    # ... and nothing was left for the end of the meeting.
    assert "repairing the transcription gaps from the stored audio" not in said


# -- the recorder killed mid-meeting, then 'recorder repair' -------------------------------


async def test_sigkill_then_repair_transcribes_what_the_killed_recorder_kept(
    tmp_path: Path,
) -> None:
    speed = 4.0
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'recorder.db'}"
    script_path = tmp_path / "meeting.json"
    script_path.write_text(json.dumps(LONG_MEETING))  # noqa: ASYNC240 - before the run
    await upgrade_database(db_url)
    streaming = StreamingEmulator(realtime_factor=speed * 3)
    batch = BatchEmulator(behaviour=BatchBehaviour(processing_s=0.05))
    async with streaming.serve() as live, batch.serve() as repair:
        process = await recorder_exec(
            tmp_path,
            "join",
            f"--transport=replay:{script_path}",
            f"--stt-url={live.url}",
            f"--async-url={repair.url}",
            f"--speed={speed}",
            f"--db={db_url}",
        )
        assert process.stdout is not None
        # Killed in the middle of the meeting, while a participant is talking: after
        # the sixth turn was printed.
        for _ in range(6):
            line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT * 4)
            assert line, "recorder exited early"
        process.kill()
        await process.wait()
        async with await TranscriptStore.open(db_url) as store:
            (summary,) = await store.list_meetings()
            assert summary.status == "interrupted"
            segments = await list_segments(store, summary.id)
        assert segments and any(not s.is_complete for s in segments)
        fixed = await recorder_exec(
            tmp_path,
            "repair",
            str(summary.id),
            f"--async-url={repair.url}",
            f"--db={db_url}",
        )
        _, err = await asyncio.wait_for(fixed.communicate(), TIMEOUT * 4)
    text = err.decode()
    assert fixed.returncode == 0, text
    assert "Traceback" not in text and "repaired" in text, text
    async with await TranscriptStore.open(db_url) as store:
        meeting = await store.get_meeting(summary.id)
        segments = await list_segments(store, summary.id)
    # Every word whose audio was kept before the kill is stored exactly once.
    kept_until: dict[int, int] = {}
    for segment in segments:
        size = Path(segment.path).stat().st_size if not segment.is_complete else 0  # noqa: ASYNC240
        end = segment.start_ms + (size // 32 if size else segment.duration_ms)
        kept_until[segment.uid] = max(kept_until.get(segment.uid, 0), end)
    said = [
        w for w in script_of(LONG_MEETING).expected_words() if w.end_ms < kept_until[w.uid] - 200
    ]
    for uid in (101, 202):
        want = [w for w in said if w.uid == uid]
        got = [w for t in meeting.turns if t.uid == uid for w in t.words]
        assert [w.text for w in got[: len(want)]] == [w.text for w in want], uid
        for stored, spoken in zip(got, want, strict=False):
            assert abs(stored.start_ms - spoken.start_ms) <= 150, (uid, stored, spoken)
        assert len(got) - len(want) <= 1  # at most the word cut by the kill, heard in part
    heard = sum(len(t.words) for t in meeting.turns if t.source == "live")
    repaired = sum(len(t.words) for t in meeting.turns if t.source == "repaired")
    print(
        f"SIGKILL mid-meeting then repair: words said before the kill {len(said)} / "
        f"live {heard} / repaired {repaired} / lost {max(0, len(said) - heard - repaired)}"
    )
    assert repaired > 0


# One participant talking without a pause long enough to close the socket.
TALKER: dict[str, Any] = {
    "channel": "talker",
    "participants": [{"uid": 101, "name": "Ada"}],
    "events": [{"at": 0.0, "uid": 101, "join": True}]
    + [
        {"at": 0.5 + 4.0 * i, "uid": 101, "say": f"Item {i} is on the list, alpha bravo charlie."}
        for i in range(12)
    ],
    "end": 50.0,
}


async def test_a_stalled_socket_is_replaced_and_its_stretch_repaired(tmp_path: Path) -> None:
    # The first socket stops answering (connected, silent) after 4 s of audio: pings go
    # unanswered, the socket is dropped and replaced, the stretch is repaired.
    speed = 2.0
    report, meeting, _ = await record_with_emulators(
        tmp_path,
        ReplayTransport(script_of(TALKER), speed=speed),
        names={101: "Ada"},
        faults=FaultPlan(per_connection={0: (Fault(FaultKind.STALL, at_audio_s=4.0),)}),
    )
    counts = tally("stalled socket", meeting, TALKER)
    assert_matches_script(meeting, script_of(TALKER))
    assert report.status == "completed", meeting.gaps
    assert counts["lost"] == 0
    # The stalled socket was replaced (by a ping timeout, or by closing at a turn's end
    # and opening another): live transcription came back.
    assert len(meeting.stream_sessions) > 1
    assert any(t.source == "live" and t.start_ms > 36_000 for t in meeting.turns)


async def test_retranscribe_stores_a_new_revision_and_keeps_the_old(tmp_path: Path) -> None:
    from recorder.audio_store.repair import retranscribe_meeting
    from recorder.batch import AsyncClient

    report, first, _ = await record_meeting(tmp_path, MEETING)
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'recorder.db'}"
    batch = BatchEmulator(behaviour=BatchBehaviour(processing_s=0.01))
    async with (
        batch.serve() as server,
        await TranscriptStore.open(db_url) as store,
    ):
        client = AsyncClient(server.url, "k", poll_interval_s=0.01)
        revision, words = await retranscribe_meeting(
            store, report.meeting_id, client, keyterms=("Friday",)
        )
        latest = await store.get_meeting(report.meeting_id)
        original = await store.get_meeting(report.meeting_id, revision=1)
    assert revision == 2 and words == len(script_of(MEETING).expected_words())
    assert latest.revision == 2 and latest.revisions == (1, 2)
    assert {t.source for t in latest.turns} == {"retranscribed"}
    assert_matches_script(latest, script_of(MEETING))
    assert [t.text for t in original.turns] == [t.text for t in first.turns]
    created = [j.params for j in batch.jobs.values()]
    assert all(p.get("keyterms_prompt") == ["Friday"] for p in created)


# Every retryable close code of the streaming API (docs/providers.md, "Streaming: close
# codes"), with 1008 as the service sends it for too many concurrent sessions.
RETRYABLE_CLOSES: list[tuple[int, str | None]] = [
    (1000, None),
    (1001, None),
    (1011, None),
    (1012, None),
    (1013, None),
    (1014, None),
    (3005, None),
    (3008, None),
    (3009, None),
    (1008, "Too many concurrent sessions"),
    (4000, None),
]


# Every socket is closed by the server (a retryable code) after a little audio, again and
# again: the quick-failure guard gives up on sockets, never on the speech.
@pytest.mark.parametrize(
    ("code", "reason"), RETRYABLE_CLOSES, ids=[str(c) for c, _ in RETRYABLE_CLOSES]
)
async def test_retryable_closes_on_every_socket_lose_no_words(
    tmp_path: Path, code: int, reason: str | None
) -> None:
    speed = 4.0
    report, meeting, _ = await record_with_emulators(
        tmp_path,
        ReplayTransport(script_of(LONG_MEETING), speed=speed),
        names={101: "Ada", 202: "Bo"},
        faults=FaultPlan(default=(Fault.close(code, reason, at_audio_s=2.5),)),
        batch=BatchEmulator(behaviour=BatchBehaviour(processing_s=0.02)),
    )
    counts = tally(f"close code {code} on every socket", meeting, LONG_MEETING)
    assert_matches_script(meeting, script_of(LONG_MEETING))
    assert report.status == "completed", meeting.gaps
    assert counts["lost"] == 0


SEVEN_MINUTES: dict[str, Any] = {
    "channel": "long-outage",
    "participants": [{"uid": 101, "name": "Ada"}, {"uid": 202, "name": "Bo"}],
    "events": [
        {"at": 0.0, "uid": 101, "join": True},
        {"at": 0.1, "uid": 202, "join": True},
    ]
    + [
        {
            "at": 0.5 + 4.0 * i,
            "uid": 101 if i % 2 == 0 else 202,
            "say": f"Point {i} stands, alpha bravo.",
        }
        for i in range(104)
    ],
    "end": 420.0,
}


async def test_a_5_minute_outage_mid_meeting_is_repaired(tmp_path: Path) -> None:
    speed = 10.0
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'recorder.db'}"
    streaming = StreamingEmulator(realtime_factor=speed * 3)
    batch = BatchEmulator(behaviour=BatchBehaviour(processing_s=0.05))
    async with (
        streaming.serve() as live,
        batch.serve() as repair,
        CuttableProxy(int(live.url.rsplit(":", 1)[1].split("/")[0])) as proxy,
        await TranscriptStore.open(db_url, auto_migrate=True) as store,
    ):
        config = Config(
            database_url=db_url, assemblyai_api_key="k", stt_url=proxy.url, async_url=repair.url
        )
        report = await record(
            config,
            OutageAt(script_of(SEVEN_MINUTES), proxy, 60_000, 360_000, speed=speed),
            options=RecordingOptions(
                sessions_per_minute=600.0, names={101: "Ada", 202: "Bo"}, realtime_factor=speed * 2
            ),
            store=store,
        )
        meeting = await store.get_meeting(report.meeting_id)
    counts = tally("stt unreachable 5 min mid-meeting", meeting, SEVEN_MINUTES)
    assert_matches_script(meeting, script_of(SEVEN_MINUTES))
    assert report.status == "completed", meeting.gaps
    assert counts["live"] > 0 and counts["repaired"] > 0 and counts["lost"] == 0


class RevokeAt(ReplayTransport):
    """A replay that makes the streaming emulator refuse the key from meeting time ``at_ms``."""

    def __init__(self, script: Any, emulator: StreamingEmulator, at_ms: float, **kw: Any):
        super().__init__(script, **kw)
        self._emulator, self._at = emulator, at_ms

    async def start(self, sink: Any) -> None:
        emulator, at = self._emulator, self._at

        class Sink(TransportSink):
            def on_event(self, event: Any) -> None:
                sink.on_event(event)

            def on_audio(self, uid: int, chunk: Any) -> None:
                if chunk.start_ms >= at:
                    emulator.api_keys = frozenset({"the-new-key"})
                sink.on_audio(uid, chunk)

        await super().start(Sink())


async def test_a_key_revoked_mid_meeting_keeps_recording_and_repairs_with_a_new_key(
    tmp_path: Path,
) -> None:
    from recorder.audio_store.repair import repair_meeting
    from recorder.batch import AsyncClient

    speed = 4.0
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'recorder.db'}"
    streaming = StreamingEmulator(api_keys={"old-key"}, realtime_factor=speed * 3)
    batch = BatchEmulator(api_keys={"the-new-key"}, behaviour=BatchBehaviour(processing_s=0.02))
    async with (
        streaming.serve() as live,
        batch.serve() as repair,
        await TranscriptStore.open(db_url, auto_migrate=True) as store,
    ):
        config = Config(
            database_url=db_url,
            assemblyai_api_key="old-key",
            stt_url=live.url,
            async_url=repair.url,
        )
        report = await record(
            config,
            RevokeAt(script_of(LONG_MEETING), streaming, 20_000, speed=speed),
            options=RecordingOptions(
                sessions_per_minute=600.0, names={101: "Ada", 202: "Bo"}, realtime_factor=speed * 2
            ),
            store=store,
        )
        # The recording went on to the end; its gaps wait for a key that works.
        assert report.status == "partial" and report.duration_s >= 59
        assert report.gaps and all(g.state == "open" for g in report.gaps)
        outcome = await repair_meeting(
            store,
            report.meeting_id,
            AsyncClient(repair.url, "the-new-key", poll_interval_s=0.01),
        )
        assert outcome.left_open == 0
        meeting = await store.get_meeting(report.meeting_id)
    counts = tally("key revoked mid-meeting, repaired with a new key", meeting, LONG_MEETING)
    assert_matches_script(meeting, script_of(LONG_MEETING))
    assert counts["live"] > 0 and counts["repaired"] > 0 and counts["lost"] == 0


async def test_a_live_fragment_where_live_audio_resumed_gives_way_to_the_whole_word(
    tmp_path: Path,
) -> None:
    # The 5-minute outage's defect, made certain: live transcription resumed inside a
    # word (the backlog it caught up began where the buffer's cap had cut it), heard its
    # tail as a fragment, and the repair heard the word whole: it is stored once, whole.
    from recorder.audio import Chunk
    from recorder.audio_store import AudioKeeper
    from recorder.audio_store.repair import repair_meeting
    from recorder.batch import AsyncClient
    from recorder.tonecode import encode_words
    from storage.gaps import add_gap
    from storage.records import TurnRecord, Word

    pcm, words = encode_words("alpha bravo charlie delta echo.")
    delta, echo = words[3], words[4]
    resumed_ms = (delta.start_ms + delta.end_ms) // 2  # live audio resumed mid-"delta"
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'recorder.db'}"
    batch = BatchEmulator(behaviour=BatchBehaviour(processing_s=0.01))
    async with (
        batch.serve() as server,
        await TranscriptStore.open(db_url, auto_migrate=True) as store,
    ):
        meeting_id = await store.start_meeting("fragment", 1, datetime.now(UTC))
        keeper = AudioKeeper(store, meeting_id, tmp_path / "audio")
        step = 3200  # 100 ms
        for at in range(0, len(pcm), step):
            keeper.feed(5, Chunk(pcm[at : at + step], at // 32, is_speech=True))
        await keeper.aclose()
        session = await store.open_stream_session(meeting_id, 5, datetime.now(UTC))
        fragment = Word("[speech 0.1 s]", resumed_ms, int(delta.end_ms))
        whole = Word(str(echo.text), int(echo.start_ms), int(echo.end_ms))
        await store.upsert_turns(
            [
                TurnRecord(
                    meeting_id,
                    5,
                    session,
                    0,
                    fragment.start_ms,
                    whole.end_ms,
                    f"{fragment.text} {whole.text}",
                    (fragment, whole),
                )
            ]
        )
        await add_gap(store, meeting_id, 5, 0, resumed_ms, "the outage outlasted the buffer")
        outcome = await repair_meeting(
            store, meeting_id, AsyncClient(server.url, "k", poll_interval_s=0.01)
        )
        meeting = await store.get_meeting(meeting_id)
    assert outcome.repaired == 1 and outcome.left_open == 0
    stored = [(w.text, t.source) for t in meeting.turns for w in t.words]
    assert stored == [
        ("alpha", "repaired"),
        ("bravo", "repaired"),
        ("charlie", "repaired"),
        ("delta", "repaired"),
        ("echo.", "live"),
    ]
    assert [t.text for t in meeting.turns] == ["alpha bravo charlie delta", "echo."]


class StallAt(ReplayTransport):
    """A replay whose event loop stalls for ``stall_s`` of wall time at meeting time ``at_ms``."""

    def __init__(self, script: Any, at_ms: float, stall_s: float, **kw: Any):
        super().__init__(script, **kw)
        self._at, self._stall_s = at_ms, stall_s

    async def start(self, sink: Any) -> None:
        at, stall_s, stalled = self._at, self._stall_s, [False]

        class Sink(TransportSink):
            def on_event(self, event: Any) -> None:
                sink.on_event(event)

            def on_audio(self, uid: int, chunk: Any) -> None:
                if chunk.start_ms >= at and not stalled[0]:
                    stalled[0] = True
                    time.sleep(stall_s)  # the point: a loop blocked, as by a slow call
                sink.on_audio(uid, chunk)

        await super().start(Sink())


async def test_audio_dropped_by_a_stalled_loop_is_a_lost_gap_and_the_meeting_partial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The bridge holds 0.5 s of each participant's audio; the loop stalls 1 s of wall
    # time (10 s of meeting at this speed) once Bo has begun: what it drops is gone.
    monkeypatch.setattr("recorder.transport.replay._queue_bound_s", lambda speed: 0.5)
    report, meeting, _ = await record_with_emulators(
        tmp_path,
        StallAt(script_of(MEETING), 4_500, 1.0, speed=SPEED),
        names={101: "Ada", 202: "Bo"},
    )
    counts = tally("loop stalled 10 s of meeting", meeting, MEETING)
    assert counts["lost"] > 0
    assert report.status == "partial" and report.dropped_audio_ms > 5_000
    lost = [g for g in meeting.gaps if g.cause == DROPPED_CAUSE]
    assert lost and all(g.state == "lost" for g in lost)
    assert {g.uid for g in lost} == {101, 202}
    assert sum(g.to_ms - g.from_ms for g in lost) == pytest.approx(report.dropped_audio_ms, abs=20)
    err = capsys.readouterr().err
    assert "the recorder fell behind and dropped audio of Bo (202) at 00:0" in err


async def test_speech_a_stream_forgot_to_report_is_found_and_repaired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every socket is cut before its first final, and no stream reports what it missed:
    # the end-of-meeting check finds the speech no turn covers and repairs it all.
    monkeypatch.setattr(ParticipantStream, "_record_gap", lambda *args, **kwargs: None)
    faults = FaultPlan(default=(Fault.close(3005, None, at_audio_s=2.5),))
    report, meeting, _ = await record_with_emulators(
        tmp_path,
        ReplayTransport(script_of(MEETING), speed=SPEED),
        names={101: "Ada", 202: "Bo"},
        faults=faults,
    )
    counts = tally("streams report no gaps", meeting, MEETING)
    assert_matches_script(meeting, script_of(MEETING))
    assert report.status == "completed", meeting.gaps
    assert counts["repaired"] > 0 and counts["lost"] == 0
    found = [g for g in meeting.gaps if g.cause == UNHEARD_CAUSE]
    assert found and all(g.state == "repaired" for g in found)
    assert "stretch(es) of speech no live transcript covered" in capsys.readouterr().err
