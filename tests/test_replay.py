from __future__ import annotations

import asyncio
import itertools
import json
import wave
from pathlib import Path

import pytest

from recorder.audio import Chunk
from recorder.errors import ReplayError
from recorder.tonecode import decode, encode
from recorder.transport.base import (
    ParticipantJoined,
    ParticipantLeft,
    ParticipantMuted,
    TransportEvent,
    TransportSink,
)
from recorder.transport.replay import ReplayTransport
from recorder.transport.script import load_script, parse_script


class Collect(TransportSink):
    def __init__(self) -> None:
        self.events: list[TransportEvent] = []
        self.chunks: dict[int, list[Chunk]] = {}

    def on_event(self, event: TransportEvent) -> None:
        self.events.append(event)

    def on_audio(self, uid: int, chunk: Chunk) -> None:
        self.chunks.setdefault(uid, []).append(chunk)


SCRIPT = {
    "channel": "standup",
    "participants": [{"uid": 101, "name": "Alice"}, {"uid": 202, "name": "Bob"}],
    "events": [
        {"at": 0.0, "uid": 101, "join": True},
        {"at": 0.2, "uid": 101, "say": "good morning everyone"},
        {"at": 0.5, "uid": 202, "join": True},
        {"at": 0.6, "uid": 202, "say": "morning, two things"},
        {"at": 2.5, "uid": 101, "mute": True},
        {"at": 3.5, "uid": 101, "unmute": True},
        {"at": 3.6, "uid": 101, "say": "back again"},
        {"at": 4.5, "uid": 202, "leave": True},
    ],
    "end": 5.5,
}


async def play(script_data: dict, speed: float = 8.0) -> tuple[ReplayTransport, Collect]:
    transport = ReplayTransport(parse_script(script_data), speed=speed)
    sink = Collect()
    await transport.start(sink)
    await asyncio.wait_for(transport.wait_finished(), 10)
    await transport.stop()
    # Nothing more to wait for: the thread scheduled every hand-off to the loop
    # before it scheduled the end, and the loop runs them in that order.
    return transport, sink


async def test_replay_delivers_decodable_speech_at_script_times() -> None:
    transport, sink = await play(SCRIPT)
    script = transport.script
    for uid in (101, 202):
        chunks = sink.chunks[uid]
        # Contiguous runs: decode each run and place it at its start time.
        words = []
        run: list[Chunk] = []
        for chunk in [*chunks, None]:
            if run and (chunk is None or abs(chunk.start_ms - run[-1].end_ms) > 1):
                pcm = b"".join(c.pcm for c in run)
                words += [(w.text, run[0].start_ms + w.start_ms) for w in decode(pcm, 16000)]
                run = []
            if chunk is not None:
                run.append(chunk)
        expected = [(w.text, w.start_ms) for w in script.expected_words() if w.uid == uid]
        assert [w for w, _ in words] == [w for w, _ in expected]
        for (_, got), (_, want) in zip(words, expected, strict=True):
            assert abs(got - want) <= 20
    # Muted between 2.5 and 3.5 s: no audio from Alice there.
    assert not [c for c in sink.chunks[101] if 2520 <= c.start_ms < 3500]
    # Bob left at 4.5 s: nothing after.
    assert max(c.end_ms for c in sink.chunks[202]) <= 4500
    kinds = [(type(e), getattr(e, "uid", None)) for e in sink.events]
    assert (ParticipantJoined, 101) in kinds and (ParticipantLeft, 202) in kinds
    assert (ParticipantMuted, 101) in kinds


async def test_handoff_is_once_per_chunk_not_per_frame() -> None:
    transport, _ = await play(SCRIPT)
    bridge = transport.bridge
    assert bridge is not None
    assert bridge.frames > 500
    assert bridge.wakeups < bridge.frames / 7  # ~100 ms chunks of 10 ms frames, plus events


async def test_real_time_pace() -> None:
    data = {"channel": "c", "events": [{"at": 0, "uid": 1, "join": True}], "end": 0.5}
    loop = asyncio.get_running_loop()
    start = loop.time()
    await play(data, speed=1.0)
    assert loop.time() - start >= 0.45


