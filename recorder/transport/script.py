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

import difflib
import json
import math
import os
import stat
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recorder.audio import SAMPLE_RATE_HZ, ms_for_bytes, resample
from recorder.config import MAX_UID
from recorder.errors import ReplayError

__all__ = [
    "MAX_EVENTS",
    "MAX_FILE_BYTES",
    "MAX_MEETING_S",
    "MAX_SAY_CHARS",
    "MAX_SPEECH_S",
    "ExpectedWord",
    "MeetingScript",
    "ScriptAction",
    "SpeechClip",
    "load_script",
    "parse_script",
]

_ACTIONS = ("join", "leave", "mute", "unmute", "say", "wav")
_TOP_KEYS = ("channel", "participants", "events", "end")
_PARTICIPANT_KEYS = ("uid", "name")
_EVENT_KEYS = ("at", "uid", *_ACTIONS)

#: No event, speech or end later than a day into the meeting (a larger number is a typo).
MAX_MEETING_S = 24 * 3600
#: The longest ``say`` text (about fourteen minutes of synthetic speech).
MAX_SAY_CHARS = 10_000
#: The most speech (``say`` and ``wav``, all participants) one file may render: 6 h,
#: about 700 MB of audio held in memory while it plays.
MAX_SPEECH_S = 6 * 3600
#: The most events one file may hold.
MAX_EVENTS = 100_000
#: The largest replay file read.
MAX_FILE_BYTES = 64 * 2**20
_MAX_CHANNEL_CHARS = 256
_MAX_NAME_CHARS = 256
_MAX_PATH_CHARS = 4096
_SHOWN_CHARS = 60
_MIN_WAV_RATE_HZ = 8000
_MAX_WAV_RATE_HZ = 192_000
_MAX_WAV_CHANNELS = 2


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


def _quote(text: str) -> str:
    """``text`` quoted as Python would, escaped to ASCII if it is not printable UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return ascii(text)
    return repr(text) if text.isprintable() else ascii(text)


def _show(value: Any) -> str:
    """A short, one-line, printable rendering of a value from the file."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    text = _quote(value) if isinstance(value, str) else repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _check_keys(entry: dict[str, Any], allowed: tuple[str, ...], source: str, where: str) -> None:
    repeated = getattr(entry, "repeated", None)
    if repeated is not None:
        # JSON would silently keep the last value: say so rather than guess.
        raise _fail(source, where, f"the key {_show(repeated)} is given twice")
    for key in entry:
        if key in allowed:
            continue
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else f"expected {', '.join(repr(k) for k in allowed)}"
        )
        raise _fail(source, where, f"unknown key {_show(key)} ({hint})")


