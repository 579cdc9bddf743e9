"""Scripted meetings: the JSON file format the replay transport plays, parsed and checked.

The format (documented in README.md, written by other tools too)::

    {"channel": "standup",
     "participants": [{"uid": 101, "name": "Alice"}],
     "events": [{"at": 0.0, "uid": 101, "join": true},
                {"at": 1.0, "uid": 101, "say": "good morning everyone"},
                {"at": 9.0, "uid": 101, "mute": true},
                {"at": 30.0, "uid": 101, "unmute": true},
                {"at": 40.0, "uid": 101, "leave": true},
                {"at": 43.0, "uid": 101, "wav": "clip.wav"}],
     "end": 50.0}

``say`` is synthesised with the speech codec; ``wav`` plays a file (relative
paths are relative to the script; any rate, mono or stereo PCM16). Speech of one
participant that overlaps their own earlier speech starts when that ends.
"""

from __future__ import annotations

import json
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recorder.audio import SAMPLE_RATE_HZ, ms_for_bytes, resample
from recorder.config import MAX_UID
from recorder.errors import ReplayError

__all__ = [
    "ExpectedWord",
    "MeetingScript",
    "ScriptAction",
    "SpeechClip",
    "load_script",
    "parse_script",
]

_ACTIONS = ("join", "leave", "mute", "unmute", "say", "wav")


@dataclass(frozen=True, slots=True)
class ScriptAction:
    """A join, leave, mute or unmute at a moment of the script."""

    at_ms: float
    uid: int
    action: str


@dataclass(frozen=True, slots=True)
class ExpectedWord:
    """A word the script says, where it sits on the meeting clock (ground truth)."""

    uid: int
    text: str
    start_ms: float
    end_ms: float


@dataclass(frozen=True, slots=True)
class SpeechClip:
    """Audio one participant plays from ``start_ms``; ``words`` is known for ``say``."""

    uid: int
    start_ms: float
    pcm: bytes
    words: tuple[ExpectedWord, ...] = ()

    @property
    def end_ms(self) -> float:
        """When the clip's last sample has played."""
        return self.start_ms + ms_for_bytes(len(self.pcm))


@dataclass(frozen=True, slots=True)
class MeetingScript:
    """A parsed, validated meeting script with its audio rendered."""

    channel: str
    names: dict[int, str]
    actions: tuple[ScriptAction, ...]
    clips: tuple[SpeechClip, ...]
    end_ms: float
    source: str = field(default="<script>")

    def expected_words(self) -> list[ExpectedWord]:
        """Every codec word the script says, audible (joined, unmuted) when said, in time order."""
        words = [word for clip in self.clips for word in clip.words if self._audible(word)]
        return sorted(words, key=lambda w: (w.start_ms, w.uid))

    def _audible(self, word: ExpectedWord) -> bool:
        joined = muted = False
        for action in self.actions:
            if action.uid != word.uid or action.at_ms > word.start_ms:
                continue
            joined = {"join": True, "leave": False}.get(action.action, joined)
            muted = {"mute": True, "unmute": False, "join": False}.get(action.action, muted)
        ends_inside = all(
            not (
                a.uid == word.uid
                and a.action in ("leave", "mute")
                and word.start_ms < a.at_ms < word.end_ms
            )
            for a in self.actions
        )
        return joined and not muted and ends_inside and word.end_ms <= self.end_ms


def _fail(source: str, where: str, problem: str) -> ReplayError:
    return ReplayError(
        f"bad replay file {source}: {where}: {problem}; see README.md 'Replay files'"
    )