async def test_an_injected_clock_drives_the_playback_thread() -> None:
    # Every reading is a second later than the last: the thread never waits, so
    # two minutes of meeting play at once, whatever the speed says.
    readings = itertools.count(0.0, 1.0)
    data = {"channel": "c", "events": [{"at": 0, "uid": 1, "join": True}], "end": 120.0}
    transport = ReplayTransport(parse_script(data), speed=1.0, clock=lambda: next(readings))
    sink = Collect()
    await transport.start(sink)
    await asyncio.wait_for(transport.wait_finished(), 10)
    await transport.stop()
    assert transport.clock_ms() == 120_000
    # The loop may not keep up with a thread that never waits: what it could not
    # take was dropped and counted, never lost silently.
    delivered = sum(c.duration_ms for c in sink.chunks[1])
    assert delivered + transport.dropped_audio_ms.get(1, 0.0) == pytest.approx(120_000)


# -- publishing (the spoken recap) -----------------------------------------------------


def quiet_channel(*, lead_ms: float = 150.0) -> ReplayTransport:
    data = {"channel": "quiet", "events": [{"at": 0.0, "uid": 1, "join": True}], "end": 60.0}
    return ReplayTransport(parse_script(data), speed=10.0, publish_lead_ms=lead_ms)


WORDS = "the deploy is done and search ships today"


async def test_publish_paces_to_the_script_clock_and_wait_played_waits_for_the_last_frame() -> None:
    transport = quiet_channel()
    await transport.start(Collect())
    pcm = encode(WORDS, 16_000) + b"\x01"  # odd length: padded to whole frames
    audio_ms = (len(pcm) + 319) // 320 * 10
    started_ms = transport.clock_ms()
    await transport.publish(pcm)
    # Queued at most the lead ahead: the channel has played nearly all of it already.
    assert transport.publish_backlog_ms <= 150 + 10
    assert transport.clock_ms() - started_ms >= audio_ms - 150 - 10
    await asyncio.wait_for(transport.wait_played(0.0), 10)
    assert transport.publish_backlog_ms == 0
    assert transport.clock_ms() - started_ms >= audio_ms
    frames = [frame for _, frame in transport.published]
    assert len(frames) * 10 == audio_ms == transport.publish_played_ms
    assert all(len(frame) == 320 for frame in frames)
    played = b"".join(frames)
    assert played[: len(pcm)] == pcm and not played[len(pcm) :].strip(b"\0")
    # Back to back from the first frame, on the script clock.
    times = [at for at, _ in transport.published]
    assert times == [times[0] + 10 * i for i in range(len(times))]
    await transport.stop()


async def test_wait_played_returns_at_the_backlog_asked_for() -> None:
    transport = quiet_channel(lead_ms=2000.0)  # the whole piece goes out at once
    await transport.start(Collect())
    await transport.publish(encode(WORDS, 16_000)[: 320 * 150])  # 1.5 s
    assert transport.publish_backlog_ms > 1000
    await asyncio.wait_for(transport.wait_played(500.0), 10)
    assert 0 < transport.publish_backlog_ms <= 500
    assert transport.publish_played_ms == len(transport.published) * 10 >= 1000
    await transport.stop()


async def test_a_flush_cuts_publish_short_and_wakes_the_waiter() -> None:
    transport = quiet_channel()
    await transport.start(Collect())
    publishing = asyncio.create_task(transport.publish(encode(WORDS * 4, 16_000)))
    await asyncio.sleep(0)  # the publish queues its lead, then waits for the clock
    assert transport.publish_backlog_ms > 0
    waiting = asyncio.create_task(transport.wait_played(0.0))
    await asyncio.sleep(0)
    heard_before = transport.publish_played_ms
    transport.flush_publish()
    await asyncio.wait_for(asyncio.gather(publishing, waiting), 1)
    assert transport.publish_backlog_ms == 0
    # Nothing more plays: at most the frame on its way out as the flush came.
    assert len(transport.published) * 10 <= heard_before + 10
    assert transport.publish_played_ms == heard_before
    await transport.stop()


