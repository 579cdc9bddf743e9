"""A TCP proxy that a test can cut (a network outage) and restore: real sockets, real failures."""

from __future__ import annotations

import asyncio
from typing import Any

from recorder.transport.replay import ReplayTransport

__all__ = ["CuttableProxy", "OutageAt"]


class CuttableProxy:
    """A TCP proxy to the streaming emulator that can be cut (a network outage) and restored."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._is_cut = False
        self._links: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> CuttableProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        self.cut()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """As a streaming URL (the streaming emulator behind it)."""
        return f"ws://127.0.0.1:{self.port}/v3/ws"

    @property
    def is_cut(self) -> bool:
        return self._is_cut

    def cut(self) -> None:
        self._is_cut = True
        for writer in list(self._links):
            writer.transport.abort()

    def restore(self) -> None:
        self._is_cut = False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._is_cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.transport.abort()
            return
        self._links |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._links -= {writer, up_writer}


class OutageAt(ReplayTransport):
    """A replay that cuts the proxy at meeting time ``from_ms`` and restores it at ``to_ms``."""

    def __init__(self, script: Any, proxy: CuttableProxy, from_ms: float, to_ms: float, **kw: Any):
        super().__init__(script, **kw)
        self._proxy, self._from, self._to = proxy, from_ms, to_ms

    async def start(self, sink: Any) -> None:
        proxy, cut_at, back_at = self._proxy, self._from, self._to

        class Sink:
            def on_event(self, event: Any) -> None:
                sink.on_event(event)

            def on_audio(self, uid: int, chunk: Any) -> None:
                if cut_at <= chunk.start_ms < back_at and not proxy.is_cut:
                    proxy.cut()
                elif chunk.start_ms >= back_at and proxy.is_cut:
                    proxy.restore()
                sink.on_audio(uid, chunk)

        await super().start(Sink())
