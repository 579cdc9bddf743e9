"""The fleet as it runs: real PostgreSQL, real ``recorder worker`` processes, replayed channels.

The streaming emulator runs as a process of its own (``recorder emulate``), the
workers as others; the test only enqueues, watches the ``recordings`` table and
sends signals. Each scripted meeting says unique words, so every stored word
can be traced to the one moment it was said.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from recorder.transport.script import MeetingScript
from storage.db import upgrade_database
from storage.store import TranscriptStore
from tests.support.processes import Proc, clean_env, start
from tests.support.timing import TIMEOUT

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

# Fast failure detection for the tests: heartbeat every 0.5 s, dead after 3 s.
HEARTBEAT_S = 0.5
STALL_S = 3.0


def meeting_script(index: int, seconds: float) -> dict[str, Any]:
    """Two people taking turns, one sentence of four unique words every 1.5 s."""
    events: list[dict[str, Any]] = [
        {"at": 0.0, "uid": 1, "join": True},
        {"at": 0.0, "uid": 2, "join": True},
    ]
    at, n = 0.3, 0
    while at < seconds - 2.0:
        words = " ".join(f"m{index}w{n + k}" for k in range(4))
        events.append({"at": round(at, 2), "uid": 1 + n // 4 % 2, "say": words + "."})
        n += 4
        at += 1.5
    events += [{"at": seconds - 0.5, "uid": uid, "leave": True} for uid in (1, 2)]
    return {
        "channel": f"fleet-{index}",
        "participants": [{"uid": 1, "name": "Ann"}, {"uid": 2, "name": "Ben"}],
        "events": events,
        "end": seconds,
    }


@dataclass
class Fleet:
    """An emulator, workers, and a way to enqueue and watch recordings."""

    tmp_path: Path
    db_url: str
    stt_url: str
    workers: list[Proc]
    conninfo: str
    env: dict[str, str]

    async def add_worker(
        self, capacity: int = 4, *, heartbeat_s: float = HEARTBEAT_S, stall_s: float = STALL_S
    ) -> Proc:
        worker = await start(
            self.tmp_path,
            "worker",
            f"--db={self.db_url}",
            f"--capacity={capacity}",
            f"--heartbeat={heartbeat_s}",
            f"--stall-timeout={stall_s}",
            "--drain-timeout=15",
            env=self.env,
            name=f"worker-{len(self.workers)}",
        )
        self.workers.append(worker)
        await worker.wait_line("ready", 6 * TIMEOUT)
        return worker

    async def enqueue(self, script: dict[str, Any], **options: Any) -> int:
        from recorder.fleet.connect import fleet_database
        from recorder.fleet.queue import enqueue, make_app

        path = self.tmp_path / f"{script['channel']}.json"
        path.write_text(json.dumps(script))  # noqa: ASYNC240 - a few bytes
        app = make_app(fleet_database(self.db_url))
        await app.open_async()
        try:
            row = await enqueue(
                app,
                script["channel"],
                {
                    "transport": f"replay:{path}",
                    "speed": 1.0,
                    "empty_timeout_s": 30.0,
                    "sessions_per_minute": 600.0,
                    **options,
                },
            )
        finally:
            await app.close_async()
        return row.id

    async def rows(self) -> list[dict[str, Any]]:
        import psycopg
        from psycopg.rows import dict_row

        async with await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, row_factory=dict_row
        ) as connection:
            cursor = await connection.execute("SELECT *, now() AS now FROM recordings ORDER BY id")
            return list(await cursor.fetchall())

    async def wait_rows(self, predicate: Any, within: float, *, check: Any = None) -> list[dict]:
        """Poll ``recordings`` until ``predicate(rows)``; ``check(rows)`` on every poll."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            rows = await self.rows()
            if check is not None:
                check(rows)
            if predicate(rows):
                return rows
            assert loop.time() < deadline, f"timed out; recordings: {rows}"
            await asyncio.sleep(0.2)