async def test_the_end_of_the_script_wakes_the_waiter_and_keeps_the_backlog() -> None:
    data = {"channel": "short", "events": [{"at": 0.0, "uid": 1, "join": True}], "end": 0.5}
    transport = ReplayTransport(parse_script(data), speed=10.0, publish_lead_ms=2000.0)
    await transport.start(Collect())
    await transport.publish(encode(WORDS, 16_000))  # longer than the meeting
    await asyncio.wait_for(transport.wait_played(0.0), 10)  # returns: nothing will play it
    await transport.wait_finished()
    assert transport.publish_backlog_ms > 0  # what the channel never played
    assert transport.publish_played_ms == len(transport.published) * 10 <= 500
    # After the end nothing paces: it queues at once, unheard.
    before = transport.publish_backlog_ms
    await asyncio.wait_for(transport.publish(encode("late", 16_000)), 1)
    assert transport.publish_backlog_ms > before
    await transport.stop()


async def test_audio_published_before_the_start_plays_from_the_start() -> None:
    transport = quiet_channel()
    pcm = encode(WORDS, 16_000)
    await asyncio.wait_for(transport.publish(pcm), 1)  # nothing plays yet: no pacing
    assert transport.publish_backlog_ms == (len(pcm) + 319) // 320 * 10
    await transport.start(Collect())
    await asyncio.wait_for(transport.wait_played(0.0), 10)
    assert transport.published[0][0] == 0.0
    assert [w.text for w in decode(b"".join(f for _, f in transport.published), 16_000)] == (
        WORDS.split()
    )
    await transport.stop()


def test_wav_clips_are_resampled(tmp_path: Path) -> None:
    pcm = encode("hello there", 24000)
    with wave.open(str(tmp_path / "clip.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        w.writeframes(pcm)
    script_file = tmp_path / "m.json"
    script_file.write_text(
        json.dumps(
            {
                "channel": "c",
                "events": [
                    {"at": 0, "uid": 5, "join": True},
                    {"at": 1, "uid": 5, "wav": "clip.wav"},
                ],
            }
        )
    )
    script = load_script(script_file)
    (clip,) = script.clips
    assert [w.text for w in decode(clip.pcm, 16000)] == ["hello", "there"]
    assert clip.start_ms == 1000


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "expected a JSON object"),
        ({"events": []}, "channel"),
        ({"channel": "c", "events": []}, "events: expected a non-empty list"),
        ({"channel": "c", "events": [{"at": -1, "uid": 1, "join": True}]}, "events[0].at"),
        ({"channel": "c", "events": [{"at": 0, "uid": "x", "join": True}]}, "events[0].uid"),
        ({"channel": "c", "events": [{"at": 0, "uid": 1}]}, "exactly one of"),
        ({"channel": "c", "events": [{"at": 0, "uid": 1, "say": ""}]}, "non-empty text"),
        ({"channel": "c", "events": [{"at": 0, "uid": 1, "wav": "missing.wav"}]}, "does not exist"),
        ({"channel": "c", "events": [{"at": 0, "uid": 1, "mute": "yes"}]}, "expected true"),
    ],
)
def test_malformed_scripts_name_the_problem(tmp_path: Path, data: object, message: str) -> None:
    with pytest.raises(ReplayError) as info:
        parse_script(data, base_dir=tmp_path, source="m.json")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="does not exist"):
        load_script(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ReplayError, match="not valid JSON"):
        load_script(bad)


def test_bundled_demo_is_valid() -> None:
    from importlib.resources import as_file, files

    with as_file(files("recorder.data").joinpath("demo_meeting.json")) as path:
        script = load_script(path)
    speakers = {w.uid for w in script.expected_words()}
    assert len(speakers) >= 3
    assert 40_000 <= script.end_ms <= 90_000
    actions = {a.action for a in script.actions}
    assert {"mute", "unmute", "leave", "join"} <= actions
