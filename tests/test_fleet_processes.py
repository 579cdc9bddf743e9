"""The fleet as it runs: real PostgreSQL, real ``recorder worker`` processes, replayed channels.

The streaming emulator runs as a process of its own (``recorder emulate``), the
workers as others; the test only enqueues, watches the ``recordings`` table and
sends signals. Each scripted meeting says unique words, so every stored word
can be traced to the one moment it was said.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from recorder.fleet.takeover import is_takeover
from storage.store import TranscriptStore
from tests.support.fleet import (
    Accounting,
    Fleet,
    check_takeover,
    expected,
    fleet,
    meeting_script,
    no_traceback,
    words_of,
)
from tests.support.processes import Proc
from tests.support.timing import TIMEOUT

__all__ = ["fleet"]  # the fixture, imported to be used here

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def log_of(fleet: Fleet, recording: int) -> list[str]:
    """What the workers said about one recording."""
    return [line for w in fleet.workers for line in w.lines if f"recording {recording} " in line]


async def test_twenty_recordings_three_workers_one_killed(fleet: Fleet) -> None:
    seconds = 14.0
    scripts = [meeting_script(i, seconds) for i in range(20)]
    for _ in range(3):
        await fleet.add_worker(capacity=4)
    ids = [await fleet.enqueue(script) for script in scripts]
    most_held: Counter[int] = Counter()

    def within_capacity(rows: list[dict[str, Any]]) -> None:
        held = Counter(r["worker_pid"] for r in rows if r["status"] == "recording")
        for pid, count in held.items():
            most_held[pid] = max(most_held[pid], count)
            assert count <= 4, f"worker {pid} holds {count} recordings"

    # Kill a worker in the second wave: every recording started, the victim holds some
    # that have run a few seconds (words committed), and the others have room for them.
    def ripe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            r
            for r in rows
            if r["status"] == "recording" and (r["now"] - r["started_at"]).total_seconds() > 4.0
        ]

    def victim_of(rows: list[dict[str, Any]]) -> Proc | None:
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
    total = Accounting()
    for row, script in zip(final, scripts, strict=True):
        assert row["id"] in ids
        words, meeting = await words_of(fleet.db_url, row["meeting_id"])
        assert max(words.values(), default=1) == 1, f"recording {row['id']}: a word stored twice"
        assert set(words) <= {w.text for w in expected(script)}
        if row["id"] not in killed:
            missing = [w for w in expected(script) if w.text not in words]
            assert row["claims"] == 1
            assert not missing, f"recording {row['id']} lost {missing}"
            assert meeting.summary.status == "completed"
            continue
        assert row["claims"] == 2, "\n".join([str(row["reason"]), *log_of(fleet, row["id"])])
        total.add(check_takeover(script, words, meeting))
        lost_gaps = [g for g in meeting.gaps if is_takeover(g) and g.state == "lost"]
        assert lost_gaps, meeting.gaps  # both participants were in the channel
        killed_ms = (kill_at - row["started_at"]).total_seconds() * 1000
        resumed_ms = max(g.to_ms for g in lost_gaps)
        takeovers.append((resumed_ms - killed_ms) / 1000)
        # Nobody received the audio from about the kill to the rejoin, and no more.
        assert all(g.from_ms >= killed_ms - 3500 for g in lost_gaps), (killed_ms, lost_gaps)
    print(
        f"\nfleet: {len(killed)} recording(s) taken over {min(takeovers):.1f}-"
        f"{max(takeovers):.1f} s after the kill; their words: said {total.said} / live "
        f"{total.live} / repaired from the killed worker's audio {total.repaired} / lost "
        f"{total.lost} (said while nobody received the audio: {total.not_received}); "
        f"most held by one worker: {max(most_held.values())}"
    )
    # The killed workers' last turns were not final yet: their kept audio was repaired.
    assert total.repaired > 0
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
    words, stored = await words_of(fleet.db_url, meeting)
    count = check_takeover(script, words, stored)
    # From the hand-back to the takeover nobody heard the channel: lost, so partial. The
    # drained worker transcribed everything it heard, so nothing was left to repair.
    takeover = [g for g in stored.gaps if is_takeover(g)]
    assert takeover and all(g.state == "lost" for g in takeover), takeover
    assert stored.summary.status == "partial"
    print(
        f"\nSIGTERM drain took {drained_s:.2f} s; recording {recording} continued elsewhere; "
        f"words said {count.said} / live {count.live} / lost {count.lost}"
    )
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
    words, meeting = await words_of(fleet.db_url, row["meeting_id"])
    # Nothing the frozen holder did after it woke up was stored; the takeover's stretch
    # nobody received leaves the meeting partial, every other word stored once.
    check_takeover(script, words, meeting)
    assert meeting.summary.status == "partial", (meeting.gaps, holder.lines, other.lines)
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
