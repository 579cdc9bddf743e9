"""Scripted meetings of typical shapes, generated from a seed, with their pauses on record.

Each shape is a list of utterances (one sentence of tone code each, so the STT emulator
ends a turn 100 ms after it) placed on the meeting clock with two kinds of pause: between
one speaker's sentences (the speaker goes on) and between turns (someone else takes the
floor). Sentences are cut right after their last word, so any pause can be short; a
``say`` script event would add a fixed 1.2 s after every sentence. The generated
:class:`~recorder.transport.script.MeetingScript` plays through the replay transport.

Shapes: ``standup`` (4-6 people, 2-4 s utterances, quick exchanges), ``review`` (3 people,
10-40 s turns), ``lecture`` (one speaker 80% of the time, then questions and answers),
``allhands`` (12 people present, 3 of them talking).
"""

from __future__ import annotations

import asyncio
import io
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from recorder.app import RecordingOptions, record
from recorder.audio import bytes_for_ms
from recorder.bot import MeetingReport
from recorder.config import Config
from recorder.console import LiveConsole
from recorder.emulator.batch import BatchBehaviour, BatchEmulator
from recorder.emulator.streaming.records import StreamingBehaviour
from recorder.emulator.streaming.server import StreamingEmulator
from recorder.stt.hold import DEFAULT_HOLD_MS, ClosePolicy
from recorder.tonecode import encode_words
from recorder.transport.replay import ReplayTransport
from recorder.transport.script import ExpectedWord, MeetingScript, ScriptAction, SpeechClip
from storage.store import TranscriptStore

__all__ = [
    "SHAPES",
    "Meeting",
    "MeetingClock",
    "Outcome",
    "Utterance",
    "generate",
    "record_meeting",
]

_VOCABULARY = (
    "we shipped the login fix yesterday today I start on search billing export api team "
    "review blocked waiting design question answer release notes customer feedback metrics "
    "dashboard latency budget roadmap quarter hiring onboarding tests coverage deploy "
    "rollback incident pager weekend friday monday plan draft agree sounds good thanks next"
).split()


@dataclass(frozen=True, slots=True)
class Utterance:
    """One sentence of one speaker, where it starts, and what it says."""

    uid: int
    start_ms: float
    text: str


@dataclass
class Meeting:
    """A generated meeting: its utterances, cast and the pauses that shaped it."""

    name: str
    uids: tuple[int, ...]
    utterances: list[Utterance] = field(default_factory=list)
    # Pauses between one speaker's consecutive sentences (they go on) ...
    sentence_pauses_ms: list[float] = field(default_factory=list)
    # ... and, per speaker, the silence from the end of their turn to their next one.
    turn_returns_ms: list[float] = field(default_factory=list)
    end_ms: float = 0.0

    def script(self) -> MeetingScript:
        """The meeting as a replay script (everyone joins at 0 and stays)."""
        clips: list[SpeechClip] = []
        for utterance in self.utterances:
            pcm, words = encode_words(utterance.text)
            end = words[-1].end_ms
            pcm = pcm[: bytes_for_ms(end)]  # drop the codec's 1.2 s after a sentence
            start = utterance.start_ms
            clips.append(
                SpeechClip(
                    utterance.uid,
                    start,
                    pcm,
                    tuple(
                        ExpectedWord(
                            utterance.uid, w.text or "", start + w.start_ms, start + w.end_ms
                        )
                        for w in words
                    ),
                )
            )
        actions = tuple(ScriptAction(0.0, uid, "join") for uid in self.uids)
        names = {uid: f"P{uid}" for uid in self.uids}
        return MeetingScript(self.name, names, actions, tuple(clips), self.end_ms)


