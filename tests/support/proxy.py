"""Outages a test can start and end: a TCP proxy cut (a network outage), a SQLite file locked.

Real sockets and real locks, so the recorder meets real failures.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from recorder.transport.base import TransportSink
from recorder.transport.replay import ReplayTransport

__all__ = ["Cuttable", "CuttableProxy", "OutageAt", "SqliteLock"]


class Cuttable(Protocol):
    """Something an :class:`OutageAt` cuts and restores (called on the loop, never blocking)."""

    @property
    def is_cut(self) -> bool: ...

    def cut(self) -> None: ...

    def restore(self) -> None: ...


class SqliteLock:
    """Another connection holding a SQLite file's write lock (``BEGIN EXCLUSIVE``) while cut.

    As a backup tool or an open ``sqlite3`` shell transaction would: every write of
    the recorder meets "database is locked". The lock is taken and released on a
    thread of its own, so the event loop never waits for it.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-lock")
        self._connection: sqlite3.Connection | None = None
        self._is_cut = False
        self.taken: Future[None] | None = None
        self.cuts = 0

    @property
    def is_cut(self) -> bool:
        return self._is_cut

    def cut(self) -> None:
        self._is_cut = True
        self.cuts += 1
        self.taken = self._thread.submit(self._lock)

    def restore(self) -> None:
        self._is_cut = False
        self._thread.submit(self._unlock)

    def close(self) -> None:
        if self._is_cut:
            self.restore()
        self._thread.shutdown(wait=True)

    def _lock(self) -> None:
        connection = sqlite3.connect(self._path, timeout=60, isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        self._connection = connection

    def _unlock(self) -> None:
        if self._connection is not None:
            self._connection.execute("ROLLBACK")
            self._connection.close()
            self._connection = None


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
    """A replay that cuts ``proxy`` at meeting time ``from_ms`` and restores it at ``to_ms``.

    Both times are meeting time (the replayed audio's own clock), whatever the
    replay's speed: a 5-minute outage at ``speed=20`` lasts 15 s of wall time.
    ``on_restore`` is called just before the restore (a test looks at the
    recorder while the database is still away).
    """

    def __init__(
        self,
        script: Any,
        proxy: Cuttable,
        from_ms: float,
        to_ms: float,
        *,
        on_restore: Any = None,
        **kw: Any,
    ):
        super().__init__(script, **kw)
        self._proxy, self._from, self._to = proxy, from_ms, to_ms
        self._on_restore = on_restore

    async def start(self, sink: Any) -> None:
        proxy, cut_at, back_at, on_restore = self._proxy, self._from, self._to, self._on_restore

        class Sink(TransportSink):
            def on_event(self, event: Any) -> None:
                sink.on_event(event)

            def on_audio(self, uid: int, chunk: Any) -> None:
                if cut_at <= chunk.start_ms < back_at and not proxy.is_cut:
                    proxy.cut()
                elif chunk.start_ms >= back_at and proxy.is_cut:
                    if on_restore is not None:
                        on_restore()
                    proxy.restore()
                sink.on_audio(uid, chunk)

        await super().start(Sink())