@pytest.fixture
async def fleet(tmp_path: Path, postgres_url: str) -> AsyncIterator[Fleet]:
    from recorder.fleet.connect import fleet_database

    await upgrade_database(postgres_url)
    emulator = await start(
        tmp_path, "emulate", "--port=0", env=clean_env(tmp_path), name="emulator"
    )
    line = await emulator.wait_line("streaming:", 6 * TIMEOUT)
    stt_url = line.split(": ", 1)[1]
    env = clean_env(tmp_path, ASSEMBLYAI_API_KEY="test-key", RECORDER_STT_URL=stt_url)
    result = Fleet(tmp_path, postgres_url, stt_url, [], fleet_database(postgres_url).conninfo, env)
    try:
        yield result
    finally:
        for proc in [*result.workers, emulator]:
            if proc.process.returncode is None:
                proc.process.kill()
                await proc.process.wait()
        for proc in [*result.workers, emulator]:
            if proc.reader is not None:
                await proc.reader


async def words_of(db_url: str, meeting_id: int) -> tuple[Counter[str], list[Any]]:
    async with await TranscriptStore.open(db_url) as store:
        meeting = await store.get_meeting(meeting_id)
    # A word cut by a takeover or hand-back is heard as an unintelligible fragment
    # ("[speech 0.1 s]"): not a word of the script, and not counted.
    words = Counter(
        w.text.strip(".") for t in meeting.turns for w in t.words if not w.text.startswith("[")
    )
    return words, list(meeting.notes)


def expected(script: dict[str, Any]) -> list[tuple[str, float]]:
    from recorder.transport.script import parse_script

    parsed: MeetingScript = parse_script(script)
    return [(w.text.strip("."), w.start_ms) for w in parsed.expected_words()]


def no_traceback(fleet: Fleet) -> None:
    for path in fleet.tmp_path.glob("worker-*.err"):
        text = path.read_text()
        assert "Traceback" not in text, text


async def test_twenty_recordings_three_workers_one_killed(fleet: Fleet) -> None:
    seconds = 14.0
    scripts = [meeting_script(i, seconds) for i in range(20)]
    for _ in range(3):
        await fleet.add_worker(capacity=4)
    ids = [await fleet.enqueue(script) for script in scripts]
    most_held: Counter[int] = Counter()

    def within_capacity(rows: list[dict]) -> None:
        held = Counter(r["worker_pid"] for r in rows if r["status"] == "recording")
        for pid, count in held.items():
            most_held[pid] = max(most_held[pid], count)
            assert count <= 4, f"worker {pid} holds {count} recordings"

    # Kill a worker in the second wave: every recording started, the victim holds some
    # that have run a few seconds (words committed), and the others have room for them.
    def ripe(rows: list[dict]) -> list[dict]:
        return [
            r
            for r in rows
            if r["status"] == "recording" and (r["now"] - r["started_at"]).total_seconds() > 4.0
        ]

    def victim_of(rows: list[dict]) -> Proc | None:
        """A worker holding a ripe recording whose recordings the others have room for."""
        if [r for r in rows if r["status"] == "queued"]:
            return None
        held = Counter(r["worker_pid"] for r in rows if r["status"] == "recording")
        for row in ripe(rows):
            pid = row["worker_pid"]
            if 4 * (len(fleet.workers) - 1) - (sum(held.values()) - held[pid]) >= held[pid]:
                return next(w for w in fleet.workers if w.pid == pid)
        return None

    rows = await fleet.wait_rows(
        lambda rows: victim_of(rows) is not None, 120, check=within_capacity
    )
    victim = victim_of(rows)
    assert victim is not None
    victim.process.kill()
    kill_at: datetime = (await fleet.rows())[0]["now"]
    killed = {
        r["id"]: r for r in rows if r["status"] == "recording" and r["worker_pid"] == victim.pid
    }
    await victim.process.wait()

    final = await fleet.wait_rows(
        lambda rows: all(r["status"] in ("done", "failed", "cancelled") for r in rows),
        120,
        check=within_capacity,
    )
    assert [r["status"] for r in final] == ["done"] * 20, [(r["id"], r["reason"]) for r in final]
    assert len({r["meeting_id"] for r in final}) == 20  # one meeting each, exactly once
    takeovers: list[float] = []
    lost_total = 0
    for row, script in zip(final, scripts, strict=True):
        assert row["id"] in ids
        words, notes = await words_of(fleet.db_url, row["meeting_id"])
        assert max(words.values(), default=1) == 1, f"recording {row['id']}: a word stored twice"
        said = expected(script)
        missing = [(text, at) for text, at in said if text not in words]
        assert set(words) <= {text for text, _ in said}
        if row["id"] not in killed:
            assert row["claims"] == 1
            assert not missing, f"recording {row['id']} lost {missing}"
            continue
        assert row["claims"] == 2, row
        (gap,) = [n for n in notes if n.kind == "gap"]
        killed_ms = (kill_at - row["started_at"]).total_seconds() * 1000
        resumed_ms = float(gap.meta["end_ms"])
        takeovers.append((resumed_ms - killed_ms) / 1000)
        # Words said in the outage are lost; so are the last turns the victim had not
        # committed yet (a turn ends 1 s after its last word, then the writer's batch).
        for text, at in missing:
            assert killed_ms - 3500 <= at <= resumed_ms + 500, (row["id"], text, at, gap.meta)
        lost_total += len(missing)
    print(
        f"\nfleet: {len(killed)} recording(s) taken over; takeover "
        f"{min(takeovers):.1f}-{max(takeovers):.1f} s after the kill; {lost_total} of "
        f"{sum(len(expected(scripts[ids.index(i)])) for i in killed)} words of those meetings lost "
        f"in the gap; most held by one worker: {max(most_held.values())}"
    )
    assert takeovers and max(takeovers) < 30
    for worker in fleet.workers:
        if worker is victim:
            continue
        worker.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.process.wait(), 30) == 0
    no_traceback(fleet)