class _Builder:
    """Places sentences on the clock, one speaker after another."""

    def __init__(self, name: str, uids: tuple[int, ...], rng: random.Random) -> None:
        self.meeting = Meeting(name, uids)
        self.rng = rng
        self.now = 1000.0
        self.last_uid: int | None = None
        self.turn_ended_at: dict[int, float] = {}

    def sentence_pause(self) -> float:
        # Between one speaker's sentences: 0.2-1.2 s, mostly around half a second.
        return min(1200.0, max(200.0, self.rng.lognormvariate(-0.75, 0.45) * 1000))

    def handover_gap(self) -> float:
        # Between speakers: a quick hand-over, 0.1-1 s.
        return min(1000.0, max(100.0, self.rng.lognormvariate(-1.2, 0.5) * 1000))

    def say(self, uid: int, seconds: float) -> None:
        """``uid`` says one sentence of about ``seconds``."""
        if self.last_uid == uid:
            pause = self.sentence_pause()
            self.meeting.sentence_pauses_ms.append(pause)
        else:
            pause = self.handover_gap()
            if self.last_uid is not None:
                self.turn_ended_at[self.last_uid] = self.now
            if uid in self.turn_ended_at:
                self.meeting.turn_returns_ms.append(self.now + pause - self.turn_ended_at[uid])
        self.now += pause
        words = max(3, round(seconds / 0.27))
        text = " ".join(self.rng.choice(_VOCABULARY) for _ in range(words)) + "."
        _, timing = encode_words(text)
        self.meeting.utterances.append(Utterance(uid, self.now, text))
        self.now += timing[-1].end_ms
        self.last_uid = uid

    def turn(self, uid: int, seconds: float, sentence: tuple[float, float]) -> None:
        """``uid`` talks for about ``seconds`` in sentences of ``sentence`` seconds."""
        said = 0.0
        while said < seconds:
            length = self.rng.uniform(*sentence)
            self.say(uid, length)
            said += length

    def done(self) -> Meeting:
        self.meeting.end_ms = self.now + 3000.0
        return self.meeting


def standup(rng: random.Random, minutes: float) -> Meeting:
    """4-6 people each give an update in 2-4 s utterances; others chip in briefly."""
    uids = tuple(100 + i for i in range(rng.randint(4, 6)))
    b = _Builder("standup", uids, rng)
    while b.now < minutes * 60_000:
        for uid in uids:
            for _ in range(rng.randint(2, 4)):
                b.say(uid, rng.uniform(2.0, 4.0))
                if rng.random() < 0.35:  # a quick exchange: someone asks, the speaker answers
                    b.say(rng.choice([u for u in uids if u != uid]), rng.uniform(2.0, 3.0))
                    b.say(uid, rng.uniform(2.0, 3.0))
    return b.done()


def review(rng: random.Random, minutes: float) -> Meeting:
    """3 people, turns of 10-40 s."""
    uids = (200, 201, 202)
    b = _Builder("review", uids, rng)
    uid = uids[0]
    while b.now < minutes * 60_000:
        b.turn(uid, rng.uniform(10, 40), (2.5, 6.0))
        uid = rng.choice([u for u in uids if u != uid])
    return b.done()


def lecture(rng: random.Random, minutes: float) -> Meeting:
    """One speaker talks about 80% of the time; questions from four others, then answers."""
    lecturer, audience = 300, (301, 302, 303, 304)
    b = _Builder("lecture", (lecturer, *audience), rng)
    while b.now < minutes * 60_000:
        b.turn(lecturer, rng.uniform(30, 60), (3.0, 7.0))
        asker = rng.choice(audience)
        b.turn(asker, rng.uniform(3, 8), (2.0, 5.0))
        b.turn(lecturer, rng.uniform(8, 20), (3.0, 6.0))
    return b.done()


def allhands(rng: random.Random, minutes: float) -> Meeting:
    """12 people present, 3 of them talking in turns of 15-40 s."""
    uids = tuple(400 + i for i in range(12))
    active = uids[:3]
    b = _Builder("allhands", uids, rng)
    uid = active[0]
    while b.now < minutes * 60_000:
        b.turn(uid, rng.uniform(15, 40), (3.0, 6.0))
        uid = rng.choice([u for u in active if u != uid])
    return b.done()


SHAPES: dict[str, Callable[[random.Random, float], Meeting]] = {
    "standup": standup,
    "review": review,
    "lecture": lecture,
    "allhands": allhands,
}


def generate(shape: str, seed: int, minutes: float = 2.0) -> Meeting:
    """The meeting of ``shape`` for ``seed``, about ``minutes`` long."""
    return SHAPES[shape](random.Random(f"{shape}-{seed}"), minutes)


# -- recording one through the real pipeline -------------------------------------------


