"""ParticipantStream with a fake stream: what each SttStream is given, and when."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from recorder.audio import Chunk, bytes_for_ms
from recorder.errors import SttConnectionError
from recorder.limiter import SessionBudget
from recorder.pipeline import ParticipantStream, StreamHooks
from recorder.stt.events import AudioDropped, Event


class FakeStream:
    """A SpeechStream that records what it was given and when it was started."""

    def __init__(self, *, fail: bool = False) -> None:
        self.given: list[bytes] = []
        self.given_before_start = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()  # start() returns once set
        self.stopped = False
        self.fail = fail
        self.events_out: list[Event] = []
        self._done = asyncio.Event()

    async def start(self) -> None:
        self.given_before_start = len(self.given)
        self.started.set()
        await self.release.wait()
        if self.fail:
            raise SttConnectionError("no socket")

    def send(self, pcm: bytes) -> None:
        self.given.append(pcm)

    async def events(self) -> AsyncIterator[Event]:
        for event in self.events_out:
            yield event
        await self._done.wait()

    async def stop(self) -> None:
        self.stopped = True
        self._done.set()


def chunk(at_ms: int, speech: bool) -> Chunk:
    return Chunk(bytes([at_ms // 100 % 256]) * bytes_for_ms(100), float(at_ms), speech)


def hooks() -> StreamHooks:
    async def nothing(*_: object) -> None:
        return None

    return StreamHooks(
        on_final=nothing,
        on_partial=lambda *_: None,
        on_speech_started=lambda *_: None,
        on_socket_opened=nothing,
        on_socket_closed=nothing,
        on_fatal=lambda *_: None,
    )


def participant(streams: list[FakeStream], **kwargs) -> ParticipantStream:
    """A participant whose streams are ``streams``, then fresh ones (appended to the list)."""
    made = iter(list(streams))

    def open_stream() -> FakeStream:
        stream = next(made, None)
        if stream is None:
            stream = FakeStream()
            streams.append(stream)
        return stream

    return ParticipantStream(
        1,
        open_stream=open_stream,
        budget=SessionBudget(600),
        hooks=hooks(),
        idle_close_ms=kwargs.pop("idle_close_ms", 1000.0),
        **kwargs,
    )


async def test_the_stream_gets_the_preroll_and_every_chunk_before_it_starts() -> None:
    first = FakeStream()
    p = participant([first, FakeStream()])
    for at in range(0, 1000, 100):
        p.feed(chunk(at, speech=False))
    p.feed(chunk(1000, speech=True))
    await first.started.wait()
    p.feed(chunk(1100, speech=True))  # while the socket opens: straight to the stream
    # The pre-roll is the last 400 ms, counting the speech chunk that opened the stream.
    assert first.given == [chunk(at, False).pcm for at in range(700, 1000, 100)] + [
        chunk(1000, True).pcm,
        chunk(1100, True).pcm,
    ]
    assert first.given_before_start == 4
    first.release.set()
    await p.aclose()
    assert first.stopped


async def test_speech_while_closing_reopens_with_everything_since_the_close() -> None:
    first, second = FakeStream(), FakeStream()
    first.release.set()
    p = participant([first, second], idle_close_ms=300.0)
    p.feed(chunk(0, speech=True))
    await first.started.wait()
    await asyncio.sleep(0)
    for at in range(100, 400, 100):
        p.feed(chunk(at, speech=False))  # 300 ms of silence: the idle close begins
    p.feed(chunk(400, speech=False))
    p.feed(chunk(500, speech=True))
    second.release.set()
    await second.started.wait()
    assert first.stopped
    assert second.given == [chunk(400, False).pcm, chunk(500, True).pcm]
    await p.aclose()


async def test_a_stream_that_never_opens_counts_its_speech_as_lost() -> None:
    failing = FakeStream(fail=True)
    failing.release.set()
    p = participant([failing])
    p.feed(chunk(0, speech=False))
    p.feed(chunk(100, speech=True))
    p.feed(chunk(200, speech=True))
    await p.aclose()
    assert p.dropped_ms == 200.0


async def test_audio_the_stream_dropped_is_counted() -> None:
    stream = FakeStream()
    stream.release.set()
    stream.events_out = [AudioDropped(0, 300)]
    p = participant([stream])
    p.feed(chunk(0, speech=True))
    await stream.started.wait()
    await p.aclose()
    assert p.dropped_ms == 300.0
