"""The whole pipeline on both Agora backends: scripted meetings come out as on the replay transport.

A :class:`FakeMeeting` plays a :class:`MeetingScript` into the backend (the
Python fake, or the SDK's real wrapper over the native stand-in: the ``world``
fixture of tests/agora_standin/plugin.py) on a real thread (joins, leaves,
mutes, each clip's PCM via ``speak``) at the script's times, ``speed`` times
faster than real time; the backend's native thread delivers the 10 ms frames
to the real :class:`AgoraTransport`, and the real MeetingRecorder, STT
emulator and SQLite store do the rest.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from recorder.app import RecordingOptions, record
from recorder.audio import bytes_for_ms
from recorder.bot import MeetingReport
from recorder.config import Config
from recorder.emulator.streaming.server import StreamingEmulator
from recorder.errors import TransportError
from recorder.transport.agora.tap import LinearClock
from recorder.transport.agora.transport import AgoraTransport
from recorder.transport.bridge import DEFAULT_FILL_GAPS_AFTER_MS
from recorder.transport.script import ExpectedWord, MeetingScript, SpeechClip, parse_script
from storage.db import upgrade_database
from storage.records import Meeting
from storage.store import TranscriptStore

APP_ID = "0123456789abcdef0123456789abcdef"
CERTIFICATE = "fedcba9876543210fedcba9876543210"
SPEED = 3.0
TOLERANCE_MS = 150.0

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def fast_world(world: Any) -> None:
    world.tick_s = 0.010 / SPEED


class _MeetingClock(LinearClock):
    """Zero when the bot connected (read on first use), running at the meeting's speed."""

    def __init__(self, meeting: FakeMeeting) -> None:
        super().__init__(math.inf, meeting.speed)
        self.meeting = meeting

    def __call__(self) -> float:
        self.meeting.find_origin()
        return super().__call__()


