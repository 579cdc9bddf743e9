"""The spoken recap end to end: scripted meetings on the replay transport, both emulators, SQLite.

Every test runs the real MeetingRecorder with a RecapObserver against
serve_emulators (streaming and Voice Agent on one port) at 5x real time, and
decodes what the bot published into the channel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from recorder import app
from recorder.agent.timeouts import AgentTimeouts
from recorder.bot import MeetingReport
from recorder.config import Config
from recorder.emulator.agent.config import AgentBehaviour, AgentFaults
from recorder.emulator.agent.server import VoiceAgentEmulator
from recorder.emulator.server import serve_emulators
from recorder.emulator.streaming.server import StreamingEmulator
from recorder.recap.observer import RecapObserver
from recorder.recap.settings import DEFAULT_MAX_BACKLOG_MS, DEFAULT_PREROLL_MS, RecapSettings
from recorder.tonecode import decode
from recorder.transport.pacing import DEFAULT_LEAD_MS
from recorder.transport.replay import ReplayTransport
from recorder.transport.script import MeetingScript, parse_script
from storage.records import Meeting, Note
from storage.store import TranscriptStore
from tests.support.harness import assert_matches_script

pytestmark = pytest.mark.slow  # whole meetings with a spoken recap: make test-fast skips them

SPEED = 5.0
FAST = AgentTimeouts(connect_s=5.0, ready_s=3.0, reply_start_s=5.0, event_gap_s=3.0, end_s=2.0)


def real_time_cushions(speed: float = SPEED, **options: Any) -> RecapSettings:
    """Settings whose playback cushions last as long on the wall clock as production's.

    What keeps the channel fed while the event loop is busy elsewhere is the audio
    already queued in the transport: at most the pre-roll (the agent speaks at the
    replay's pace, so the reply is never further ahead than that), the backlog and
    the transport's lead (``record`` scales that one). All three count meeting
    time, so a replay at ``speed`` shrinks their wall-clock span ``speed``-fold (at
    5x, 150 ms of lead is 30 ms: less than one scheduling slice on a loaded machine).
    A test that asserts the recap played without a gap scales them back.
    """
    return RecapSettings(
        preroll_ms=DEFAULT_PREROLL_MS * speed,
        max_backlog_ms=DEFAULT_MAX_BACKLOG_MS * speed,
        **{"timeouts": FAST, **options},
    )


@dataclass
class Run:
    report: MeetingReport
    meeting: Meeting
    transport: ReplayTransport
    observer: RecapObserver
    agent: VoiceAgentEmulator
    script: MeetingScript

    @property
    def notes(self) -> list[Note]:
        return [note for note in self.meeting.notes if note.kind == "recap"]

    def published_words(self) -> list[str | None]:
        pcm = b"".join(frame for _, frame in self.transport.published)
        return [word.text for word in decode(pcm, 16_000)]


class StallingReplay(ReplayTransport):
    """Blocks the event loop once, for ``stall_s``, after the recap's third publish.

    A busy loop (another task's long step, the process descheduled) in the middle
    of a recap, on demand.
    """

    stall_s = 0.0
    publishes = 0

    async def publish(self, pcm: bytes) -> None:
        await super().publish(pcm)
        self.publishes += 1
        if self.publishes == 3:
            time.sleep(self.stall_s)  # noqa: ASYNC251 - the stall under test


async def record(
    data: dict[str, Any],
    tmp_path: Path,
    *,
    settings: RecapSettings | None = None,
    faults: AgentFaults | None = None,
    behaviour: AgentBehaviour | None = None,
    api_keys: frozenset[str] = frozenset(),
    api_key: str = "test-key",
    duration_s: float | None = None,
    speed: float = SPEED,
    stall_s: float = 0.0,
) -> Run:
    script = parse_script(data)
    # The lead rides out the loop's jitter on the wall clock, as Agora's does (see
    # real_time_cushions).
    transport = (StallingReplay if stall_s else ReplayTransport)(
        script, speed=speed, publish_lead_ms=DEFAULT_LEAD_MS * speed
    )
    if isinstance(transport, StallingReplay):
        transport.stall_s = stall_s
    streaming = StreamingEmulator(realtime_factor=speed * 3)
    # The agent speaks at the replay's pace, as the real one speaks at real time.
    agent = VoiceAgentEmulator(
        realtime_factor=speed, faults=faults, behaviour=behaviour, api_keys=api_keys
    )
    observer = RecapObserver(
        agent_url="",
        api_key=api_key,
        settings=settings or RecapSettings(timeouts=FAST),
        names=script.names,
    )
    url = f"sqlite+aiosqlite:///{tmp_path / 'recorder.db'}"
    async with (
        serve_emulators(streaming=streaming, agent=agent) as server,
        await TranscriptStore.open(url, auto_migrate=True) as store,
    ):
        observer.agent_url = server.urls["agent"]
        report = await app.record(
            Config(
                database_url=url, assemblyai_api_key="test-key", stt_url=server.urls["streaming"]
            ),
            transport,
            options=app.RecordingOptions(
                sessions_per_minute=600.0,
                names=dict(script.names),
                duration_s=duration_s,
                realtime_factor=speed * 2,
            ),
            observers=[observer],
            store=store,
        )
        meeting = await store.get_meeting(report.meeting_id)
    return Run(report, meeting, transport, observer, agent, script)


def standup(*, end: float = 22.0, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "channel": "recap-standup",
        "participants": [{"uid": 101, "name": "Alice"}, {"uid": 202, "name": "Bob"}],
        "events": [
            {"at": 0.0, "uid": 101, "join": True},
            {"at": 0.2, "uid": 202, "join": True},
            {"at": 0.5, "uid": 101, "say": "Good morning, the billing export shipped yesterday."},
            {"at": 4.5, "uid": 202, "say": "Great, I will review the search patch today."},
            {"at": 8.5, "uid": 101, "say": "Recorder recap."},
            *(extra or []),
        ],
        "end": end,
    }


def contiguous(published: list[tuple[float, bytes]]) -> bool:
    times = [at for at, _ in published]
    return all(round(b - a) == 10 for a, b in zip(times, times[1:], strict=False))


async def test_spoken_trigger_publishes_a_recap_that_decodes_to_the_note(tmp_path: Path) -> None:
    settings = real_time_cushions()
    run = await record(standup(), tmp_path, settings=settings)
    assert_matches_script(run.meeting, run.script)  # recording untouched by the recap
    [note] = run.notes
    assert note.spoken
    assert note.text.split() == [
        "Alice",
        "said:",
        "Good",
        "morning,",
        "the",
        "billing",
        "export",
        "shipped",
        "yesterday.",
        "Bob",
        "said:",
        "Great,",
        "I",
        "will",
        "review",
        "the",
        "search",
        "patch",
        "today.",
    ]
    # The channel heard exactly the note's words, in order, no gaps or repeats.
    assert run.published_words() == note.text.split()
    assert contiguous(run.transport.published), "the recap stalled mid-reply"
    trigger_turn = next(t for t in run.meeting.turns if "recap" in t.text.lower())
    meta = note.meta
    assert meta["trigger"]["uid"] == 101
    assert meta["trigger"]["start_ms"] == trigger_turn.start_ms
    assert meta["interrupted"] is False
    first_frame_ms = run.transport.published[0][0]
    latency_ms = first_frame_ms - trigger_turn.end_ms
    print(f"recap started {latency_ms:.0f} ms (meeting time) after the trigger turn ended")
    # Within 2 s with production's pre-roll: the extra pre-roll the replay needs
    # (real_time_cushions) is meeting time spent gathering, not a delay.
    assert 0 < latency_ms - (settings.preroll_ms - DEFAULT_PREROLL_MS) <= 2000
    assert abs(meta["audio_ms"] - len(run.transport.published) * 10) <= 10
    # One agent session, ended cleanly (it bills on open time).
    [session] = run.agent.sessions
    assert session.close_code == 1000


# Bob's chunks run [12990, 13090) ms (the stagger of uid 202): an onset on a chunk
# boundary is the worst case (the whole chunk must arrive first), 13.04 s a middle one.
@pytest.mark.parametrize("onset_s", [12.99, pytest.param(13.04, marks=pytest.mark.slow)])
async def test_a_participant_speaking_mid_recap_stops_it_within_100_ms(
    tmp_path: Path, onset_s: float
) -> None:
    interruption = {"at": onset_s, "uid": 202, "say": "Wait, one more thing."}
    run = await record(standup(extra=[interruption]), tmp_path)
    [note] = run.notes
    meta = note.meta
    assert meta["interrupted"] is True
    assert meta["barge_in"]["uid"] == 202
    assert meta["stop_reason"] == "barge-in"
    first_ms, last_ms = run.transport.published[0][0], run.transport.published[-1][0]
    onset_ms = onset_s * 1000
    assert first_ms < onset_ms, "the recap had not started yet"
    # From the onset to the last frame published (it starts at last_ms, plays 10 ms).
    stopped_after_ms = last_ms - onset_ms
    print(f"onset {onset_ms:.0f} ms: last frame {stopped_after_ms:.0f} ms later")
    assert stopped_after_ms <= 100
    played_ms = len(run.transport.published) * 10
    assert abs(meta["interrupted_at_ms"] - played_ms) <= 10
    assert meta["audio_ms"] == meta["interrupted_at_ms"]
    # What was played decodes to the start of the recap; the note keeps what the agent said.
    heard = [w for w in run.published_words() if w is not None]
    assert heard and heard == note.text.split()[: len(heard)]
    # The interruption itself is transcribed like any turn.
    assert any("one more thing" in t.text for t in run.meeting.turns if t.uid == 202)


SHORT = {
    "channel": "recap-faults",
    "participants": [{"uid": 101, "name": "Alice"}, {"uid": 202, "name": "Bob"}],
    "events": [
        {"at": 0.0, "uid": 101, "join": True},
        {"at": 0.1, "uid": 202, "join": True},
        {"at": 0.3, "uid": 101, "say": "Good morning team."},
        {"at": 2.5, "uid": 101, "say": "Recorder, recap!"},
        {"at": 9.0, "uid": 202, "say": "We carry on after the recap."},
    ],
    "end": 13.0,
}


@pytest.mark.parametrize(
    ("case", "faults", "timeouts"),
    [
        ("bad key", None, FAST),
        ("session.error", AgentFaults(connect_error=("INTERNAL_ERROR", 1011)), FAST),
        ("drop mid-reply", AgentFaults(drop_after_chunks=6), FAST),
        ("never ready", AgentFaults(never_ready=True), replace(FAST, ready_s=0.3)),
    ],
)
async def test_agent_faults_end_the_recap_and_recording_goes_on(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    case: str,
    faults: AgentFaults | None,
    timeouts: AgentTimeouts,
) -> None:
    caplog.set_level(logging.WARNING, logger="recorder.recap.observer")
    keys = frozenset({"the-right-key"}) if case == "bad key" else frozenset()
    run = await record(
        SHORT,
        tmp_path,
        settings=RecapSettings(timeouts=timeouts),
        faults=faults,
        api_keys=keys,
        speed=10.0,
    )
    # Every turn stored, including the one after the failed recap; the meeting completed.
    assert_matches_script(run.meeting, run.script)
    assert run.meeting.summary.status == "completed"
    [outcome] = run.observer.outcomes
    assert outcome.error is not None and outcome.note_id is None
    assert run.notes == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("recap" in m and "failed" in m and "recording goes on" in m for m in warnings)
    assert "test-key" not in caplog.text
    if case == "drop mid-reply":
        # Audio stopped where the agent dropped (6 chunks of 100 ms at most).
        assert 0 < len(run.transport.published) * 10 <= 600
    else:
        assert run.transport.published == []


def chat(*, end: float) -> dict[str, Any]:
    return {
        "channel": "recap-end",
        "participants": [{"uid": 101, "name": "Alice"}, {"uid": 202, "name": "Bob"}],
        "events": [
            {"at": 0.0, "uid": 101, "join": True},
            {"at": 0.1, "uid": 202, "join": True},
            {"at": 0.3, "uid": 101, "say": "Good morning team."},
            {"at": 3.0, "uid": 202, "say": "The patch shipped."},
        ],
        "end": end,
    }


async def test_recap_on_end_is_spoken_and_stored_before_the_meeting_completes(
    tmp_path: Path,
) -> None:
    # The meeting stops at ~7 s (--duration); the channel plays on while the bot speaks.
    run = await record(
        chat(end=30.0),
        tmp_path,
        settings=real_time_cushions(on_end=True, phrase=None),
        duration_s=7.0 / SPEED,
    )
    [note] = run.notes
    assert note.meta["trigger"] == "end"
    assert note.text == "Alice said: Good morning team. Bob said: The patch shipped."
    assert run.published_words() == note.text.split()
    assert contiguous(run.transport.published)
    summary = run.meeting.summary
    assert summary.status == "completed" and summary.ended_at is not None
    assert note.created_at <= summary.ended_at
    # The meeting ended after the recap had played.
    assert run.report.duration_s * 1000 >= run.transport.published[-1][0]


async def test_a_stall_of_the_loop_that_real_time_rides_out_leaves_no_gap(
    tmp_path: Path,
) -> None:
    # 60 ms with nothing else running: production's cushions (150 ms of lead, 200 ms of
    # pre-roll and backlog, at real time) ride it out, so the replay's must too.
    run = await record(
        chat(end=30.0),
        tmp_path,
        settings=real_time_cushions(on_end=True, phrase=None),
        duration_s=7.0 / SPEED,
        stall_s=0.06,
    )
    [note] = run.notes
    assert run.published_words() == note.text.split()
    assert contiguous(run.transport.published), "the recap stalled mid-reply"


async def test_recap_on_end_is_bounded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="recorder.recap.observer")
    slow = AgentBehaviour(reply_delay_s=60.0)  # the agent never gets round to speaking
    started = asyncio.get_running_loop().time()
    run = await record(
        chat(end=30.0),
        tmp_path,
        settings=RecapSettings(on_end=True, phrase=None, timeouts=FAST, end_timeout_s=0.5),
        behaviour=slow,
        duration_s=7.0 / SPEED,
    )
    elapsed_s = asyncio.get_running_loop().time() - started
    assert elapsed_s < 7.0 / SPEED + 5.0
    assert run.meeting.summary.status == "completed"
    assert_matches_script(run.meeting, run.script)
    assert "took longer than" in caplog.text
    [outcome] = run.observer.outcomes
    assert outcome.is_interrupted and outcome.note_id is None  # nothing said, nothing stored
    assert outcome.stop_reason == "the meeting ended"
    assert run.notes == []
    [session] = run.agent.sessions
    assert session.close_code == 1000  # ended with session.end, not left billing


@pytest.mark.slow
async def test_timer_recaps_cover_what_was_said_since_the_last_one(tmp_path: Path) -> None:
    meeting = {
        "channel": "recap-timer",
        "participants": [{"uid": 101, "name": "Alice"}, {"uid": 202, "name": "Bob"}],
        "events": [
            {"at": 0.0, "uid": 101, "join": True},
            {"at": 0.1, "uid": 202, "join": True},
            {"at": 0.3, "uid": 101, "say": "Good morning team."},
            # The first recap speaks from about 7.3 s for 2.6 s: Bob starts over a second
            # after it (at 10 s, a loaded machine made him barge in and cut it short).
            {"at": 11.0, "uid": 202, "say": "The patch shipped."},
        ],
        "end": 23.0,
    }
    settings = RecapSettings(every_s=7.0, since_last=True, phrase=None, timeouts=FAST)
    run = await record(meeting, tmp_path, settings=settings)
    # Due at 7 s and 14 s; at 21 s nothing new was said, so no third recap.
    assert [note.meta["interrupted"] for note in run.notes] == [False, False]
    first, second = run.notes
    assert first.text == "Alice said: Good morning team."
    assert second.text == "Bob said: The patch shipped."
    assert [n.meta["trigger"] for n in run.notes] == ["timer", "timer"]
    for note, due_ms in zip(run.notes, (7000, 14000), strict=True):
        assert due_ms <= note.meta["requested_at_ms"] <= due_ms + 500
        assert note.meta["interrupted"] is False
    assert run.published_words() == first.text.split() + second.text.split()
    assert len(run.agent.sessions) == 2  # one session per recap, none held between


async def test_a_second_request_during_a_recap_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="recorder.recap.observer")
    meeting = {
        "channel": "recap-twice",
        "participants": [{"uid": 101, "name": "Alice"}, {"uid": 202, "name": "Bob"}],
        "events": [
            {"at": 0.0, "uid": 101, "join": True},
            {"at": 0.1, "uid": 202, "join": True},
            {"at": 0.3, "uid": 101, "say": "Good morning team."},
            {"at": 3.0, "uid": 101, "say": "Recorder recap."},
            {"at": 3.3, "uid": 202, "say": "Recorder, recap."},
        ],
        "end": 12.0,
    }
    settings = RecapSettings(on_end=True, timeouts=FAST)
    run = await record(meeting, tmp_path, settings=settings)
    [note] = run.notes
    assert note.meta["trigger"]["uid"] == 101
    assert note.text == "Alice said: Good morning team."
    assert run.observer.ignored == 1
    # Nothing new was said after the recap: the recap on end is skipped.
    assert "asked for a recap while one is running; ignored" in caplog.text
    assert len(run.agent.sessions) == 1
