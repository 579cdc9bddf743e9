"""The fleet's commands and pieces without worker processes: enqueue, list, stop, cancel, refuse.

Worker processes, takeovers and drains are in tests/test_fleet_processes.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from recorder.app import RecordingOptions, record
from recorder.cli import cli
from recorder.config import Config
from recorder.emulator.streaming.server import StreamingEmulator
from recorder.fleet.shift import ShiftedTransport
from recorder.transport.replay import ReplayTransport
from recorder.transport.script import parse_script
from storage.db import upgrade_database
from storage.store import TranscriptStore

SCRIPT: dict[str, Any] = {
    "channel": "standup",
    "participants": [{"uid": 1, "name": "Ann"}],
    "events": [
        {"at": 0.0, "uid": 1, "join": True},
        {"at": 0.2, "uid": 1, "say": "alpha bravo charlie."},
        {"at": 2.0, "uid": 1, "say": "delta echo foxtrot."},
        {"at": 4.0, "uid": 1, "say": "golf hotel india."},
    ],
    "end": 6.0,
}


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


async def ainvoke(*args: str) -> tuple[int, str, str]:
    """Run a command from an async test (the command runs its own event loop)."""
    return await asyncio.to_thread(invoke, *args)


def test_worker_on_sqlite_is_one_clear_line(tmp_path: Path) -> None:
    code, out, err = invoke("worker", f"--db=sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    assert code == 1 and not out
    assert err.startswith("error: recorder worker needs PostgreSQL")
    assert "SQLite" in err and "postgresql+asyncpg://" in err and "recorder db upgrade" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_worker_durations_take_units(tmp_path: Path) -> None:
    db = f"--db=sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    # Parsed: the next complaint is the database.
    durations = ("--heartbeat=500ms", "--stall-timeout=10s", "--drain-timeout=2m")
    code, _, err = invoke("worker", *durations, "--webhook-retry=1m30s", db)
    assert code == 1 and "needs PostgreSQL" in err
    for option, problem in [
        ("--stall-timeout=nan", "is not a duration"),
        ("--heartbeat=10ms", "too short"),
        ("--drain-timeout=2d", "is not a duration"),
        ("--webhook-retry=2h", "too long"),
    ]:
        code, _, err = invoke("worker", option, db)
        assert code == 2 and problem in err and "Traceback" not in err, (option, err)


@pytest.mark.parametrize("command", [["record", "--channel", "c"], ["jobs"], ["stop", "1"]])
def test_every_fleet_command_refuses_sqlite(tmp_path: Path, command: list[str]) -> None:
    code, _, err = invoke(*command, f"--db=sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    assert code == 1 and "needs PostgreSQL" in err


def test_conninfo_keeps_the_schema() -> None:
    from recorder.fleet.connect import fleet_database

    database = fleet_database(
        "postgresql+asyncpg://rec:s3cret@db.example:6543/notes?search_path=team_a"
    )
    conninfo = database.conninfo
    for part in ("host=db.example", "port=6543", "user=rec", "dbname=notes", "search_path=team_a"):
        assert part in conninfo
    assert "s3cret" not in database.shown


@pytest.mark.postgres
async def test_fleet_commands_before_the_upgrade_say_so(postgres_url: str) -> None:
    code, _, err = await ainvoke("jobs", f"--db={postgres_url}")
    assert code == 1 and "no fleet tables yet" in err and "recorder db upgrade" in err


@pytest.mark.postgres
async def test_record_jobs_stop_cancel(postgres_url: str, tmp_path: Path) -> None:
    await upgrade_database(postgres_url)
    script = tmp_path / "m.json"
    script.write_text(json.dumps(SCRIPT))  # noqa: ASYNC240 - a few bytes
    db = f"--db={postgres_url}"
    code, out, err = await ainvoke(
        "record", "--channel", "standup", f"--transport=replay:{script}", db
    )
    assert code == 0, err
    first = int(out.strip())
    assert "queued" in err
    # One waiting recording per channel (procrastinate's queueing lock).
    code, _, err = await ainvoke("record", "--channel", "standup", db)
    assert code == 2 and "already has a recording waiting" in err
    code, out, err = await ainvoke("record", "--channel", "later", "--at", "+10m", "--json", db)
    assert code == 0, err
    later: dict[str, Any] = json.loads(out)
    assert later["status"] == "scheduled" and later["transport"] == "agora"
    code, out, _ = await ainvoke("jobs", "--json", db)
    listed = {row["id"]: row for row in map(json.loads, out.splitlines())}
    assert listed[first]["status"] == "queued" and listed[first]["channel"] == "standup"
    assert listed[first]["transport"] == f"replay:{script.resolve()}"
    assert listed[first]["worker_host"] is None and listed[first]["wait_s"] >= 0
    code, out, _ = await ainvoke("jobs", db)
    assert code == 0 and "standup" in out and "WAIT" in out
    code, _, err = await ainvoke("stop", str(first), db)
    assert code == 2 and f"recorder cancel {first}" in err
    code, out, _ = await ainvoke("cancel", str(first), db)
    assert code == 0 and "cancelled" in out
    code, _, err = await ainvoke("cancel", str(first), db)
    assert code == 0 and "already cancelled" in err
    code, _, err = await ainvoke("stop", "999", db)
    assert code == 1 and "no recording 999" in err
    code, out, _ = await ainvoke("jobs", "--status", "cancelled", "--json", db)
    (row,) = map(json.loads, out.splitlines())
    assert row["id"] == first and row["reason"] == "cancelled before it started"
    # The channel is free again once its waiting recording is cancelled.
    code, _, err = await ainvoke("record", "--channel", "standup", db)
    assert code == 0, err


def test_record_refuses_a_missing_replay_file(tmp_path: Path) -> None:
    code, _, err = invoke(
        "record",
        "--channel",
        "c",
        "--transport=replay:nope.json",
        "--db=postgresql+asyncpg://u@127.0.0.1:1/db",
    )
    assert code == 1 and "does not exist" in err


def test_record_refuses_a_bad_time() -> None:
    code, _, err = invoke(
        "record", "--channel", "c", "--at", "tomorrowish", "--db=postgresql+asyncpg://u@h/db"
    )
    assert code == 1 and "--at 'tomorrowish' is not a time" in err


async def _record(
    data: dict[str, Any], tmp_path: Path, **options: Any
) -> tuple[Any, Any, ReplayTransport]:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    script = parse_script(data)
    start_ms = options.pop("start_ms", 0.0)
    shift_ms = options.pop("shift_ms", 0.0)
    transport: Any = ReplayTransport(script, speed=4.0, start_ms=start_ms)
    if shift_ms:
        transport = ShiftedTransport(transport, shift_ms)
    async with (
        StreamingEmulator(realtime_factor=12).serve() as server,
        await TranscriptStore.open(db_url, auto_migrate=True) as store,
    ):
        report = await record(
            Config(database_url=db_url, assemblyai_api_key="k", stt_url=server.url),
            transport,
            options=RecordingOptions(sessions_per_minute=600, realtime_factor=8, **options),
            store=store,
        )
        meeting = await store.get_meeting(report.meeting_id)
    return report, meeting, transport


async def test_a_channel_nobody_joins_ends_completed_after_the_empty_timeout(
    tmp_path: Path,
) -> None:
    nobody = {"channel": "void", "events": [{"at": 50.0, "uid": 1, "join": True}], "end": 60}
    report, meeting, transport = await _record(nobody, tmp_path, empty_timeout_s=0.5)
    assert report.end_reason == "empty" and report.turns == 0 and report.participants == 0
    assert meeting.summary.status == "completed"
    assert transport.clock_ms() < 50_000  # it did not wait for the late joiner


async def test_everyone_leaving_ends_the_recording(tmp_path: Path) -> None:
    data = {**SCRIPT, "events": [*SCRIPT["events"][:2], {"at": 1.5, "uid": 1, "leave": True}]}
    data["end"] = 120.0
    report, meeting, _ = await _record(data, tmp_path, empty_timeout_s=1.0)
    assert report.end_reason == "empty" and report.participants == 1
    assert [t.text for t in meeting.turns] == ["alpha bravo charlie."]


async def test_a_replay_started_late_plays_only_what_is_left(tmp_path: Path) -> None:
    report, meeting, _ = await _record(SCRIPT, tmp_path, start_ms=1900.0)
    texts = [t.text for t in meeting.turns]
    assert texts == ["delta echo foxtrot.", "golf hotel india."]
    assert meeting.turns[0].start_ms >= 2000  # on the meeting's own clock
    assert report.participants == 1  # present from the first frame


async def test_a_recording_continues_its_meeting(tmp_path: Path) -> None:
    first, _, _ = await _record({**SCRIPT, "end": 2.0}, tmp_path)
    again, meeting, _ = await _record(
        SCRIPT, tmp_path, start_ms=1900.0, meeting_id=first.meeting_id
    )
    assert again.meeting_id == first.meeting_id
    assert [t.text for t in meeting.turns] == [
        "alpha bravo charlie.",
        "delta echo foxtrot.",
        "golf hotel india.",
    ]
    assert meeting.summary.status == "completed"


def test_retry_decisions() -> None:
    from procrastinate.jobs import Job

    from recorder.errors import JoinError, SttConnectionError, SttRejected
    from recorder.fleet.job import is_permanent
    from recorder.fleet.queue import MAX_ATTEMPTS, HandBack, RecordRetry, Transient

    def job(attempts: int) -> Job:
        return Job(id=1, queue="recordings", lock=None, queueing_lock=None,
                   task_name="recorder.record", attempts=attempts)  # fmt: skip

    strategy = RecordRetry()
    handed = strategy.get_retry_decision(exception=HandBack(), job=job(9))
    assert handed is not None and handed.retry_at is not None  # at once, however often
    passing = Transient(SttConnectionError("unreachable"))
    waits = []
    for attempts in range(MAX_ATTEMPTS):
        decision = strategy.get_retry_decision(exception=passing, job=job(attempts))
        waits.append(None if decision is None else decision.retry_at)
    assert all(w is not None for w in waits[:-1]) and waits[-1] is None
    assert waits[0] < waits[1] < waits[2]  # type: ignore[operator]  # backoff grows
    assert strategy.get_retry_decision(exception=ValueError("bug"), job=job(0)) is None
    assert is_permanent(SttRejected("bad key", code=1008))
    assert is_permanent(JoinError("token rejected"))
    assert not is_permanent(SttConnectionError("unreachable"))


async def test_a_live_channel_rejoined_keeps_the_meetings_clock(tmp_path: Path) -> None:
    report, meeting, transport = await _record(SCRIPT, tmp_path, shift_ms=60_000.0)
    assert [t.text for t in meeting.turns][0] == "alpha bravo charlie."
    assert all(t.start_ms >= 60_000 for t in meeting.turns)
    assert meeting.turns[0].start_ms < 60_500
    assert transport.clock_ms() >= 66_000 and report.duration_s >= 66


@pytest.mark.postgres
async def test_record_keeps_joins_options_for_the_worker(postgres_url: str, tmp_path: Path) -> None:
    from recorder.fleet.connect import fleet_database
    from recorder.fleet.queue import make_app
    from recorder.fleet.recordings import Recordings
    from recorder.recap.settings import RecapSettings

    await upgrade_database(postgres_url)
    names = tmp_path / "names.txt"
    names.write_text("101=Alice\n")  # noqa: ASYNC240 - a few bytes
    code, out, err = await ainvoke(
        "record", "--channel", "board", "--recap", "--recap-every", "10m",
        "--keyterms", "Kubernetes, Alice", f"--speaker-names={names}",
        "--max-duration", "3600", "--empty-timeout", "30", "--notes", f"--db={postgres_url}",
    )  # fmt: skip
    assert code == 0, err
    app = make_app(fleet_database(postgres_url))
    await app.open_async()
    try:
        row = await Recordings(app.connector).get(int(out))  # type: ignore[arg-type]
    finally:
        await app.close_async()
    assert row is not None
    options = row.options
    assert options["names"] == {"101": "Alice"} and options["keyterms"] == ["Kubernetes", "Alice"]
    assert options["max_duration_s"] == 3600 and options["empty_timeout_s"] == 30
    assert options["notes"] is True
    recap = RecapSettings(**options["recap"])
    assert recap.every_s == 600


def test_an_unreachable_database_is_one_line_at_once() -> None:
    code, _, err = invoke("jobs", "--db=postgresql+asyncpg://u:s3cret@127.0.0.1:1/db")
    assert code == 1 and err.startswith("error: cannot reach the fleet's database")
    assert "s3cret" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.postgres
async def test_a_takeover_stores_what_it_missed_as_gaps(postgres_url: str, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from recorder.fleet.takeover import (
        Outage,
        is_takeover,
        store_newcomer_gaps,
        store_takeover_gaps,
    )
    from storage.audio import add_segment, finish_segment
    from storage.gaps import list_gaps, store_transcribed_turns
    from storage.records import TurnRecord, Word

    await upgrade_database(postgres_url)
    t0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    async with await TranscriptStore.open(postgres_url) as store:

        async def meeting_as_the_dead_worker_left_it() -> int:
            meeting = await store.start_meeting("c", 0, t0)
            for uid in (1, 2, 3, 7):
                await store.record_participant(meeting, uid, t0, presence="joined")
            await store.record_participant(meeting, 3, t0, presence="left")
            words = (Word("alpha", 3500, 4000, 0.9),)
            turn = TurnRecord(meeting, 1, 0, 0, 3500, 4000, "alpha", words)
            await store_transcribed_turns(
                store, meeting, 1, [turn], transcript_id="t", transcribed_at=t0, audio_seconds=1
            )
            # uid 1 and 2: raw files the killed worker was writing (uid 2's lagging behind);
            # uid 3 and 7: finished (3 left, 7 muted, say).
            for uid, length_ms in ((1, 5000), (2, 2000)):
                path = tmp_path / f"m{meeting}-{uid}.pcm"
                path.write_bytes(bytes(length_ms * 32))  # noqa: ASYNC240 - a few bytes
                await add_segment(store, meeting, uid, start_ms=0, sample_rate_hz=16000,
                                  format="pcm_s16le", path=str(path))  # fmt: skip
            for uid, length_ms in ((3, 2000), (7, 1000)):
                done = await add_segment(store, meeting, uid, start_ms=0, sample_rate_hz=16000,
                                         format="flac", path="gone.flac")  # fmt: skip
                await finish_segment(store, done, duration_ms=length_ms, size=1, sha256=None,
                                     format="flac", path="gone.flac")  # fmt: skip
            return meeting

        def spans(gaps: list[Any]) -> list[tuple[int, int, int, str]]:
            return [(g.uid, g.from_ms, g.to_ms, g.state) for g in gaps if is_takeover(g)]

        killed = await meeting_as_the_dead_worker_left_it()
        outage = Outage(from_ms=5000, to_ms=9000, handed_back=False)
        gaps = await store_takeover_gaps(store, killed, outage)
        assert gaps.known == {1, 2, 3, 7} and (gaps.to_repair, gaps.lost) == (4, 3)
        assert sorted(spans(await list_gaps(store, killed))) == [
            (1, 4000, 5000, "open"),  # kept audio after the last stored word: repair it
            (1, 5000, 9000, "lost"),  # nobody received this
            (2, 0, 2000, "open"),
            (2, 2000, 9000, "lost"),  # audio flowing: lost from where its file ends
            (3, 0, 2000, "open"),  # had left before the outage: nothing lost
            (7, 0, 1000, "open"),
            (7, 3000, 9000, "lost"),  # sent nothing lately: lost from the last sign of life
        ]
        shown = {g.cause for g in await list_gaps(store, killed)}
        assert any("nobody received the audio" in cause for cause in shown), shown
        # Participants first seen at the rejoin may have spoken during the outage.
        for uid, seen_ms in ((4, 7000), (5, 9500), (6, 20_000)):
            await store.record_participant(killed, uid, t0 + timedelta(milliseconds=seen_ms))
        assert await store_newcomer_gaps(store, killed, outage, gaps.known) == 2
        assert [s for s in sorted(spans(await list_gaps(store, killed))) if s[0] in (4, 5, 6)] == [
            (4, 7000, 9000, "lost"),  # joined during the outage (a replay says when)
            (5, 5000, 9000, "lost"),  # reported at the rejoin: since the outage began
        ]
        # A worker that handed the recording back transcribed what it heard itself.
        drained = await meeting_as_the_dead_worker_left_it()
        await store_takeover_gaps(store, drained, Outage(5000, 9000, handed_back=True))
        assert sorted(spans(await list_gaps(store, drained))) == [
            (1, 5000, 9000, "lost"),
            (2, 2000, 9000, "lost"),
            (7, 3000, 9000, "lost"),
        ]


@pytest.mark.postgres
async def test_resuming_a_meeting_while_another_recorder_closes_it_does_not_deadlock(
    postgres_url: str,
) -> None:
    """A takeover resumes the dead worker's meeting as another recorder, starting, marks it
    abandoned: the second takes the meeting's row, then the events' advisory lock; so must
    the first, or each waits for the other."""
    from datetime import UTC, datetime

    import psycopg

    from recorder.fleet.connect import fleet_database
    from storage.events import _LOCK_KEY

    await upgrade_database(postgres_url)
    async with await TranscriptStore.open(postgres_url) as store:
        meeting = await store.start_meeting("c", 0, datetime.now(UTC))
        conninfo = fleet_database(postgres_url).conninfo
        async with await psycopg.AsyncConnection.connect(conninfo) as closer:
            # The closer's transaction: the meeting's row first (as marking it abandoned does).
            await closer.execute(
                "UPDATE meetings SET heartbeat_at = now() WHERE id = %s", (meeting,)
            )
            resuming = asyncio.create_task(store.resume_meeting(meeting))
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as watch:
                for _ in range(1000):  # until the resume waits for the closer (its row)
                    cursor = await watch.execute(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE %s = ANY(pg_blocking_pids(pid))",
                        (closer.info.backend_pid,),
                    )
                    row = await cursor.fetchone()
                    if (row and row[0]) or resuming.done():
                        break
                    await asyncio.sleep(0.01)
            # Then the events' lock: free, because the resume has not taken it yet.
            await asyncio.wait_for(
                closer.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_KEY, meeting)), 5
            )
            await closer.commit()
        await asyncio.wait_for(resuming, 10)
        summary = (await store.get_meeting(meeting, with_turns=False)).summary
        assert summary.status == "recording"
