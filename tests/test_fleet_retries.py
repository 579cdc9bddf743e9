"""A worker process's retries and its second SIGTERM, on real processes.

A job whose database connection is refused at its start fails for now, goes
back to the queue, and is retried with backoff; a worker whose queue connections
are cut for a moment keeps its recording and takes the next; a worker signalled twice while
draining exits at once and another worker takes its recording over. The
harness (emulator process, workers, the ``recordings`` table) is
tests/support/fleet.py.
"""

from __future__ import annotations

import asyncio
import signal
import struct
from collections import Counter
from dataclasses import dataclass, field

import pytest
from sqlalchemy.engine import make_url

from tests.support.fleet import (
    HEARTBEAT_S,
    Fleet,
    check_takeover,
    expected,
    fleet,
    meeting_script,
    no_traceback,
    words_of,
)

__all__ = ["fleet"]  # the fixture, imported to be used here

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    is_engine: bool


@dataclass
class PgProxy:
    """A TCP proxy in front of PostgreSQL that can refuse the transcripts' connections.

    It reads each client's startup packet (answering an SSL or GSSAPI request with
    "no", as a server without TLS does) to tell the transcripts' engine (asyncpg,
    which sends ``search_path`` as a startup parameter) from the queue's psycopg
    connections (which send it inside ``options``). While "away" it cuts the
    engine's connections and closes new ones at once: for the recording, the
    database is unreachable, as when PostgreSQL refuses new clients at its
    connection limit. The queue's connections are spared then; "queue away" does
    the same to the queue's connections alone (a blip the worker must ride out).
    """

    host: str
    port: int
    away: bool = False
    queue_away: bool = False
    refused: int = 0
    refusal: asyncio.Event = field(default_factory=asyncio.Event)
    links: set[_Link] = field(default_factory=set)
    server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    def go_away(self) -> None:
        self.away = True
        for link in [link for link in self.links if link.is_engine]:
            link.client.transport.abort()
            link.server.transport.abort()

    def come_back(self) -> None:
        self.away = False

    def queue_goes_away(self) -> None:
        self.queue_away = True
        for link in [link for link in self.links if not link.is_engine]:
            link.client.transport.abort()
            link.server.transport.abort()

    def queue_comes_back(self) -> None:
        self.queue_away = False

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for link in list(self.links):
            link.client.transport.abort()
            link.server.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (length,) = struct.unpack("!I", await reader.readexactly(4))
                packet = await reader.readexactly(length - 4)
                if length == 8 and struct.unpack("!I", packet)[0] in (
                    _SSL_REQUEST,
                    _GSSENC_REQUEST,
                ):
                    writer.write(b"N")
                    await writer.drain()
                    continue
                break
            is_engine = b"\x00search_path\x00" in b"\x00" + packet
            if (self.away and is_engine) or (self.queue_away and not is_engine):
                self.refused += 1
                self.refusal.set()
                writer.transport.abort()
                return
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, asyncio.IncompleteReadError):
            writer.transport.abort()
            return
        up_writer.write(struct.pack("!I", length) + packet)
        link = _Link(writer, up_writer, is_engine)
        self.links.add(link)
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            self.links.discard(link)


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(1 << 16):
            sink.write(data)
            await sink.drain()
    except OSError:
        pass
    finally:
        sink.transport.abort()


async def test_a_job_whose_database_is_away_at_its_start_retries_and_completes(
    fleet: Fleet,
) -> None:
    url = make_url(fleet.db_url)
    proxy = PgProxy(url.host or "127.0.0.1", url.port or 5432)
    port = await proxy.start()
    try:
        worker = await fleet.add_worker(
            db_url=url.set(port=port).render_as_string(hide_password=False)
        )
        proxy.go_away()
        script = meeting_script(0, 10.0)
        recording = await fleet.enqueue(script)
        loop = asyncio.get_running_loop()
        line = await worker.wait_line("will retry (attempt 1 of", 30)
        failed_at = loop.time()
        assert proxy.refused > 0 and "database" in line, line
        proxy.come_back()
        await worker.wait_line("taking over from", 30)
        retried_s = loop.time() - failed_at
        (row,) = await fleet.wait_rows(lambda rows: rows[0]["status"] == "done", 60)
    finally:
        await proxy.close()
    assert row["id"] == recording and row["claims"] == 2, row
    words, meeting = await words_of(fleet.db_url, row["meeting_id"])
    # The channel went unheard from the recording's start until the retry joined it.
    count = check_takeover(script, words, meeting)
    assert count.live > 0 and meeting.summary.status == "partial"
    print(
        f"\nthe database refused the job at its start; retried {retried_s:.1f} s later "
        f"(backoff 2 s); words said {count.said} / live {count.live} / lost {count.lost}"
    )
    assert retried_s >= 1.5  # procrastinate waited the backoff
    no_traceback(fleet)