class MeetingClock:
    """The meeting's clock while a replay plays ``speed`` times faster (emulator billing)."""

    def __init__(self, speed: float) -> None:
        self._speed = speed
        self._origin = time.monotonic()
        self._unix = time.time()

    def monotonic(self) -> float:
        """Meeting seconds since the clock was made."""
        return (time.monotonic() - self._origin) * self._speed

    def time(self) -> float:
        """Unix time on the meeting's clock."""
        return self._unix + self.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until the meeting clock reaches ``deadline``."""
        delay = (deadline - self.monotonic()) / self._speed
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass
class Outcome:
    """What recording one meeting cost and kept (meeting seconds)."""

    speech_s: float
    billed_s: float
    sessions: int
    refused: int
    words: int
    words_lost: int
    words_extra: int
    utterances: int
    first_words_lost: int
    learned_per_minute: float
    minutes: float
    report: MeetingReport

    @property
    def ratio(self) -> float:
        """Billed seconds per second of speech."""
        return self.billed_s / self.speech_s

    @property
    def opens_per_minute(self) -> float:
        """Sockets opened per meeting minute."""
        return self.sessions / self.minutes


async def record_meeting(
    script: MeetingScript,
    folder: Path,
    *,
    policy: ClosePolicy = ClosePolicy.TURN_END,
    hold_s: float = DEFAULT_HOLD_MS / 1000,
    sessions_per_minute: float = 100.0,
    speed: float = 8.0,
    latency_s: float = 0.2,
    account_per_minute: float | None = None,
) -> Outcome:
    """Record ``script`` through ``app.record``, the emulator and SQLite; measure it.

    The emulator bills and limits new sessions (3009 over ``sessions_per_minute``) on the
    meeting's clock, and answers ``latency_s`` of meeting time after each pause, so the
    figures are those of a meeting played in real time, up to scheduling noise. The
    account allows ``account_per_minute`` new sessions (default: the configured rate).
    """
    db_url = f"sqlite+aiosqlite:///{folder / 'cost.db'}"
    clock = MeetingClock(speed)
    emulator = StreamingEmulator(
        realtime_factor=speed,
        clock=clock,
        behaviour=StreamingBehaviour(
            processing_delay_s=latency_s / speed,
            max_sessions_per_minute=int(account_per_minute or sessions_per_minute),
            record_frames=False,
        ),
    )
    # Speech held too long (a session refused for a while) is repaired from the kept
    # audio through the async API, as in production: the emulator's stands in for it.
    batch = BatchEmulator(behaviour=BatchBehaviour(processing_s=0.05))
    async with (
        emulator.serve() as server,
        batch.serve() as repair,
        await TranscriptStore.open(db_url, auto_migrate=True) as store,
    ):
        report = await record(
            Config(
                database_url=db_url,
                assemblyai_api_key="bench-key",
                stt_url=server.url,
                async_url=repair.url,
                audio_dir=str(folder / "audio"),
            ),
            ReplayTransport(script, speed=speed),
            options=RecordingOptions(
                sessions_per_minute=sessions_per_minute,
                realtime_factor=speed,
                close_policy=policy,
                hold_s=hold_s,
                names=dict(script.names),
            ),
            store=store,
            console=LiveConsole(out=io.StringIO(), status=io.StringIO(), quiet=True),
        )
        meeting = await store.get_meeting(report.meeting_id)
    stored: dict[int, list[tuple[str, float]]] = {}
    for turn in meeting.turns:
        for word in turn.words:
            stored.setdefault(turn.uid, []).append((word.text, word.start_ms))
    lost = first_lost = total = 0
    for clip in script.clips:
        have = stored.get(clip.uid, [])
        for index, word in enumerate(clip.words):
            total += 1
            match = next(
                (
                    i
                    for i, (text, start) in enumerate(have)
                    if text == word.text and abs(start - word.start_ms) <= 300
                ),
                None,
            )
            if match is None:
                lost += 1
                first_lost += index == 0
            else:
                have.pop(match)
    extra = sum(len(words) for words in stored.values())
    return Outcome(
        speech_s=sum(c.words[-1].end_ms - c.words[0].start_ms for c in script.clips) / 1000,
        billed_s=sum(s.billed_seconds for s in emulator.sessions),
        sessions=sum(1 for s in emulator.sessions if s.session_id is not None),
        refused=sum(1 for s in emulator.sessions if s.close_code == 3009),
        words=total,
        words_lost=lost,
        words_extra=extra,
        utterances=len(script.clips),
        first_words_lost=first_lost,
        learned_per_minute=report.sessions_per_minute,
        minutes=script.end_ms / 60_000,
        report=report,
    )