def _number(value: Any, source: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _fail(source, where, f"expected a number of seconds >= 0, got {value!r}")
    return float(value)


def _read_wav(path: Path, source: str, where: str) -> bytes:
    try:
        with wave.open(str(path), "rb") as reader:
            width, channels, rate = (
                reader.getsampwidth(),
                reader.getnchannels(),
                reader.getframerate(),
            )
            frames = reader.readframes(reader.getnframes())
    except FileNotFoundError:
        raise _fail(source, where, f"wav file {str(path)!r} does not exist") from None
    except (OSError, EOFError, wave.Error) as exc:
        raise _fail(source, where, f"cannot read wav file {str(path)!r} ({exc})") from exc
    if width != 2:
        raise _fail(
            source,
            where,
            f"wav file {str(path)!r} is {8 * width}-bit; only 16-bit PCM is supported",
        )
    if channels > 1:
        import numpy as np

        samples = np.frombuffer(frames, "<i2").reshape(-1, channels).mean(axis=1)
        frames = samples.astype("<i2").tobytes()
    return resample(frames, rate, SAMPLE_RATE_HZ)


def parse_script(
    data: Any, *, base_dir: Path | None = None, source: str = "<script>"
) -> MeetingScript:
    """Validate a decoded JSON script and render its audio.

    Raises:
        ReplayError: the script is malformed; the message names the event and field.
    """
    from recorder.tonecode import encode_words

    if not isinstance(data, dict):
        raise _fail(source, "top level", "expected a JSON object")
    channel = data.get("channel")
    if not isinstance(channel, str) or not channel:
        raise _fail(source, "channel", "expected a non-empty string")
    names: dict[int, str] = {}
    for index, entry in enumerate(data.get("participants", [])):
        where = f"participants[{index}]"
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("uid"), int)
            or isinstance(entry.get("uid"), bool)
        ):
            raise _fail(source, where, 'expected {"uid": <integer>, "name": <string>}')
        if "name" in entry:
            if not isinstance(entry["name"], str):
                raise _fail(source, where, "name must be a string")
            names[entry["uid"]] = entry["name"]
    events = data.get("events")
    if not isinstance(events, list) or not events:
        raise _fail(source, "events", "expected a non-empty list")
    actions: list[ScriptAction] = []
    clips: list[SpeechClip] = []
    speech_free_at: dict[int, float] = {}
    last_ms = 0.0
    for index, event in enumerate(
        sorted(events, key=lambda e: e.get("at", 0) if isinstance(e, dict) else 0)
    ):
        where = f"events[{index}]"
        if not isinstance(event, dict):
            raise _fail(source, where, "expected a JSON object")
        at_ms = _number(event.get("at"), source, f"{where}.at") * 1000.0
        uid = event.get("uid")
        if not isinstance(uid, int) or isinstance(uid, bool) or not 0 < uid <= MAX_UID:
            raise _fail(
                source, f"{where}.uid", f"expected a uid between 1 and {MAX_UID}, got {uid!r}"
            )
        kinds = [name for name in _ACTIONS if name in event]
        if len(kinds) != 1:
            raise _fail(source, where, f"expected exactly one of {', '.join(_ACTIONS)}")
        kind = kinds[0]
        last_ms = max(last_ms, at_ms)
        if kind in ("say", "wav"):
            start = max(at_ms, speech_free_at.get(uid, 0.0))
            if kind == "say":
                text = event["say"]
                if not isinstance(text, str) or not text.strip():
                    raise _fail(source, f"{where}.say", "expected non-empty text")
                pcm, decoded = encode_words(text, SAMPLE_RATE_HZ, start_ms=0)
                words = tuple(
                    ExpectedWord(uid, w.text or "", start + w.start_ms, start + w.end_ms)
                    for w in decoded
                )
            else:
                name = event["wav"]
                if not isinstance(name, str) or not name:
                    raise _fail(source, f"{where}.wav", "expected a file name")
                path = Path(name) if Path(name).is_absolute() else (base_dir or Path.cwd()) / name
                pcm, words = _read_wav(path, source, f"{where}.wav"), ()
            clip = SpeechClip(uid, start, pcm, words)
            speech_free_at[uid] = clip.end_ms
            clips.append(clip)
            last_ms = max(last_ms, clip.end_ms)
        else:
            if event[kind] is not True:
                raise _fail(source, f"{where}.{kind}", "expected true")
            actions.append(ScriptAction(at_ms, uid, kind))
    end = data.get("end")
    end_ms = _number(end, source, "end") * 1000.0 if end is not None else last_ms + 2000.0
    if end_ms <= 0:
        raise _fail(source, "end", "the meeting must last longer than 0 s")
    return MeetingScript(channel, names, tuple(actions), tuple(clips), end_ms, source)


def load_script(path: Path) -> MeetingScript:
    """Read and validate a replay file.

    Raises:
        ReplayError: the file is missing, not JSON, or malformed.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReplayError(f"replay file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplayError(
            f"cannot read replay file {str(path)!r}: {exc.__class__.__name__}"
        ) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReplayError(
            f"replay file {str(path)!r} is not valid JSON "
            f"(line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    return parse_script(data, base_dir=path.parent, source=repr(str(path)))
