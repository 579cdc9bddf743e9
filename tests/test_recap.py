"""The spoken recap's parts: durations, the trigger phrase, the turn ledger, paced playback, CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from recorder.agent.timeouts import AgentTimeouts
from recorder.audio import Chunk
from recorder.bot import MeetingContext
from recorder.cli import cli
from recorder.cli.recap_options import parse_duration
from recorder.emulator.agent.server import VoiceAgentEmulator
from recorder.pipeline import FinalTurn
from recorder.recap.ledger import TurnLedger
from recorder.recap.observer import RecapObserver
from recorder.recap.player import RecapPlayer
from recorder.recap.settings import RecapSettings
from recorder.recap.triggers import RecapTimer, contains_phrase, is_bare_request
from recorder.tonecode import decode, encode
from recorder.transport.base import Transport, TransportEvent, TransportSink
from recorder.transport.replay import ReplayTransport
from recorder.transport.script import MeetingScript, parse_script
from storage.records import TurnRecord
from storage.store import TranscriptStore

# -- durations and the phrase ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("45", 45), (" 2 M ", 120)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "10x", "0", "0s", "-5s", "1h x", "ten minutes"])
def test_bad_durations_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="use e.g. 90s, 10m, 1h"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("Recorder recap.", True),
        ("recorder, recap", True),
        ("OK so... RECORDER -- Recap, please!", True),
        ("the recorder recapped it", False),
        ("Recorder, wrap up.", False),
        ("recap recorder", False),
    ],
)
def test_the_phrase_matches_whole_words_ignoring_case_and_punctuation(
    text: str, said: bool
) -> None:
    assert contains_phrase(text, "recorder, recap") is said


def test_a_bare_request_is_not_meeting_content() -> None:
    assert is_bare_request("Recorder, recap please.", "recorder, recap")
    assert not is_bare_request(
        "Recorder recap. Also the deploy is done for today.", "recorder recap"
    )
    assert not is_bare_request("The deploy is done.", "recorder recap")


# -- the timer ----------------------------------------------------------------------


class FakeClock:
    """A meeting clock running ``pace`` times as fast as a wall clock that only sleeping moves."""

    def __init__(self, pace: float) -> None:
        self.pace = pace
        self.wall_s = 0.0

    def meeting_ms(self) -> float:
        return self.wall_s * 1000.0 * self.pace

    def wall(self) -> float:
        return self.wall_s

    async def sleep(self, seconds: float) -> None:
        self.wall_s += seconds
        await asyncio.sleep(0)


@pytest.mark.parametrize("pace", [0.5, 1.0, 5.0, 15.0])
async def test_the_timer_fires_on_time_on_the_meeting_clock_at_any_pace(pace: float) -> None:
    clock = FakeClock(pace)
    fired: list[float] = []
    three = asyncio.Event()

    def due() -> None:
        fired.append(clock.meeting_ms())
        if len(fired) == 3:
            three.set()

    timer = RecapTimer(7.0, clock.meeting_ms, due, sleep=clock.sleep, wall_s=clock.wall)
    task = asyncio.create_task(timer.run())
    async with asyncio.timeout(5):
        await three.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    for fired_ms, due_ms in zip(fired, (7000, 14000, 21000), strict=True):
        assert due_ms <= fired_ms <= due_ms + 1
    # It sleeps until the clock should read the due time, rather than polling it.
    assert timer.naps <= 25


def test_the_settings_the_cli_reads_load_nothing_heavy() -> None:
    code = (
        "import sys, recorder.recap.settings; "
        "print(sorted(m for m in ('sqlalchemy', 'alembic', 'websockets', 'numpy', 'storage') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# -- the turn ledger ----------------------------------------------------------------


def final(uid: int, start_ms: int, text: str, order: int = 0) -> FinalTurn:
    return FinalTurn(uid, (0, 0), order, start_ms, start_ms + 500, text, (), None, None)


async def test_the_ledger_adds_turns_not_yet_committed(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    async with await TranscriptStore.open(url, auto_migrate=True) as store:
        now = datetime.now(UTC)
        meeting = await store.start_meeting("ledger", 9999, now)
        await store.record_participant(meeting, 1, now, display_name="Ann")
        session = await store.open_stream_session(meeting, 1, now)
        ledger = TurnLedger({2: "Ben"})
        committed = final(1, 1000, "Committed words.")
        ledger.add(committed)
        await store.upsert_turns(
            [TurnRecord(meeting, 1, session, 0, 1000, 1500, "Committed words.")]
        )
        assert ledger.add(final(2, 500, "Heard first, not stored yet.", order=0))
        assert not ledger.add(final(2, 500, "Heard first, not stored yet!", order=0))
        assert ledger.heard_count == 2
        turns = await ledger.read(store, meeting)
        assert [(t.speaker, t.start_ms, t.text) for t in turns] == [
            ("Ben", 500, "Heard first, not stored yet!"),  # the latest version
            ("Ann", 1000, "Committed words."),
        ]
        ledger.mark_recapped(turns)
        ledger.add(final(1, 3000, "Something new."))
        fresh = ledger.select(await ledger.read(store, meeting), since_last=True)
        assert [t.text for t in fresh] == ["Something new."]
        everything = ledger.select(
            await ledger.read(store, meeting), since_last=False, leave_out=(1, 3000)
        )
        assert [t.text for t in everything] == ["Heard first, not stored yet!", "Committed words."]


async def test_the_ledger_prefers_the_latest_final_over_an_older_committed_one(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    async with await TranscriptStore.open(url, auto_migrate=True) as store:
        now = datetime.now(UTC)
        meeting = await store.start_meeting("ledger", 9999, now)
        session = await store.open_stream_session(meeting, 1, now)
        ledger = TurnLedger({1: "Ann"})
        ledger.add(final(1, 1000, "the deploy is done"))
        # The writer committed the unformatted final; the formatted one is heard, not yet stored.
        await store.upsert_turns(
            [TurnRecord(meeting, 1, session, 0, 1000, 1500, "the deploy is done")]
        )
        ledger.add(final(1, 1000, "The deploy is done."))
        turns = await ledger.read(store, meeting)
        assert [(t.start_ms, t.text) for t in turns] == [(1000, "The deploy is done.")]
        await store.upsert_turns(
            [TurnRecord(meeting, 1, session, 0, 1000, 1500, "The deploy is done.")]
        )
        turns = await ledger.read(store, meeting)
        assert [(t.start_ms, t.text) for t in turns] == [(1000, "The deploy is done.")]


# -- paced playback -----------------------------------------------------------------


class Ignore(TransportSink):
    def on_event(self, event: TransportEvent) -> None:
        pass

    def on_audio(self, uid: int, chunk: Chunk) -> None:
        pass


def quiet_channel(seconds: float) -> ReplayTransport:
    script = parse_script(
        {"channel": "quiet", "events": [{"at": 0.0, "uid": 1, "join": True}], "end": seconds}
    )
    return ReplayTransport(script, speed=10.0)


def pieces(pcm: bytes, size: int) -> list[bytes]:
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


RECAP_WORDS = "Ann said: the deploy is done. Ben said: search ships today."


async def test_playback_is_whole_frames_paced_by_the_channel_and_complete() -> None:
    transport = quiet_channel(60.0)
    await transport.start(Ignore())
    cancel = asyncio.Event()
    player = RecapPlayer(transport, cancel=cancel, clock_ms=lambda: transport.script_ms)
    pcm = encode(RECAP_WORDS, 16_000)
    highest = 0.0
    # 100 ms pieces of odd sizes, handed over far faster than real time.
    for index, piece in enumerate(pieces(pcm, 3203)):
        await player.feed(piece)
        if index == 0:
            assert transport.published == [] and player.started_at_ms is None  # pre-roll
        highest = max(highest, transport.publish_backlog_ms)
    await player.finish()
    await transport.stop()
    assert highest <= 200.0
    assert transport.publish_backlog_ms == 0 and not player.is_playing
    frames = [frame for _, frame in transport.published]
    assert all(len(frame) == 320 for frame in frames)
    played = b"".join(frames)
    assert played[: len(pcm)] == pcm and not played[len(pcm) :].strip(b"\0")
    assert [w.text for w in decode(played, 16_000)] == RECAP_WORDS.split()
    assert player.played_ms == len(frames) * 10


class ManualChannel(Transport):
    """A channel that plays a frame only when the test says so, and says who waits for it."""

    channel = "manual"

    def __init__(self) -> None:
        self.queued: deque[bytes] = deque()
        self.played: list[bytes] = []
        self.highest_ms = 0.0
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []
        self.waited_on = asyncio.Event()

    def clock_ms(self) -> float:
        return len(self.played) * 10.0

    async def start(self, sink: TransportSink) -> None:
        pass

    async def wait_finished(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def publish(self, pcm: bytes) -> None:
        self.queued.extend(pieces(pcm, 320))
        self.highest_ms = max(self.highest_ms, self.publish_backlog_ms)

    def flush_publish(self) -> None:
        self.queued.clear()
        self._wake()

    @property
    def publish_backlog_ms(self) -> float:
        return len(self.queued) * 10.0

    @property
    def publish_played_ms(self) -> float:
        return len(self.played) * 10.0

    async def wait_played(self, backlog_ms: float = 0.0) -> None:
        if self.publish_backlog_ms <= backlog_ms:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((backlog_ms, waiter))
        self.waited_on.set()
        try:
            await waiter
        finally:
            self._waiters.remove((backlog_ms, waiter))

    @property
    def is_waited_on(self) -> bool:
        return any(not waiter.done() for _, waiter in self._waiters)

    def play_frame(self) -> None:
        self.played.append(self.queued.popleft())
        self._wake()

    def _wake(self) -> None:
        for limit_ms, waiter in self._waiters:
            if self.publish_backlog_ms <= limit_ms and not waiter.done():
                waiter.set_result(None)


async def test_the_player_waits_for_the_channel_to_play_instead_of_polling_it() -> None:
    channel = ManualChannel()
    player = RecapPlayer(channel, cancel=asyncio.Event(), clock_ms=channel.clock_ms)
    pcm = encode(RECAP_WORDS, 16_000)

    async def speak() -> None:
        for piece in pieces(pcm, 3203):
            await player.feed(piece)
        await player.finish()

    speaking = asyncio.create_task(speak())
    async with asyncio.timeout(5):
        # Play a frame only while the player waits on wait_played: nothing else moves.
        while not speaking.done():
            if channel.is_waited_on:
                channel.play_frame()
                await asyncio.sleep(0)
                continue
            waited = asyncio.create_task(channel.waited_on.wait())
            await asyncio.wait({speaking, waited}, return_when=asyncio.FIRST_COMPLETED)
            waited.cancel()
            channel.waited_on.clear()
    await speaking
    assert not player.is_stalled and not player.is_playing
    assert channel.highest_ms <= 200.0 and channel.publish_backlog_ms == 0
    played = b"".join(channel.played)
    assert played[: len(pcm)] == pcm and not played[len(pcm) :].strip(b"\0")
    assert player.played_ms == len(channel.played) * 10


async def test_interrupt_drops_what_is_queued_and_says_how_far_it_got() -> None:
    transport = quiet_channel(60.0)
    await transport.start(Ignore())
    cancel = asyncio.Event()
    player = RecapPlayer(transport, cancel=cancel, clock_ms=lambda: transport.script_ms)
    chunks = pieces(encode(RECAP_WORDS, 16_000), 3200)
    for piece in chunks[:10]:
        await player.feed(piece)
    played_ms = player.interrupt()
    assert cancel.is_set() and transport.publish_backlog_ms == 0
    heard_then = len(transport.published)
    for piece in chunks[10:]:
        await player.feed(piece)  # the agent may still be talking: nothing more goes out
    await player.finish()
    await transport.stop()
    assert abs(played_ms - heard_then * 10) <= 10
    assert len(transport.published) - heard_then <= 1  # at most the frame on the way out
    assert player.played_ms == played_ms < 1000


async def test_a_channel_that_stops_playing_does_not_hang_the_recap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = quiet_channel(60.0)  # never started: nothing plays what is published
    cancel = asyncio.Event()
    player = RecapPlayer(transport, cancel=cancel, clock_ms=lambda: 0.0, stall_s=0.2)
    async with asyncio.timeout(5):
        for piece in pieces(encode(RECAP_WORDS, 16_000), 3200):
            await player.feed(piece)
        await player.finish()
    assert player.is_stalled and not player.is_playing
    # Nobody can hear it: the agent is told to stop (its session bills while it talks).
    assert cancel.is_set() and player.stop_reason == "the channel stopped playing"
    assert "stopped playing the recap" in caplog.text


# -- barge-in and its grace period ----------------------------------------------------


class HeardChannel(ReplayTransport):
    """A replay channel that says when the bot starts publishing."""

    def __init__(self, script: MeetingScript, *, speed: float) -> None:
        super().__init__(script, speed=speed)
        self.first_publish = asyncio.Event()

    async def publish(self, pcm: bytes) -> None:
        await super().publish(pcm)
        self.first_publish.set()


async def test_the_trigger_speakers_trailing_speech_is_not_a_barge_in(tmp_path: Path) -> None:
    script = parse_script(
        {"channel": "grace", "events": [{"at": 0.0, "uid": 1, "join": True}], "end": 60.0}
    )
    transport = HeardChannel(script, speed=10.0)
    agent = VoiceAgentEmulator(realtime_factor=10.0)
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    async with (
        agent.serve() as server,
        await TranscriptStore.open(url, auto_migrate=True) as store,
    ):
        meeting = await store.start_meeting("grace", 9999, datetime.now(UTC))
        await transport.start(Ignore())
        observer = RecapObserver(
            agent_url=server.url,
            api_key="k",
            settings=RecapSettings(grace_ms=300.0, timeouts=AgentTimeouts(ready_s=3.0)),
            names={1: "Ann", 2: "Ben"},
        )

        async def flush() -> None:
            pass

        await observer.started(
            MeetingContext(meeting, store, transport, flush, lambda: transport.script_ms)
        )
        observer.final_turn(final(2, 100, "The deploy is done and search ships today."))
        observer.final_turn(final(1, 3000, "Recorder, recap.", order=1))
        async with asyncio.timeout(5):
            await transport.first_publish.wait()
        observer.speech(1)  # the one who asked, still trailing off: ignored
        assert observer.is_busy and transport.publish_backlog_ms > 0
        observer.speech(2)  # anyone else: stops it at once
        assert transport.publish_backlog_ms == 0
        await observer.before_end()
        await observer.stopped()
        await transport.stop()
        [note] = (await store.get_meeting(meeting)).notes
    assert note.meta["interrupted"] is True
    assert note.meta["barge_in"]["uid"] == 2
    assert note.meta["trigger"]["uid"] == 1
    assert note.meta["audio_ms"] < 300


# -- the command line -----------------------------------------------------------------


def test_join_help_shows_the_recap_options() -> None:
    result = CliRunner().invoke(cli, ["join", "--help"])
    assert result.exit_code == 0
    for option in (
        "--recap ",
        "--recap-every",
        "--recap-on-end",
        "--recap-phrase",
        "--recap-since-last",
        "--recap-prompt",
        "--voice",
        "--agent-url",
    ):
        assert option in result.output
    demo = CliRunner().invoke(cli, ["demo", "--help"])
    assert "--recap" in demo.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--recap", "--recap-every", "soon"], "'soon' is not a duration"),
        (["--recap", "--recap-every", "5s"], "too short"),
        (["--recap-on-end"], "--recap-on-end only work with --recap"),
        (["--voice", "ivy", "--recap-every", "10m"], "only work with --recap"),
        (["--recap", "--agent-url", "http://x"], "must start with ws:// or wss://"),
    ],
)
def test_bad_recap_options_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    result = CliRunner().invoke(
        cli,
        ["join", "--channel", "x", "--db", db, *args],
        env={"ASSEMBLYAI_API_KEY": "k", "AGORA_APP_ID": "a" * 32},
    )
    assert result.exit_code in (1, 2), result.output
    assert message in result.output


def test_demo_recap_speaks_on_end_through_the_agent_emulator(tmp_path: Path) -> None:
    script = tmp_path / "short.json"
    script.write_text(
        json.dumps(
            {
                "channel": "demo-recap",
                "participants": [{"uid": 1, "name": "Ann"}, {"uid": 2, "name": "Ben"}],
                "events": [
                    {"at": 0.0, "uid": 1, "join": True},
                    {"at": 0.1, "uid": 2, "join": True},
                    {"at": 0.3, "uid": 1, "say": "The deploy is done."},
                    {"at": 2.8, "uid": 2, "say": "Search ships today."},
                ],
                "end": 6.0,
            }
        ),
        encoding="utf-8",
    )
    db = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    assert CliRunner().invoke(cli, ["db", "upgrade", "--db", db]).exit_code == 0
    result = CliRunner().invoke(
        cli,
        ["demo", "--recap", "--speed", "8", "--script", str(script), "--db", db, "-q"]
        + ["-o", str(tmp_path / "t.html")],
    )
    assert result.exit_code == 0, result.output
    assert "* recap (end): Ann said: The deploy is done. Ben said: Search ships today." in (
        result.output
    )

    async def notes() -> list[tuple[str, bool, object]]:
        async with await TranscriptStore.open(db) as store:
            meeting = await store.get_meeting(await store.resolve_meeting("latest"))
        return [(n.text, n.spoken, n.meta["trigger"]) for n in meeting.notes]

    assert asyncio.run(notes()) == [
        ("Ann said: The deploy is done. Ben said: Search ships today.", True, "end")
    ]