class FakeMeeting:
    """Plays a script into the backend's channel on a thread; its clock is the meeting clock.

    The clock starts when the backend connects the bot (script time 0), so the
    transport's timestamps and the script's share one origin.
    """

    def __init__(
        self,
        world: Any,
        script: MeetingScript,
        *,
        speed: float,
        faults: list[tuple[float, Callable[[], None]]] | None = None,
        late_start_s: float = 0.0,
    ) -> None:
        self.world = world
        self._late_start_s = late_start_s  # a test's stand-in for a thread held up (GIL, GC)
        self.script = script
        self.speed = speed
        self.faults = faults or []
        self.channel = world.channel(script.channel)
        self._origin: float | None = None
        # The transport's clock: zero when the bot connects, running at ``speed``; a
        # LinearClock so the native tap can stamp frames on it.
        self.clock = _MeetingClock(self)
        self._stop = threading.Event()
        self.finished = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._present: set[int] = set()
        self._muted: set[int] = set()
        # How late (meeting ms) this thread started each clip, by (uid, scripted start).
        self.late_ms: dict[tuple[int, float], float] = {}
        self._thread = threading.Thread(target=self._run, name="fake-meeting", daemon=True)
        self._thread.start()

    def clock_ms(self) -> float:
        return self.clock()

    def find_origin(self) -> float | None:
        origin = self._origin
        if origin is None:
            origin = self._origin = self.world.connected_at()
            if origin is not None:
                self.clock.rebase(origin)
        return origin

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        items: list[tuple[float, int, Callable[[], None]]] = []
        for action in self.script.actions:
            items.append((action.at_ms, 0, lambda a=action: self._act(a.uid, a.action, a.at_ms)))
        for clip in self.script.clips:
            items.append((clip.start_ms, 1, lambda c=clip: self._start_clip(c)))
        for at_ms, fault in self.faults:
            items.append((at_ms, 2, fault))
        items.sort(key=lambda item: item[:2])
        while self._origin is None:  # script time 0 is when the bot is connected
            if self._stop.is_set():
                return
            if self.world.wait_until(lambda: self.world.connected_at() is not None, 0.1):
                self.find_origin()
        if self._stop.wait(self._late_start_s):
            return
        for at_ms, _, apply in items:
            if self._wait_until(at_ms):
                return
            apply()
        self._wait_until(self.script.end_ms)
        self._loop.call_soon_threadsafe(self.finished.set)

    def _wait_until(self, at_ms: float) -> bool:
        assert self._origin is not None
        return self._stop.wait(
            max(0.0, self._origin + at_ms / 1000 / self.speed - time.monotonic())
        )

    def _act(self, uid: int, action: str, at_ms: float) -> None:
        if action == "join" and uid not in self._present:
            self._present.add(uid)
            self._muted.discard(uid)
            self.channel.add_user(uid)
            self._resume(uid, at_ms)
        elif action == "leave" and uid in self._present:
            self._present.discard(uid)
            self.channel.remove_user(uid)
        elif action == "mute" and uid in self._present:
            self._muted.add(uid)
            self.channel.mute(uid)  # the fake drops what was queued: audio said muted is lost
        elif action == "unmute" and uid in self._present and uid in self._muted:
            self._muted.discard(uid)
            self.channel.unmute(uid)
            self._resume(uid, at_ms)

    def _start_clip(self, clip: SpeechClip) -> None:
        # Whole, even if this thread woke a little late: the first word stays intact.
        if clip.uid in self._present and clip.uid not in self._muted:
            self.late_ms[(clip.uid, clip.start_ms)] = max(0.0, self.clock_ms() - clip.start_ms)
            self.channel.speak(clip.uid, clip.pcm)

    def expected_words(self) -> list[ExpectedWord]:
        """The script's words, each clip's moved by how late this thread started it.

        A thread that wakes 50 ms late on a loaded machine starts the clip 150 ms of
        meeting time late (at 3x): the channel really heard it then, and the pipeline
        is right to say so. What is tested is the pipeline's timing, not this thread's.
        """
        shifted = []
        for word in self.script.expected_words():
            clip = next(
                c
                for c in self.script.clips
                if c.uid == word.uid and c.start_ms <= word.start_ms < c.end_ms
            )
            late = self.late_ms.get((clip.uid, clip.start_ms), 0.0)
            shifted.append(
                dataclasses.replace(word, start_ms=word.start_ms + late, end_ms=word.end_ms + late)
            )
        return shifted

    def _resume(self, uid: int, at_ms: float) -> None:
        """Speak the rest of ``uid``'s clip under way at ``at_ms``, from the script's position.

        Only a clip the script started before the (re)join or unmute at ``at_ms``: one
        due after it starts whole at its own time, even when this thread runs late (a
        late join reaching into it would speak it twice).
        """
        if uid not in self._present or uid in self._muted:
            return
        now = self.clock_ms()
        for clip in self.script.clips:
            if clip.uid == uid and clip.start_ms < at_ms < clip.end_ms and now < clip.end_ms:
                offset = bytes_for_ms(max(0.0, now - clip.start_ms))
                self.channel.speak(uid, clip.pcm[offset:])
                return


@dataclass
class Recorded:
    report: MeetingReport
    meeting: Meeting
    transport: AgoraTransport
    fake: FakeMeeting
    #: The native thread's worst lateness, in meeting ms (0 where the backend keeps none).
    delivery_late_ms: float


async def record_on_fake_agora(
    world: Any,
    script: MeetingScript,
    tmp_path: Path,
    *,
    faults: list[tuple[float, Callable[[], None]]] | None = None,
    late_start_s: float = 0.0,
) -> Recorded:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'recorder.db'}"
    meeting = FakeMeeting(world, script, speed=SPEED, faults=faults, late_start_s=late_start_s)
    transport = AgoraTransport(
        app_id=APP_ID,
        channel=script.channel,
        bot_uid=9999,
        app_certificate=CERTIFICATE,
        log_dir=tmp_path / "agora-log",
        clock_ms=meeting.clock,
        fill_gaps_after_ms=DEFAULT_FILL_GAPS_AFTER_MS * SPEED,  # 300 ms of wall clock
    )
    emulator = StreamingEmulator(realtime_factor=SPEED * 3)
    try:
        async with (
            emulator.serve() as server,
            await TranscriptStore.open(db_url, auto_migrate=True) as store,
        ):
            stop = asyncio.Event()
            running = asyncio.create_task(
                record(
                    Config(database_url=db_url, assemblyai_api_key="test-key", stt_url=server.url),
                    transport,
                    options=RecordingOptions(
                        idle_close_s=3.0,
                        sessions_per_minute=600.0,
                        names=dict(script.names),
                        realtime_factor=SPEED * 2,
                    ),
                    store=store,
                    stop=stop,
                )
            )
            await asyncio.wait(
                {running, asyncio.create_task(meeting.finished.wait())},
                timeout=script.end_ms / 1000 / SPEED + 20,
                return_when=asyncio.FIRST_COMPLETED,
            )
            stop.set()
            report = await asyncio.wait_for(running, 30)
            stored = await store.get_meeting(report.meeting_id)
    finally:
        meeting.close()
    lateness = getattr(world, "lateness_s", list)()
    return Recorded(report, stored, transport, meeting, max(lateness, default=0.0) * 1000 * SPEED)