async def test_sigterm_hands_back_and_another_worker_continues_the_meeting(fleet: Fleet) -> None:
    script = meeting_script(0, 12.0)
    first = await fleet.add_worker()
    (recording,) = [await fleet.enqueue(script)]
    await fleet.wait_rows(
        lambda rows: (
            rows[0]["status"] == "recording"
            and (rows[0]["now"] - rows[0]["started_at"]).total_seconds() > 3
        ),
        60,
    )
    loop = asyncio.get_running_loop()
    sent = loop.time()
    first.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(first.process.wait(), 20) == 0
    drained_s = loop.time() - sent
    (row,) = await fleet.rows()
    assert row["status"] == "queued" and "handed back" in row["reason"]
    meeting = row["meeting_id"]
    await first.wait_line("handed back", TIMEOUT)
    await fleet.add_worker()
    (row,) = await fleet.wait_rows(lambda rows: rows[0]["status"] == "done", 60)
    assert row["meeting_id"] == meeting and row["claims"] == 2
    words, notes = await words_of(fleet.db_url, meeting)
    assert max(words.values()) == 1
    assert set(words) <= {text for text, _ in expected(script)}
    (gap,) = [n for n in notes if n.kind == "gap"]  # from the hand-back to the takeover
    assert 0 < gap.meta["start_ms"] < gap.meta["end_ms"]
    async with await TranscriptStore.open(fleet.db_url) as store:
        assert (await store.get_meeting(meeting, with_turns=False)).summary.status == "completed"
    print(f"\nSIGTERM drain took {drained_s:.2f} s; recording {recording} continued elsewhere")
    no_traceback(fleet)