async def test_a_blip_of_the_queues_database_does_not_stop_the_worker(fleet: Fleet) -> None:
    # procrastinate stops a worker whose heartbeat, listener or fetch loses its
    # connection: it would finish the recording it holds, take no other, and exit.
    url = make_url(fleet.db_url)
    proxy = PgProxy(url.host or "127.0.0.1", url.port or 5432)
    port = await proxy.start()
    first, second = meeting_script(0, 12.0), meeting_script(1, 6.0)
    try:
        worker = await fleet.add_worker(
            capacity=2, db_url=url.set(port=port).render_as_string(hide_password=False)
        )
        await fleet.enqueue(first)
        await fleet.wait_rows(lambda rows: rows[0]["status"] == "recording", 60)
        proxy.queue_goes_away()
        await asyncio.wait_for(proxy.refusal.wait(), 15)  # the queue tried to reconnect
        # The blip lasts three heartbeats, shorter than the stall timeout (no takeover).
        await asyncio.sleep(3 * HEARTBEAT_S)
        refused = proxy.refused
        proxy.queue_comes_back()
        await fleet.enqueue(second)
        rows = await fleet.wait_rows(
            lambda rows: len(rows) == 2 and all(row["status"] == "done" for row in rows), 90
        )
    finally:
        await proxy.close()
    assert worker.process.returncode is None, worker.lines[-5:]
    assert not [line for line in worker.lines if "worker stopped" in line]
    said = "\n".join(worker.lines)
    assert "the queue's database is unreachable" in said
    assert said.index("unreachable") < said.index("the queue's database is back")
    for script, row in zip((first, second), rows, strict=True):
        assert row["claims"] == 1 and row["worker_pid"] == worker.pid, row
        words, meeting = await words_of(fleet.db_url, row["meeting_id"])
        assert words == Counter(word.text for word in expected(script)), row
        assert meeting.summary.status == "completed"
    print(f"\nthe queue's connections were cut ({refused} reconnects refused); the worker stayed")
    no_traceback(fleet)


async def test_a_worker_whose_row_was_deleted_as_stalled_registers_again(fleet: Fleet) -> None:
    # After a database outage longer than the stall timeout, a worker that starts deletes
    # the rows of the workers that could not beat (procrastinate prunes them at start).
    # A pruned worker's next fetch of a job fails on the job's foreign key to its row,
    # and procrastinate stops it: it would finish what it holds, take nothing, exit 1.
    worker = await fleet.add_worker(capacity=2)
    first, second = meeting_script(0, 8.0), meeting_script(1, 6.0)
    await fleet.enqueue(first)
    await fleet.wait_rows(lambda rows: rows[0]["status"] == "recording", 60)
    pruned = await fleet.query("DELETE FROM procrastinate_workers RETURNING id")
    assert len(pruned) == 1
    await fleet.enqueue(second)
    rows = await fleet.wait_rows(
        lambda rows: len(rows) == 2 and all(row["status"] == "done" for row in rows), 90
    )
    assert worker.process.returncode is None, worker.lines[-5:]
    await worker.wait_line("registered again as worker", 5)
    for script, row in zip((first, second), rows, strict=True):
        assert row["claims"] == 1 and row["worker_pid"] == worker.pid, row
        words, meeting = await words_of(fleet.db_url, row["meeting_id"])
        assert words == Counter(word.text for word in expected(script)), row
        assert meeting.summary.status == "completed"
    # It beats under its new id, registered seconds ago (the second recording's length):
    # no worker starting later takes it for stalled.
    (alive,) = await fleet.query(
        "SELECT id, extract(epoch FROM now() - last_heartbeat) AS age FROM procrastinate_workers"
    )
    assert alive["id"] != pruned[0]["id"]
    assert float(alive["age"]) < 3 * HEARTBEAT_S, alive  # type: ignore[arg-type]
    no_traceback(fleet)


async def test_a_second_sigterm_while_draining_exits_at_once_and_the_fleet_takes_over(
    fleet: Fleet,
) -> None:
    a = await fleet.add_worker()
    b = await fleet.add_worker()
    script = meeting_script(0, 16.0)
    await fleet.enqueue(script)
    rows = await fleet.wait_rows(
        lambda rows: (
            rows[0]["status"] == "recording"
            and (rows[0]["now"] - rows[0]["started_at"]).total_seconds() > 3
        ),
        60,
    )
    holder, other = (a, b) if rows[0]["worker_pid"] == a.pid else (b, a)
    holder.process.send_signal(signal.SIGTERM)
    await holder.wait_line("draining:", 10)
    loop = asyncio.get_running_loop()
    sent = loop.time()
    holder.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(holder.process.wait(), 10) == 1
    exited_s = loop.time() - sent
    await holder.wait_line("second signal: exiting now", 5)
    await other.wait_line("taking over from", 30)
    (row,) = await fleet.wait_rows(lambda rows: rows[0]["status"] == "done", 60)
    assert row["claims"] == 2 and row["worker_pid"] == other.pid, row
    words, meeting = await words_of(fleet.db_url, row["meeting_id"])
    count = check_takeover(script, words, meeting)
    print(
        f"\nsecond SIGTERM: the worker exited {exited_s * 1000:.0f} ms later; the other took "
        f"the recording over; words said {count.said} / live {count.live} / repaired "
        f"{count.repaired} / lost {count.lost}"
    )
    assert exited_s < 2.0
    no_traceback(fleet)