def _seconds(value: Any, source: str, where: str) -> float:
    """Seconds from the start of the meeting: a finite number, 0 up to a day."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(source, where, f"expected a number of seconds, got {_show(value)}")
    if not (isinstance(value, int) or math.isfinite(value)) or not 0 <= value <= MAX_MEETING_S:
        raise _fail(
            source,
            where,
            f"expected seconds between 0 and {MAX_MEETING_S} (24 h), got {_show(value)}",
        )
    return float(value)


def _text(
    value: Any, source: str, where: str, *, limit: int, what: str, one_line: bool = False
) -> str:
    """A non-empty string of at most ``limit`` characters that UTF-8 can encode.

    ``one_line``: a label printed on the console and in exports (a channel, a
    name), which must hold no line break or other control character.
    """
    if not isinstance(value, str) or not value.strip():
        raise _fail(source, where, f"expected non-empty {what}, got {_show(value)}")
    if len(value) > limit:
        raise _fail(source, where, f"the {what} is {len(value)} characters long; at most {limit}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start : exc.end]
        raise _fail(
            source, where, f"the {what} holds an invalid character {ascii(bad)} (a lone surrogate)"
        ) from None
    if one_line:
        for char in value:
            if not char.isprintable() and char != " ":
                raise _fail(source, where, f"the {what} holds a control character {ascii(char)}")
    return value


def _uid(value: Any, source: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_UID:
        raise _fail(source, where, f"expected a uid between 1 and {MAX_UID}, got {_show(value)}")
    return value


def _read_wav(path: Path, name: str, source: str, where: str) -> bytes:
    """Read a wav clip as 16 kHz mono PCM16; errors show ``name`` as the file spells it."""
    shown = _quote(name)
    try:
        with wave.open(str(path), "rb") as reader:
            width, channels, rate = (
                reader.getsampwidth(),
                reader.getnchannels(),
                reader.getframerate(),
            )
            count = reader.getnframes()
            if width != 2:
                raise _fail(
                    source,
                    where,
                    f"wav file {shown} is {8 * width}-bit; only 16-bit PCM is supported",
                )
            if not _MIN_WAV_RATE_HZ <= rate <= _MAX_WAV_RATE_HZ:
                raise _fail(
                    source,
                    where,
                    f"wav file {shown} has a sample rate of {rate} Hz; "
                    f"use {_MIN_WAV_RATE_HZ}-{_MAX_WAV_RATE_HZ} Hz",
                )
            if not 1 <= channels <= _MAX_WAV_CHANNELS:
                raise _fail(
                    source,
                    where,
                    f"wav file {shown} has {channels} channels; use mono or stereo",
                )
            if count / rate > MAX_MEETING_S:
                raise _fail(source, where, f"wav file {shown} is longer than 24 h")
            frames = reader.readframes(count)
    except FileNotFoundError:
        raise _fail(source, where, f"wav file {shown} does not exist") from None
    except IsADirectoryError:
        raise _fail(source, where, f"wav file {shown} is a directory") from None
    except PermissionError:
        raise _fail(source, where, f"wav file {shown} cannot be read (permission denied)") from None
    except wave.Error as exc:
        raise _fail(source, where, f"wav file {shown} is not a PCM WAV file ({exc})") from None
    except EOFError:
        raise _fail(source, where, f"wav file {shown} is empty or cut short") from None
    except ValueError:  # a NUL in the name
        raise _fail(source, where, f"{shown} is not a valid file name") from None
    except OSError as exc:
        raise _fail(
            source, where, f"cannot read wav file {shown} ({exc.strerror or exc})"
        ) from None
    frames = frames[: len(frames) - len(frames) % (width * channels)]
    if not frames:
        raise _fail(source, where, f"wav file {shown} holds no audio")
    if channels > 1:
        import numpy as np

        samples = np.frombuffer(frames, "<i2").reshape(-1, channels).mean(axis=1)
        frames = samples.astype("<i2").tobytes()
    return resample(frames, rate, SAMPLE_RATE_HZ)


@dataclass(frozen=True, slots=True)
class _Event:
    """One event, checked, with its index in the file (``value``: a wav's audio, read)."""

    index: int
    at_ms: float
    uid: int
    kind: str
    value: Any


def _check_event(event: Any, index: int, source: str, base_dir: Path | None) -> _Event:
    where = f"events[{index}]"
    if not isinstance(event, dict):
        raise _fail(source, where, f"expected an object, got {_show(event)}")
    _check_keys(event, _EVENT_KEYS, source, where)
    if "at" not in event:
        raise _fail(source, where, "missing 'at' (seconds from the start)")
    at_ms = _seconds(event["at"], source, f"{where}.at") * 1000.0
    if "uid" not in event:
        raise _fail(source, where, "missing 'uid'")
    uid = _uid(event["uid"], source, f"{where}.uid")
    kinds = [name for name in _ACTIONS if name in event]
    if len(kinds) != 1:
        found = f"got {', '.join(kinds)}" if kinds else "got none"
        raise _fail(source, where, f"expected exactly one of {', '.join(_ACTIONS)} ({found})")
    kind = kinds[0]
    value = event[kind]
    if kind == "say":
        value = _text(value, source, f"{where}.say", limit=MAX_SAY_CHARS, what="text")
    elif kind == "wav":
        name = _text(value, source, f"{where}.wav", limit=_MAX_PATH_CHARS, what="file name")
        path = Path(name) if Path(name).is_absolute() else (base_dir or Path.cwd()) / name
        value = _read_wav(path, name, source, f"{where}.wav")
    elif value is not True:
        raise _fail(source, f"{where}.{kind}", f"expected true, got {_show(value)}")
    return _Event(index, at_ms, uid, kind, value)


def _check_participants(raw: Any, source: str) -> dict[int, str]:
    if not isinstance(raw, list):
        raise _fail(source, "participants", f"expected a list, got {_show(raw)}")
    names: dict[int, str] = {}
    seen: set[int] = set()
    for index, entry in enumerate(raw):
        where = f"participants[{index}]"
        if not isinstance(entry, dict):
            raise _fail(
                source,
                where,
                f'expected {{"uid": <integer>, "name": <string>}}, got {_show(entry)}',
            )
        _check_keys(entry, _PARTICIPANT_KEYS, source, where)
        if "uid" not in entry:
            raise _fail(source, where, "missing 'uid'")
        uid = _uid(entry["uid"], source, f"{where}.uid")
        if uid in seen:
            raise _fail(source, f"{where}.uid", f"uid {uid} is listed twice")
        seen.add(uid)
        if "name" in entry:
            names[uid] = _text(
                entry["name"],
                source,
                f"{where}.name",
                limit=_MAX_NAME_CHARS,
                what="name",
                one_line=True,
            )
    return names


def parse_script(
    data: Any, *, base_dir: Path | None = None, source: str = "<script>"
) -> MeetingScript:
    """Validate a decoded JSON script and render its audio.

    Every field is checked with its type before anything is rendered; errors
    name the event by its index in the file and the offending key.

    Raises:
        ReplayError: the script is malformed; the message names the event and field.
    """
    from recorder.tonecode import encode_words

    if not isinstance(data, dict):
        raise _fail(source, "top level", f"expected a JSON object, got {_show(data)}")
    _check_keys(data, _TOP_KEYS, source, "top level")
    if "channel" not in data:
        raise _fail(source, "top level", "missing 'channel'")
    channel = _text(
        data["channel"],
        source,
        "channel",
        limit=_MAX_CHANNEL_CHARS,
        what="channel name",
        one_line=True,
    )
    names = _check_participants(data.get("participants", []), source)
    raw_events = data.get("events")
    if not isinstance(raw_events, list) or not raw_events:
        raise _fail(source, "events", f"expected a non-empty list, got {_show(raw_events)}")
    if len(raw_events) > MAX_EVENTS:
        raise _fail(source, "events", f"{len(raw_events)} events; at most {MAX_EVENTS}")
    checked = [
        _check_event(event, index, source, base_dir) for index, event in enumerate(raw_events)
    ]
    end = data.get("end")
    end_ms = None if end is None else _seconds(end, source, "end") * 1000.0
    if end_ms is not None and end_ms <= 0:
        raise _fail(source, "end", "the meeting must last longer than 0 s")
    first_join: dict[int, float] = {}
    for event in checked:
        if event.kind == "join":
            first_join[event.uid] = min(first_join.get(event.uid, math.inf), event.at_ms)
    for event in checked:
        if event.kind not in ("say", "wav"):
            continue
        joins_ms = first_join.get(event.uid)
        if joins_ms is None:
            raise _fail(
                source,
                f"events[{event.index}].uid",
                f"uid {event.uid} speaks but never joins; add "
                f'{{"at": <seconds>, "uid": {event.uid}, "join": true}} before it',
            )
        if event.at_ms < joins_ms:
            raise _fail(
                source,
                f"events[{event.index}].at",
                f"uid {event.uid} speaks at {event.at_ms / 1000:g} s but first joins at "
                f"{joins_ms / 1000:g} s; nobody would hear it",
            )
    actions: list[ScriptAction] = []
    clips: list[SpeechClip] = []
    speech_free_at: dict[int, float] = {}
    speech_ms = last_ms = 0.0
    # Stable: events at the same moment keep their order in the file.
    for event in sorted(checked, key=lambda e: e.at_ms):
        where = f"events[{event.index}]"
        uid, at_ms = event.uid, event.at_ms
        last_ms = max(last_ms, at_ms)
        if event.kind == "say":
            start = max(at_ms, speech_free_at.get(uid, 0.0))
            pcm, decoded = encode_words(event.value, SAMPLE_RATE_HZ, start_ms=0)
            words = tuple(
                ExpectedWord(uid, w.text or "", start + w.start_ms, start + w.end_ms)
                for w in decoded
            )
        elif event.kind == "wav":
            start = max(at_ms, speech_free_at.get(uid, 0.0))
            pcm, words = event.value, ()
        else:
            actions.append(ScriptAction(at_ms, uid, event.kind))
            continue
        clip = SpeechClip(uid, start, pcm, words)
        if clip.end_ms > MAX_MEETING_S * 1000.0:
            raise _fail(source, where, "the speech would end more than 24 h into the meeting")
        speech_ms += clip.end_ms - clip.start_ms
        if speech_ms > MAX_SPEECH_S * 1000.0:
            raise _fail(
                source, where, f"the file holds more than {MAX_SPEECH_S // 3600} h of speech"
            )
        speech_free_at[uid] = clip.end_ms
        clips.append(clip)
        last_ms = max(last_ms, clip.end_ms)
    if end_ms is None:
        end_ms = min(last_ms + 2000.0, MAX_MEETING_S * 1000.0)
    return MeetingScript(channel, names, tuple(actions), tuple(clips), end_ms, source)


def load_script(path: Path) -> MeetingScript:
    """Read and validate a replay file.

    Raises:
        ReplayError: the file is missing, not JSON, or malformed.
    """
    shown = _quote(str(path))
    try:
        # O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever; on a
        # regular file it changes nothing.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(descriptor, "rb") as handle:
            if stat.S_ISDIR(os.fstat(handle.fileno()).st_mode):
                raise IsADirectoryError
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ReplayError(f"replay file {shown} is not a regular file")
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ReplayError(f"replay file {shown} does not exist") from None
    except IsADirectoryError:
        raise ReplayError(f"replay file {shown} is a directory, not a file") from None
    except OSError as exc:
        raise ReplayError(
            f"cannot read replay file {shown}: {exc.strerror or exc.__class__.__name__}"
        ) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ReplayError(f"replay file {shown} is larger than {MAX_FILE_BYTES // 2**20} MiB")
    try:
        # utf-8-sig: editors on Windows start UTF-8 files with a byte order mark.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReplayError(
            f"replay file {shown} is not UTF-8 text (byte {exc.start}); save it as UTF-8 JSON"
        ) from None
    try:
        data = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_JsonObject)
    except json.JSONDecodeError as exc:
        raise ReplayError(
            f"replay file {shown} is not valid JSON "
            f"(line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except _NonFinite as exc:
        raise ReplayError(
            f"replay file {shown} is not valid JSON ({exc.args[0]} is not a JSON number)"
        ) from None
    except RecursionError:
        raise ReplayError(f"replay file {shown} is nested too deeply to be a replay file") from None
    except ValueError:  # an integer of thousands of digits
        raise ReplayError(
            f"replay file {shown} holds a number too long to read; use seconds like 12.5"
        ) from None
    return parse_script(data, base_dir=path.parent, source=shown)


class _JsonObject(dict[str, Any]):
    """A JSON object that remembers the first key it held twice (json keeps the last)."""

    repeated: str | None = None

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        if len(self) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    self.repeated = key
                    break
                seen.add(key)


class _NonFinite(ValueError):
    """NaN or Infinity in the file: Python's json accepts them, JSON does not."""


def _reject_constant(name: str) -> Any:
    raise _NonFinite(name)
