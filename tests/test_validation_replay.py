# ruff: noqa: E501 - the table of cases reads best one case a line
"""Replay files read like input from a stranger: every malformed file is one clear line.

Each case is a real file on disk, read by :func:`load_script` and by
``recorder join --transport replay:FILE``: one line naming the file's own
event index and the offending key, exit code 1, no traceback.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from recorder.cli import cli
from recorder.errors import ReplayError
from recorder.transport.script import MAX_SAY_CHARS, load_script
from tests.support.timing import TIMEOUT


def _ok(*events: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A valid script with uid 1 joined at 0 and these events after it."""
    return {"channel": "c", "events": [{"at": 0, "uid": 1, "join": True}, *events], **top}


def _wav(path: Path, *, width: int = 2, rate: int = 16000, frames: bytes | None = None) -> None:
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(bytes(width * rate // 10) if frames is None else frames)


def _float_wav(path: Path) -> None:
    """A 32-bit float WAV (format tag 3), which the standard wave module cannot read."""
    data = struct.pack("<4f", 0.0, 0.1, -0.1, 0.0)
    fmt = struct.pack("<HHIIHH", 3, 1, 16000, 64000, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def _say(text: str) -> dict[str, Any]:
    return _ok({"at": 1, "uid": 1, "say": text})


def _wav_event(name: str) -> dict[str, Any]:
    return _ok({"at": 1, "uid": 1, "wav": name})


# (id, file content: JSON-able object, raw text or raw bytes, extra setup, expected fragment)
Setup = Callable[[Path], object] | None
CASES: list[tuple[str, object, Setup, str]] = [
    ("at-string", _ok({"at": "1s", "uid": 1, "say": "hi"}), None, "events[1].at: expected a number of seconds, got '1s'"),
    ("at-null", _ok({"at": None, "uid": 1, "say": "hi"}), None, "events[1].at: expected a number of seconds, got null"),
    ("at-bool", _ok({"at": True, "uid": 1, "say": "hi"}), None, "events[1].at: expected a number of seconds, got True"),
    ("at-negative", _ok({"at": -1, "uid": 1, "say": "hi"}), None, "events[1].at: expected seconds between 0 and 86400"),
    ("at-1e308", _ok({"at": 1e308, "uid": 1, "say": "hi"}), None, "events[1].at: expected seconds between 0 and 86400 (24 h), got 1e+308"),
    ("at-1e12", _ok({"at": 1e12, "uid": 1, "mute": True}), None, "events[1].at: expected seconds between 0 and 86400"),
    ("at-1e400", '{"channel": "c", "events": [{"at": 1e400, "uid": 1, "join": true}]}', None, "events[0].at: expected seconds between 0 and 86400 (24 h), got inf"),
    ("at-infinity", '{"channel": "c", "events": [{"at": Infinity, "uid": 1, "join": true}]}', None, "Infinity is not a JSON number"),
    ("at-nan", '{"channel": "c", "events": [{"at": NaN, "uid": 1, "join": true}]}', None, "NaN is not a JSON number"),
    ("at-missing", _ok({"uid": 1, "say": "hi"}), None, "events[1]: missing 'at'"),
    ("at-huge-int", '{"channel": "c", "events": [{"at": 1' + "0" * 5000 + ', "uid": 1, "join": true}]}', None, "holds a number too long to read"),
    ("mixed-at-types", _ok({"at": 2, "uid": 1, "say": "hi"}, {"at": "1", "uid": 1, "mute": True}), None, "events[2].at: expected a number of seconds, got '1'"),
    ("index-is-the-files-own", {"channel": "c", "events": [{"at": 5, "uid": 1, "join": True}, {"at": 1, "uid": 1, "mute": "yes"}]}, None, "events[1].mute: expected true, got 'yes'"),
    ("end-1e308", _ok(end=1e308), None, "end: expected seconds between 0 and 86400"),
    ("end-string", _ok(end="50"), None, "end: expected a number of seconds, got '50'"),
    ("end-zero", _ok(end=0), None, "end: the meeting must last longer than 0 s"),
    ("participants-null", _ok(participants=None), None, "participants: expected a list, got null"),
    ("participants-object", _ok(participants={"1": "Ann"}), None, "participants: expected a list, got an object"),
    ("participant-uid-string", _ok(participants=[{"uid": "a", "name": "Ann"}]), None, "participants[0].uid: expected a uid between 1 and 4294967295, got 'a'"),
    ("participant-misspelt-key", _ok(participants=[{"uid": 1, "nmae": "Ann"}]), None, "participants[0]: unknown key 'nmae' (did you mean 'name'?)"),
    ("participant-twice", _ok(participants=[{"uid": 1}, {"uid": 1}]), None, "participants[1].uid: uid 1 is listed twice"),
    ("participant-name-number", _ok(participants=[{"uid": 1, "name": 5}]), None, "participants[0].name: expected non-empty name, got 5"),
    ("participant-name-surrogate", '{"channel": "c", "participants": [{"uid": 1, "name": "A\\udc80"}], "events": [{"at": 0, "uid": 1, "join": true}]}', None, "participants[0].name: the name holds an invalid character '\\udc80' (a lone surrogate)"),
    ("say-lone-surrogate", '{"channel": "c", "events": [{"at": 0, "uid": 1, "join": true}, {"at": 1, "uid": 1, "say": "hi \\ud800"}]}', None, "events[1].say: the text holds an invalid character '\\ud800' (a lone surrogate)"),
    ("say-misspelt", _ok({"at": 1, "uid": 1, "sai": "hello"}), None, "events[1]: unknown key 'sai' (did you mean 'say'?)"),
    ("say-empty", _say("   "), None, "events[1].say: expected non-empty text"),
    ("say-number", _say(12), None, "events[1].say: expected non-empty text, got 12"),  # type: ignore[arg-type]
    ("say-too-long", _say("a " * MAX_SAY_CHARS), None, f"events[1].say: the text is {2 * MAX_SAY_CHARS} characters long; at most {MAX_SAY_CHARS}"),
    ("say-before-joining", {"channel": "c", "events": [{"at": 1, "uid": 1, "say": "hi"}, {"at": 5, "uid": 1, "join": True}]}, None, "events[0].at: uid 1 speaks at 1 s but first joins at 5 s; nobody would hear it"),
    ("say-never-joined", _ok({"at": 1, "uid": 7, "say": "hello"}), None, "events[1].uid: uid 7 speaks but never joins"),
    ("top-misspelt", {"channel": "c", "participnts": [], "events": [{"at": 0, "uid": 1, "join": True}]}, None, "top level: unknown key 'participnts' (did you mean 'participants'?)"),
    ("top-unknown", _ok(colour="red"), None, "top level: unknown key 'colour' (expected 'channel', 'participants', 'events', 'end')"),
    ("top-array", [1, 2], None, "top level: expected a JSON object, got a list"),
    ("channel-missing", {"events": [{"at": 0, "uid": 1, "join": True}]}, None, "top level: missing 'channel'"),
    ("channel-number", {"channel": 5, "events": [{"at": 0, "uid": 1, "join": True}]}, None, "channel: expected non-empty channel name, got 5"),
    ("events-missing", {"channel": "c"}, None, "events: expected a non-empty list, got null"),
    ("events-empty", {"channel": "c", "events": []}, None, "events: expected a non-empty list, got a list"),
    ("event-not-object", _ok(5), None, "events[1]: expected an object, got 5"),  # type: ignore[arg-type]
    ("two-actions", _ok({"at": 1, "uid": 1, "mute": True, "say": "x"}), None, "events[1]: expected exactly one of join, leave, mute, unmute, say, wav (got mute, say)"),
    ("no-action", _ok({"at": 1, "uid": 1}), None, "(got none)"),
    ("uid-missing", _ok({"at": 1, "mute": True}), None, "events[1]: missing 'uid'"),
    ("uid-zero", _ok({"at": 1, "uid": 0, "mute": True}), None, "events[1].uid: expected a uid between 1 and 4294967295, got 0"),
    ("uid-too-big", _ok({"at": 1, "uid": 2**32, "mute": True}), None, "events[1].uid: expected a uid between 1 and 4294967295, got 4294967296"),
    ("uid-float", _ok({"at": 1, "uid": 1.5, "mute": True}), None, "events[1].uid: expected a uid between 1 and 4294967295, got 1.5"),
    ("deeply-nested", "[" * 100_000 + "]" * 100_000, None, "is nested too deeply"),
    ("not-json", "{oops", None, "is not valid JSON (line 1, column 2"),
    ("not-utf8", b'{"channel": "\xff"}', None, "is not UTF-8 text (byte 13)"),
    ("wav-missing", _wav_event("nope.wav"), None, "events[1].wav: wav file 'nope.wav' does not exist"),
    ("wav-not-riff", _wav_event("text.wav"), lambda d: (d / "text.wav").write_text("this is a text file, not audio at all"), "events[1].wav: wav file 'text.wav' is not a PCM WAV file (file does not start with RIFF id)"),
    ("wav-8-bit", _wav_event("8bit.wav"), lambda d: _wav(d / "8bit.wav", width=1), "events[1].wav: wav file '8bit.wav' is 8-bit; only 16-bit PCM is supported"),
    ("wav-float", _wav_event("float.wav"), lambda d: _float_wav(d / "float.wav"), "events[1].wav: wav file 'float.wav' is not a PCM WAV file (unknown format: 3)"),
    ("wav-empty-file", _wav_event("empty.wav"), lambda d: (d / "empty.wav").write_bytes(b""), "events[1].wav: wav file 'empty.wav' is empty or cut short"),
    ("wav-no-audio", _wav_event("silent.wav"), lambda d: _wav(d / "silent.wav", frames=b""), "events[1].wav: wav file 'silent.wav' holds no audio"),
    ("wav-odd-rate", _wav_event("slow.wav"), lambda d: _wav(d / "slow.wav", rate=100), "events[1].wav: wav file 'slow.wav' has a sample rate of 100 Hz"),
    ("wav-directory", _wav_event("adir"), lambda d: (d / "adir").mkdir(), "events[1].wav: wav file 'adir' is a directory"),
    ("wav-nul-in-name", _wav_event("a\x00b.wav"), None, "events[1].wav: 'a\\x00b.wav' is not a valid file name"),
    ("top-key-twice", '{"channel": "c", "channel": "d", "events": [{"at": 0, "uid": 1, "join": true}]}', None, "top level: the key 'channel' is given twice"),
    ("event-key-twice", '{"channel": "c", "events": [{"at": 0, "uid": 1, "join": true}, {"at": 1, "at": 2, "uid": 1, "mute": true}]}', None, "events[1]: the key 'at' is given twice"),
    ("participant-key-twice", '{"channel": "c", "participants": [{"uid": 1, "name": "A", "name": "B"}], "events": [{"at": 0, "uid": 1, "join": true}]}', None, "participants[0]: the key 'name' is given twice"),
    ("channel-line-break", {"channel": "a\nb", "events": [{"at": 0, "uid": 1, "join": True}]}, None, "channel: the channel name holds a control character '\\n'"),
    ("participant-name-escape", _ok(participants=[{"uid": 1, "name": "A\x1b[2J"}]), None, "participants[0].name: the name holds a control character '\\x1b'"),
]  # fmt: skip


def _write(tmp_path: Path, content: object, setup: Setup) -> Path:
    if setup is not None:
        setup(tmp_path)
    path = tmp_path / "bad.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_text(json.dumps(content), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("content", "setup", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed_replay_file_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: object, setup: Setup, message: str
) -> None:
    path = _write(tmp_path, content, setup)
    with pytest.raises(ReplayError) as info:
        load_script(path)
    text = str(info.value)
    assert message in text
    assert "\n" not in text and text.isprintable()

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli,
        ["join", "--transport", "replay:bad.json"],
        env={"ASSEMBLYAI_API_KEY": "k", "XDG_DATA_HOME": str(tmp_path)},
    )
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: "), result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert isinstance(result.exception, SystemExit), result.exception  # not a crash


def test_enough_malformed_files_are_covered() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing.json", "replay file 'missing.json' does not exist"),
        ("réunion.json", "replay file 'réunion.json' does not exist"),
        ("bad\nname.json", "replay file 'bad\\nname.json' does not exist"),
        (".", "is a directory"),
    ],
)
def test_unreadable_replay_path(name: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ReplayError) as info:
        load_script(Path(name) if name != "." else tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_fifo_is_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    # Opened for reading, a FIFO with no writer would block: hold a writer open.
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    try:
        with pytest.raises(ReplayError, match="is not a regular file"):
            load_script(fifo)
    finally:
        os.close(writer)


def test_a_fifo_with_no_writer_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def load() -> None:
        try:
            load_script(fifo)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    # Opening a FIFO for reading waits for a writer: run it aside so a hang fails the test.
    reader = threading.Thread(target=load, daemon=True)
    reader.start()
    reader.join(TIMEOUT)
    if reader.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # let the thread go
        pytest.fail("load_script waited for a writer on a FIFO")
    assert len(outcome) == 1 and isinstance(outcome[0], ReplayError), outcome
    assert "is not a regular file" in str(outcome[0])


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    # What Notepad and other Windows editors write at the start of a UTF-8 file.
    path = tmp_path / "bom.json"
    script = {"channel": "c", "events": [{"at": 0, "uid": 1, "join": True}]}
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(script).encode())
    assert load_script(path).channel == "c"


