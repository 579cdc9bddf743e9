from __future__ import annotations

import asyncio
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
    await asyncio.sleep(0.05)  # let the last call_soon_threadsafe callbacks run
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
