"""Read-only SQL that stays read-only and bounded, on PostgreSQL (the reader role) and SQLite."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from recorder.cli import cli
from recorder.errors import ReadOnlyViolation, StorageError
from recorder.service.app import create_app
from storage.bounded import READER_ROLE, ensure_reader, reader_status, run_bounded_query
from storage.db import create_engine, upgrade_database
from storage.store import TranscriptStore
from storage.tokens import create_token
from tests.support.service import seed_meeting, serving
from tests.support.timing import TIMEOUT

RECURSIVE = "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT n FROM t"


@pytest.fixture
async def reader_db(postgres_url: str) -> AsyncIterator[str]:
    await upgrade_database(postgres_url)
    assert await ensure_reader(postgres_url) is None
    store = await TranscriptStore.open(postgres_url)
    try:
        await seed_meeting(store, turns=[(101, 0, 1000, "hello"), (102, 1000, 2000, "world")])
    finally:
        await store.close()
    yield postgres_url


async def _count_large_objects(url: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return int(
                await connection.scalar(text("SELECT count(*) FROM pg_largeobject_metadata"))
            )
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_reads_work_with_names_and_order(reader_db: str) -> None:
    result = await run_bounded_query(
        reader_db,
        "SELECT uid, text, 1 AS one, 2 AS one FROM turns "
        "JOIN participants p ON p.id = participant_id ORDER BY start_ms",
    )
    assert result.columns == ("uid", "text", "one", "one")
    assert result.rows == ((101, "hello", 1, 2), (102, "world", 1, 2))
    assert not result.truncated


@pytest.mark.postgres
async def test_an_endless_recursive_cte_stops_at_the_row_limit(reader_db: str) -> None:
    result = await run_bounded_query(reader_db, RECURSIVE, max_rows=50, timeout_s=5)
    assert len(result.rows) == 50 and result.truncated


@pytest.mark.postgres
@pytest.mark.parametrize(
    "sql",
    ["SELECT pg_sleep(30)", "SELECT count(*) FROM (" + RECURSIVE + ") AS endless"],
)
async def test_long_statements_time_out(reader_db: str, sql: str) -> None:
    began = time.monotonic()
    with pytest.raises(StorageError, match=r"longer than 0\.5 s"):
        await run_bounded_query(reader_db, sql, timeout_s=0.5)
    assert time.monotonic() - began < TIMEOUT


@pytest.mark.postgres
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT lo_export(lo_from_bytea(0, 'x'::bytea), '/tmp/recorder-lo-export')",
        "SELECT pg_read_file('/etc/hostname')",
        "SELECT pg_read_binary_file('/etc/hostname')",
        "SELECT * FROM pg_ls_dir('.')",
        "SELECT * FROM api_tokens",
        "SELECT * FROM audit_log",
        "SELECT set_config('role', 'postgres', false)",
        "SELECT set_config('session_authorization', 'postgres', false)",
        "SELECT query_to_xml('select pg_read_file(''/etc/hostname'')', true, true, '')",
        "DELETE FROM meetings RETURNING id",
        "WITH gone AS (DELETE FROM turns RETURNING id) SELECT count(*) FROM gone",
        "SELECT nextval('meetings_id_seq')",
    ],
)
async def test_writes_files_secrets_and_escapes_are_refused(reader_db: str, sql: str) -> None:
    with pytest.raises((ReadOnlyViolation, StorageError)) as caught:
        await run_bounded_query(reader_db, sql, timeout_s=5)
    assert not await asyncio.to_thread(os.path.exists, "/tmp/recorder-lo-export")
    assert "Traceback" not in str(caught.value)
    store = await TranscriptStore.open(reader_db)
    try:
        assert (await store.list_meetings())[0].turn_count == 2
    finally:
        await store.close()


@pytest.mark.postgres
async def test_a_large_object_never_outlives_the_statement(reader_db: str) -> None:
    before = await _count_large_objects(reader_db)
    try:
        result = await run_bounded_query(reader_db, "SELECT lo_from_bytea(0, 'payload'::bytea)")
        assert len(result.rows) == 1
    except (ReadOnlyViolation, StorageError):
        pass  # refused outright is fine too
    assert await _count_large_objects(reader_db) == before


@pytest.mark.postgres
async def test_without_the_role_the_api_refuses_and_doctor_warns(postgres_url: str) -> None:
    await upgrade_database(postgres_url)
    problem = await reader_status(postgres_url)
    assert problem is not None and READER_ROLE in problem
    with pytest.raises(StorageError, match="not set up"):
        await run_bounded_query(postgres_url, "SELECT 1", require_role=True)
    # The CLI falls back to the connection's own read-only transaction.
    assert (await run_bounded_query(postgres_url, "SELECT 1")).rows == ((1,),)
    doctor = await asyncio.to_thread(CliRunner().invoke, cli, ["doctor", "--db", postgres_url])
    assert "warn  read-only sql" in doctor.output
    upgraded = await asyncio.to_thread(
        CliRunner().invoke, cli, ["db", "upgrade", "--db", postgres_url]
    )
    assert upgraded.exit_code == 0 and "warning" not in upgraded.output
    assert await reader_status(postgres_url) is None
    doctor = await asyncio.to_thread(CliRunner().invoke, cli, ["doctor", "--db", postgres_url])
    assert "ok    read-only sql" in doctor.output


@pytest.mark.postgres
async def test_cli_sql_has_a_timeout(reader_db: str) -> None:
    result = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        ["sql", "SELECT pg_sleep(20)", "--timeout", "0.5", "--db", reader_db],
    )
    assert result.exit_code == 1
    assert result.output.strip() == "error: the query ran longer than 0.5 s and was stopped"


async def test_sqlite_recursive_cte_is_bounded(sqlite_url: str) -> None:
    await upgrade_database(sqlite_url)
    result = await run_bounded_query(sqlite_url, RECURSIVE, max_rows=10)
    assert len(result.rows) == 10 and result.truncated
    with pytest.raises(StorageError, match="longer than"):
        await run_bounded_query(
            sqlite_url, "SELECT count(*) FROM (" + RECURSIVE + ")", timeout_s=0.3
        )


@pytest.mark.postgres
async def test_api_sql_is_read_only_and_bounded(reader_db: str) -> None:
    engine = create_engine(reader_db)
    try:
        _, token = await create_token(engine, "sql")
    finally:
        await engine.dispose()
    async with serving(create_app(reader_db, mcp=False)) as base_url:
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as client:
            ok = await client.post("/v1/sql", json={"sql": "SELECT count(*) AS n FROM turns"})
            assert ok.json() == {"columns": ["n"], "rows": [[2]], "truncated": False}
            refused = await client.post("/v1/sql", json={"sql": "DELETE FROM meetings"})
            assert refused.status_code in (400, 403) and "error" in refused.json()
            secret = await client.post("/v1/sql", json={"sql": "SELECT token_hash FROM api_tokens"})
            assert secret.status_code == 403
            slow = await client.post(
                "/v1/sql", json={"sql": "SELECT pg_sleep(10)", "timeout_s": 0.3}
            )
            assert slow.status_code == 400 and "longer than" in slow.json()["error"]["message"]
            many = await client.post("/v1/sql", json={"sql": RECURSIVE, "max_rows": 3})
            assert many.json()["rows"] == [[1], [2], [3]] and many.json()["truncated"]