async def test_two_workers_one_job_never_two_recorders(fleet: Fleet) -> None:
    script = meeting_script(0, 16.0)
    a = await fleet.add_worker()
    b = await fleet.add_worker()
    await fleet.enqueue(script)
    rows = await fleet.wait_rows(
        lambda rows: (
            rows[0]["status"] == "recording"
            and (rows[0]["now"] - rows[0]["started_at"]).total_seconds() > 3
        ),
        60,
    )
    holder, other = (a, b) if rows[0]["worker_pid"] == a.pid else (b, a)
    assert not [line for line in other.lines if "started" in line]
    # Freeze the holder: its heartbeat and lease stop, but it is not dead. The other
    # worker takes over only once the lease has expired; when the holder wakes up it
    # finds the lease gone and writes nothing more.
    holder.process.send_signal(signal.SIGSTOP)
    try:
        await other.wait_line("taking over", 60)
    finally:
        holder.process.send_signal(signal.SIGCONT)
    await holder.wait_line("lost its lease", 30)
    (row,) = await fleet.wait_rows(lambda rows: rows[0]["status"] == "done", 60)
    assert row["claims"] == 2 and row["worker_pid"] == other.pid
    words, _ = await words_of(fleet.db_url, row["meeting_id"])
    assert max(words.values()) == 1, [w for w, n in words.items() if n > 1]
    async with await TranscriptStore.open(fleet.db_url) as store:
        meeting = await store.get_meeting(row["meeting_id"])
    assert meeting.summary.status == "completed", (meeting.gaps, holder.lines, other.lines)
    no_traceback(fleet)


async def test_permanent_failures_fail_at_once_with_the_reason(
    fleet: Fleet, tmp_path: Path
) -> None:
    fleet.env["ASSEMBLYAI_API_KEY"] = "test-key"
    await fleet.add_worker()
    missing = await fleet.enqueue(
        meeting_script(1, 4.0), transport=f"replay:{tmp_path / 'nope.json'}"
    )
    rows = await fleet.wait_rows(lambda rows: all(r["status"] == "failed" for r in rows), 30)
    (row,) = [r for r in rows if r["id"] == missing]
    assert "does not exist" in row["reason"] and row["claims"] == 1
    no_traceback(fleet)


async def test_stop_reaches_the_worker_within_two_seconds(fleet: Fleet) -> None:
    from recorder.fleet.connect import fleet_database
    from recorder.fleet.queue import make_app
    from recorder.fleet.recordings import Recordings

    worker = await fleet.add_worker()
    recording = await fleet.enqueue(meeting_script(0, 30.0))
    await worker.wait_line("started", 30)
    app = make_app(fleet_database(fleet.db_url))
    await app.open_async()
    try:
        loop = asyncio.get_running_loop()
        sent = loop.time()
        await Recordings(app.connector).request_stop(recording)  # type: ignore[arg-type]
        await worker.wait_line("stop requested", 2.0)
        heard_s = loop.time() - sent
    finally:
        await app.close_async()
    (row,) = await fleet.wait_rows(lambda rows: rows[0]["status"] == "done", 30)
    assert "stop requested" in row["reason"]
    async with await TranscriptStore.open(fleet.db_url) as store:
        meeting = await store.get_meeting(row["meeting_id"], with_turns=False)
    assert meeting.summary.status == "completed"
    print(f"\nstop reached the worker in {heard_s * 1000:.0f} ms")
    no_traceback(fleet)


async def test_a_recording_with_notes_gets_them_when_it_is_done(fleet: Fleet) -> None:
    from storage.notes import NotesStore

    # The emulator serves the gateway beside the streaming socket (docs/providers.md).
    host = fleet.stt_url.split("://", 1)[1].split("/", 1)[0]
    fleet.env["RECORDER_LLM_URL"] = f"http://{host}/v1"
    worker = await fleet.add_worker()
    await fleet.enqueue(meeting_script(0, 6.0), notes=True)
    await worker.wait_line("notes made", 60)
    (row,) = await fleet.wait_rows(lambda rows: rows[0]["status"] == "done", 30)
    async with await TranscriptStore.open(fleet.db_url) as store:
        notes = await NotesStore(store).current(row["meeting_id"])
    assert notes is not None and notes.content.summary
    no_traceback(fleet)
