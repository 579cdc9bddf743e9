"""The fleet's process-test harness: an emulator process, ``recorder worker`` processes, the queue.

Shared by tests/test_fleet_processes.py, tests/test_fleet_retries.py and
bench/bench_fleet.py. Each scripted meeting says unique words, so every stored
word can be traced to the one moment it was said; :func:`check_takeover` holds a
taken-over meeting to "every word outside what nobody received stored once".
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, LiteralString

import pytest

from recorder.fleet.takeover import is_takeover
from recorder.transport.script import ExpectedWord, MeetingScript
from storage.db import upgrade_database
from storage.records import Meeting
from storage.store import TranscriptStore
from tests.support.processes import Proc, clean_env, start
from tests.support.timing import TIMEOUT

__all__ = [
    "HEARTBEAT_S",
    "STALL_S",
    "Accounting",
    "Fleet",
    "check_takeover",
    "expected",
    "fleet",
    "meeting_script",
    "no_traceback",
    "words_of",
]

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
        self,
        capacity: int = 4,
        *,
        heartbeat_s: float = HEARTBEAT_S,
        stall_s: float = STALL_S,
        db_url: str | None = None,
    ) -> Proc:
        worker = await start(
            self.tmp_path,
            "worker",
            f"--db={db_url or self.db_url}",
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

    async def query(self, statement: LiteralString) -> list[dict[str, Any]]:
        """Run ``statement`` on the queue's database; its rows, as dicts."""
        import psycopg
        from psycopg.rows import dict_row

        async with await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, row_factory=dict_row
        ) as connection:
            cursor = await connection.execute(statement)
            return list(await cursor.fetchall())

    async def rows(self) -> list[dict[str, Any]]:
        return await self.query("SELECT *, now() AS now FROM recordings ORDER BY id")

    async def wait_rows(
        self, predicate: Any, within: float, *, check: Any = None
    ) -> list[dict[str, Any]]:
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
    async_url = (await emulator.wait_line("async:", 6 * TIMEOUT)).split(": ", 1)[1]
    # Every worker keeps audio in the same directory (XDG_DATA_HOME), as workers on one
    # machine do, and repairs through the emulator's async API.
    env = clean_env(
        tmp_path,
        ASSEMBLYAI_API_KEY="test-key",
        RECORDER_STT_URL=stt_url,
        RECORDER_ASYNC_URL=async_url,
    )
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


async def words_of(db_url: str, meeting_id: int) -> tuple[Counter[str], Meeting]:
    async with await TranscriptStore.open(db_url) as store:
        meeting = await store.get_meeting(meeting_id)
    # A word cut by a takeover or hand-back is heard as an unintelligible fragment
    # ("[speech 0.1 s]"): not a word of the script, and not counted.
    words = Counter(
        w.text.strip(".") for t in meeting.turns for w in t.words if not w.text.startswith("[")
    )
    return words, meeting


def expected(script: dict[str, Any]) -> list[ExpectedWord]:
    from recorder.transport.script import parse_script

    parsed: MeetingScript = parse_script(script)
    return [dataclasses.replace(w, text=w.text.strip(".")) for w in parsed.expected_words()]


@dataclass
class Accounting:
    """Words of one taken-over meeting: said, stored live, repaired, lost in the gap."""

    said: int = 0
    live: int = 0
    repaired: int = 0
    lost: int = 0
    not_received: int = 0

    def add(self, other: Accounting) -> None:
        for name in ("said", "live", "repaired", "lost", "not_received"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def check_takeover(script: dict[str, Any], words: Counter[str], meeting: Meeting) -> Accounting:
    """Every word outside the stretches nobody received is stored exactly once.

    A takeover leaves, per participant, ``lost`` gaps (nobody received the audio)
    and gaps of kept audio the previous worker had not transcribed, which must be
    repaired by the meeting's end. The meeting is ``partial`` if anything was lost.
    """
    takeover = [g for g in meeting.gaps if is_takeover(g)]
    lost_gaps = [g for g in takeover if g.state == "lost"]
    assert all(g.state == "repaired" for g in takeover if g not in lost_gaps), takeover
    assert meeting.summary.status == ("partial" if lost_gaps else "completed"), meeting.gaps
    source = {w.text.strip("."): t.source for t in meeting.turns for w in t.words}
    count = Accounting()
    assert max(words.values(), default=1) == 1, [w for w, n in words.items() if n > 1]
    assert set(words) <= {w.text for w in expected(script)}
    for word in expected(script):
        unheard = any(
            g.uid == word.uid and word.start_ms < g.to_ms and word.end_ms > g.from_ms
            for g in lost_gaps
        )
        count.said += 1
        count.not_received += unheard
        if word.text not in words:
            assert unheard, f"{word} missing outside the takeover's lost gaps {lost_gaps}"
            count.lost += 1
        elif source[word.text] == "repaired":
            count.repaired += 1
        else:
            count.live += 1
    return count


def no_traceback(fleet: Fleet) -> None:
    for path in fleet.tmp_path.glob("worker-*.err"):
        text = path.read_text()
        assert "Traceback" not in text, text