def assert_words_match(
    meeting: Meeting,
    expected: list[ExpectedWord],
    *,
    exact: bool = True,
    cuts_ms: tuple[float, ...] = (),
    late_ms: float = 0.0,
) -> list[tuple[int, str, int]]:
    """Every stored word is one the script said, on the right uid, within tolerance.

    With ``exact`` every expected word must be stored, exactly once. A word cut
    in two by an outage at one of ``cuts_ms`` may come back as the emulator's
    ``[speech N s]`` mark for audio that is not a whole word; those are dropped.
    ``late_ms`` is how late the backend's native thread delivered frames at
    worst: frames are stamped when they arrive, so a word may be stored that
    much later than it was said (on a loaded machine at 3x, the wrapper's
    Python observer waits for the GIL and its thread falls behind).
    Returns the stored words as (uid, text, start_ms).
    """
    tolerance = TOLERANCE_MS + late_ms
    stored = [
        (t.uid, w.text, w.start_ms, w.end_ms)
        for t in meeting.turns
        for w in t.words
        if not (w.text.startswith("[speech") and any(abs(w.start_ms - c) < 300 for c in cuts_ms))
    ]
    uids = {w.uid for w in expected} | {uid for uid, *_ in stored}
    for uid in uids:
        want = [w for w in expected if w.uid == uid]
        got = [(text, start, end) for u, text, start, end in stored if u == uid]
        if exact:
            assert [t for t, _, _ in got] == [w.text for w in want], f"uid {uid} words differ"
        # Each stored word matches the next unused expected word with its text and time.
        index = 0
        for text, start, end in got:
            while index < len(want) and not (
                want[index].text == text
                and -TOLERANCE_MS <= start - want[index].start_ms <= tolerance
            ):
                assert not exact, (uid, text, start, want[index])
                index += 1
            assert index < len(want), f"uid {uid}: {text!r} at {start} ms was never said"
            assert -TOLERANCE_MS <= end - want[index].end_ms <= tolerance, (
                uid,
                text,
                end,
                want[index],
            )
            index += 1
    starts = [t.start_ms for t in meeting.turns]
    assert starts == sorted(starts)  # the merged transcript is in true time order
    return [(uid, text, start) for uid, text, start, _ in stored]


MEETING = {
    "channel": "plan review",
    "participants": [
        {"uid": 101, "name": "Zoë"},
        {"uid": 202, "name": "Lei"},
        {"uid": 303, "name": "Ana"},
    ],
    "events": [
        {"at": 0.0, "uid": 101, "join": True},
        {"at": 0.2, "uid": 202, "join": True},
        {"at": 0.3, "uid": 303, "join": True},
        {"at": 0.5, "uid": 101, "say": "Good morning, shall we start?"},
        {"at": 3.0, "uid": 202, "say": "Yes let us review the plan."},
        {"at": 4.0, "uid": 303, "say": "I agree, no problem at all."},
        {"at": 7.5, "uid": 101, "mute": True},
        {"at": 8.0, "uid": 303, "say": "While Zoe is muted, a quick note."},
        {"at": 11.0, "uid": 101, "unmute": True},
        {"at": 11.5, "uid": 101, "say": "I am back now."},
        {"at": 12.0, "uid": 202, "leave": True},
        {"at": 14.0, "uid": 202, "join": True},
        {"at": 14.5, "uid": 202, "say": "Rejoined after a drop, done."},
    ],
    "end": 19.0,
}


