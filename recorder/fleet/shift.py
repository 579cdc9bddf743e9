"""A live transport rejoined mid-meeting, on the meeting's clock rather than its own.

A transport's clock starts at 0 when it joins; a worker that takes a live
recording over joins ``offset_ms`` into the meeting, so every time it reports
(its clock, its chunks, its participants' comings and goings) is moved by that
much, and the continued meeting's turns fall after the earlier ones. Replayed
channels need none of this: they start at the elapsed script time themselves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from recorder.audio import Chunk
from recorder.transport.base import Transport, TransportEvent, TransportSink

__all__ = ["ShiftedTransport"]


class _ShiftedSink(TransportSink):
    def __init__(self, sink: TransportSink, offset_ms: float) -> None:
        self._sink = sink
        self._offset_ms = offset_ms

    def on_event(self, event: TransportEvent) -> None:
        self._sink.on_event(dataclasses.replace(event, at_ms=event.at_ms + self._offset_ms))

    def on_audio(self, uid: int, chunk: Chunk) -> None:
        self._sink.on_audio(
            uid, dataclasses.replace(chunk, start_ms=chunk.start_ms + self._offset_ms)
        )


class ShiftedTransport(Transport):
    """``inner``, with every time it reports moved ``offset_ms`` later."""

    def __init__(self, inner: Transport, offset_ms: float) -> None:
        self.inner = inner
        self.offset_ms = offset_ms
        self.channel = inner.channel

    @property
    def names(self) -> Mapping[int, str]:
        """The inner transport's names."""
        return self.inner.names

    def clock_ms(self) -> float:
        """Meeting time: the inner clock plus the offset."""
        return self.inner.clock_ms() + self.offset_ms

    def linger(self, seconds: float) -> float | None:
        """As the inner transport."""
        return self.inner.linger(seconds)

    async def start(self, sink: TransportSink) -> None:
        """Start the inner transport, shifting what it delivers."""
        await self.inner.start(_ShiftedSink(sink, self.offset_ms))

    async def wait_finished(self) -> None:
        """As the inner transport."""
        await self.inner.wait_finished()

    async def stop(self) -> None:
        """As the inner transport."""
        await self.inner.stop()

    async def publish(self, pcm: bytes) -> None:
        """As the inner transport."""
        await self.inner.publish(pcm)

    def flush_publish(self) -> None:
        """As the inner transport."""
        self.inner.flush_publish()

    @property
    def publish_backlog_ms(self) -> float:
        """As the inner transport."""
        return self.inner.publish_backlog_ms

    @property
    def publish_played_ms(self) -> float:
        """As the inner transport."""
        return self.inner.publish_played_ms

    async def wait_played(self, backlog_ms: float = 0.0) -> None:
        """As the inner transport."""
        await self.inner.wait_played(backlog_ms)

    @property
    def dropped_audio_ms(self) -> Mapping[int, float]:
        """As the inner transport."""
        return self.inner.dropped_audio_ms