def test_valid_files_still_load(tmp_path: Path) -> None:
    _wav(tmp_path / "clip.wav", frames=bytes(3200))
    script = {
        "channel": "c",
        "participants": [{"uid": 1, "name": "Ann"}, {"uid": 2}],
        "events": [
            {"at": 3, "uid": 2, "join": True},
            {"at": 0, "uid": 1, "join": True},
            {"at": 1, "uid": 1, "say": "hello there"},
            {"at": 4, "uid": 2, "wav": "clip.wav"},
        ],
        "end": 86400,
    }
    loaded = load_script(_write(tmp_path, script, None))
    assert loaded.names == {1: "Ann"}
    assert [a.uid for a in loaded.actions] == [1, 2]  # sorted by time
    assert loaded.end_ms == 86_400_000


@pytest.mark.parametrize("content", ['{"channel": "c", "events": [{"at": "1s"}]}', "[" * 50_000])
def test_a_real_process_prints_one_line_and_no_traceback(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECORDER_", "ASSEMBLYAI"))}
    done = subprocess.run(
        [sys.executable, "-m", "recorder", "join", f"--transport=replay:{path}"],
        env={**env, "ASSEMBLYAI_API_KEY": "k", "XDG_DATA_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and len(done.stderr.splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("speed", [0.0, -1.0, float("nan"), float("inf")])
def test_the_replay_transport_refuses_a_speed_it_cannot_play(speed: float) -> None:
    from recorder.transport.replay import ReplayTransport
    from recorder.transport.script import parse_script

    script = parse_script({"channel": "c", "events": [{"at": 0, "uid": 1, "join": True}]})
    with pytest.raises(ValueError, match="speed must be a positive, finite number"):
        ReplayTransport(script, speed=speed)


def test_the_speech_a_file_may_render_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from recorder.transport import script as script_module

    monkeypatch.setattr(script_module, "MAX_SPEECH_S", 2)  # instead of rendering 6 h
    says = [{"at": 0, "uid": uid, "join": True} for uid in (1, 2)] + [
        {"at": 1, "uid": uid, "say": "one two three four five six"} for uid in (1, 2)
    ]
    with pytest.raises(ReplayError, match=r"events\[3\]: the file holds more than "):
        script_module.parse_script({"channel": "c", "events": says}, source="m.json")