@pytest.mark.parametrize("idle_silence", [True, False], ids=["silent-frames", "no-frames"])
async def test_scripted_meeting_matches_the_script(
    world: Any, tmp_path: Path, idle_silence: bool
) -> None:
    # Whether Agora sends frames while an unmuted participant is silent is
    # UNCONFIRMED (docs/providers.md, "Agora: audio frames"): the pipeline must be right
    # either way.
    world.idle_silence = idle_silence
    script = parse_script(MEETING)
    recorded = await record_on_fake_agora(world, script, tmp_path)
    assert_words_match(
        recorded.meeting, recorded.fake.expected_words(), late_ms=recorded.delivery_late_ms
    )
    assert recorded.meeting.summary.status == "completed"
    names = {p.uid: p.display_name for p in recorded.meeting.participants}
    assert names == {101: "Zoë", 202: "Lei", 303: "Ana"}
    assert recorded.report.turns == len(recorded.meeting.turns)
    assert all(s.closed_at is not None for s in recorded.meeting.stream_sessions)
    bridge = recorded.transport.bridge
    assert bridge is not None and bridge.wakeups < bridge.frames / 7
    assert recorded.transport.callback_errors == 0 and world.errors == []
    assert world.connections()[0].released


@pytest.mark.parametrize("world", ["fake"], indirect=True)
async def test_a_late_meeting_thread_speaks_each_clip_once(world: Any, tmp_path: Path) -> None:
    # The harness itself: on a loaded machine (a long collection in a big test process)
    # the meeting's thread may apply a join after the clip that follows it was due. The
    # join must not speak that clip's rest as well as the clip's own start speaking it
    # whole (as it once did: a duplicated turn with a cut first word).
    world.idle_silence = True
    script = parse_script(
        {
            "channel": "late thread",
            "events": [
                {"at": 0.0, "uid": 7, "join": True},
                {"at": 0.3, "uid": 7, "say": "Good morning, shall we start?"},
            ],
            "end": 4.0,
        }
    )
    # 250 ms of wall clock is 750 ms of meeting time at 3x: past the clip's start.
    recorded = await record_on_fake_agora(world, script, tmp_path, late_start_s=0.25)
    assert recorded.fake.late_ms[(7, 300.0)] > 300
    assert_words_match(
        recorded.meeting, recorded.fake.expected_words(), late_ms=recorded.delivery_late_ms
    )


async def test_outage_is_a_gap_with_no_words_invented(world: Any, tmp_path: Path) -> None:
    world.idle_silence = True
    script = parse_script(
        {
            "channel": "outage",
            "events": [
                {"at": 0.0, "uid": 5, "join": True},
                {"at": 0.3, "uid": 5, "say": "One two three four five six seven eight."},
                {"at": 5.5, "uid": 5, "say": "Nine ten eleven twelve thirteen fourteen."},
            ],
            "end": 10.0,
        }
    )
    # The outage starts inside "eight." (2055-2310 ms), 155 ms after "seven" ends: the fake
    # meeting's clock and the fake SDK's frame thread drift apart under load, and a cut
    # 5 ms after a word's end (as it once was) could fall before that end instead.
    outage = (2.15 * 1000, 3.5 * 1000)
    recorded = await record_on_fake_agora(
        world,
        script,
        tmp_path,
        faults=[(outage[0], world.interrupt), (outage[1], world.restore)],
    )
    stored = assert_words_match(
        recorded.meeting,
        recorded.fake.expected_words(),
        exact=False,
        cuts_ms=outage,
        late_ms=recorded.delivery_late_ms,
    )
    (gap,) = recorded.transport.gaps
    assert abs(gap[0] - outage[0]) <= TOLERANCE_MS and abs(gap[1] - outage[1]) <= TOLERANCE_MS
    # Nothing is placed inside the outage, and the words clear of it all survive.
    assert not [w for w in stored if outage[0] + 50 < w[2] < outage[1] - 50]
    clear = [
        w.text
        for w in recorded.fake.expected_words()  # as said: moved if a clip started late
        if w.end_ms < outage[0] - 100 or w.start_ms > outage[1] + 100
    ]
    stored_texts = [text for _, text, _ in stored]
    assert [t for t in stored_texts if t in clear] == clear
    assert len(stored_texts) < len(script.expected_words())  # the outage cost words
    assert recorded.meeting.summary.status == "completed"


async def test_kicked_mid_meeting_keeps_the_transcript(world: Any, tmp_path: Path) -> None:
    world.idle_silence = True
    script = parse_script(
        {
            "channel": "kick",
            "events": [
                {"at": 0.0, "uid": 5, "join": True},
                {"at": 0.3, "uid": 5, "say": "Alpha bravo charlie delta."},
                {"at": 6.0, "uid": 5, "say": "Never heard."},
            ],
            "end": 8.0,
        }
    )
    with pytest.raises(TransportError) as info:
        await record_on_fake_agora(world, script, tmp_path, faults=[(4000, lambda: world.fail(19))])
    assert "same uid login" in str(info.value) and "AGORA_BOT_UID" in str(info.value)
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'recorder.db'}"
    async with await TranscriptStore.open(db_url) as store:
        (summary,) = await store.list_meetings()
        stored = await store.get_meeting(summary.id)
    assert stored.summary.status == "interrupted"
    assert " ".join(t.text for t in stored.turns).split()[:4] == [
        "Alpha",
        "bravo",
        "charlie",
        "delta.",
    ]


def _join_cli(*args: str, **env: str) -> Any:
    from click.testing import CliRunner

    from recorder.cli import cli

    return CliRunner().invoke(cli, ["join", "--transport", "agora", *args], env=env)


async def test_join_command_records_through_agora(
    world: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    await upgrade_database(db_url)
    world.channel("standup").add_user(101)
    env = {"AGORA_APP_ID": APP_ID, "AGORA_APP_CERTIFICATE": CERTIFICATE, "ASSEMBLYAI_API_KEY": "k"}
    async with StreamingEmulator().serve() as server:
        args = (
            "--channel",
            "standup",
            "--duration",
            "0.5",
            "--db",
            db_url,
            "--stt-url",
            server.url,
        )
        result = await asyncio.to_thread(_join_cli, *args, **env)
        assert result.exit_code == 0, result.output
        assert "meeting 1 (standup)" in result.stderr
        assert "from 1 participant," in result.stderr  # 101 was announced after the join
        world.join_failure = 6
        failed = await asyncio.to_thread(_join_cli, *args, **env)
    assert failed.exit_code == 1
    (line,) = [text for text in failed.stderr.splitlines() if text.startswith("error:")]
    assert "AGORA_APP_ID" in line and "reason 6 invalid app id" in line
    assert CERTIFICATE not in result.output + failed.output
    bad_channel = await asyncio.to_thread(_join_cli, "--channel", "a/b", "--db", db_url, **env)
    assert bad_channel.exit_code == 1 and "characters Agora does not allow" in bad_channel.stderr


@pytest.mark.parametrize("idle_silence", [True, False], ids=["silent-frames", "no-frames"])
async def test_a_pause_ends_the_turn_with_or_without_silent_frames(
    world: Any, tmp_path: Path, idle_silence: bool
) -> None:
    # Two sentences 5 s apart: without silent frames the socket once heard no silence,
    # so they came out as one turn. A gap in frames is silence, by the clock.
    world.idle_silence = idle_silence
    script = parse_script(
        {
            "channel": "pause",
            "events": [
                {"at": 0.0, "uid": 5, "join": True},
                {"at": 0.3, "uid": 5, "say": "One two three four."},
                {"at": 6.0, "uid": 5, "say": "Five six seven eight."},
            ],
            "end": 9.5,
        }
    )
    recorded = await record_on_fake_agora(world, script, tmp_path)
    assert_words_match(
        recorded.meeting, recorded.fake.expected_words(), late_ms=recorded.delivery_late_ms
    )
    assert [t.text for t in recorded.meeting.turns] == [
        "One two three four.",
        "Five six seven eight.",
    ]
    # Idle close (3 s) fired in the pause: a socket per sentence, each closed, and the
    # socket-open time billed is about the same either way.
    sessions = recorded.meeting.stream_sessions
    assert len(sessions) == 2 and all(s.closed_at is not None for s in sessions)
    bridge = recorded.transport.bridge
    assert bridge is not None
    assert (bridge.filled_ms > 2000) is (not idle_silence)
