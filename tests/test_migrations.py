"""Alembic migrations on both databases: up, down, up again, and no drift from the models."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from recorder.errors import MigrationRequired, StorageError
from storage.db import (
    create_engine,
    current_revision,
    downgrade_database,
    head_revision,
    upgrade_database,
)
from storage.models import Base, include_object
from storage.store import TranscriptStore

ROOT = Path(__file__).resolve().parent.parent
TABLES = {"meetings", "participants", "stream_sessions", "turns", "notes"}


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def _diff(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(
                        sync, opts={"include_object": include_object, "compare_type": True}
                    ),
                    Base.metadata,
                )
            )
    finally:
        await engine.dispose()


async def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    head = head_revision()
    assert await upgrade_database(db_url) == head
    assert TABLES <= await _tables(db_url)
    assert await downgrade_database(db_url) is None
    assert not (TABLES & await _tables(db_url))
    leftovers = {name for name in await _tables(db_url) if name.startswith("turns_fts")}
    assert leftovers == set()
    assert await upgrade_database(db_url) == head
    # Upgrading a current database is a no-op.
    assert await upgrade_database(db_url) == head


async def test_autogenerate_against_head_finds_no_difference(db_url: str) -> None:
    await upgrade_database(db_url)
    assert await _diff(db_url) == []


async def test_autogenerate_sees_a_real_difference(db_url: str) -> None:
    # Guards the test above: the comparison does notice a missing index.
    await upgrade_database(db_url)
    engine = create_engine(db_url)
    async with engine.begin() as connection:
        await connection.execute(text("DROP INDEX ix_notes_meeting_id"))
    await engine.dispose()
    diff = await _diff(db_url)
    assert len(diff) == 1 and "ix_notes_meeting_id" in str(diff)


async def test_full_text_search_objects_exist(db_url: str, backend: str) -> None:
    await upgrade_database(db_url)
    engine = create_engine(db_url)
    try:
        async with engine.connect() as connection:
            if backend == "sqlite":
                names = set(
                    (
                        await connection.execute(
                            text("SELECT name FROM sqlite_master WHERE name LIKE 'turns_fts%'")
                        )
                    ).scalars()
                )
                assert {
                    "turns_fts",
                    "turns_fts_after_insert",
                    "turns_fts_after_update",
                    "turns_fts_after_delete",
                } <= names
            else:
                columns = await connection.run_sync(
                    lambda sync: {c["name"] for c in inspect(sync).get_columns("turns")}
                )
                assert "text_search" in columns
    finally:
        await engine.dispose()


async def test_store_refuses_a_database_behind_head(db_url: str) -> None:
    # An existing database that was never migrated (PostgreSQL: an empty schema).
    if db_url.startswith("sqlite"):
        await upgrade_database(db_url)
        await downgrade_database(db_url)
    with pytest.raises(MigrationRequired) as caught:
        await TranscriptStore.open(db_url)
    message = str(caught.value)
    assert "recorder db upgrade --db" in message and head_revision() in message
    if "search_path" in db_url:  # the hint names the schema the user gave
        assert "search_path=" in message
    assert "\n" not in message
    # Opting in migrates it.
    async with await TranscriptStore.open(db_url, auto_migrate=True) as store:
        assert await store.list_meetings() == []


async def test_store_refuses_a_missing_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.db"
    with pytest.raises(MigrationRequired, match="there is no database at .*recorder db upgrade"):
        await TranscriptStore.open(f"sqlite+aiosqlite:///{path}")
    assert not path.exists()


async def test_store_refuses_an_unknown_revision(db_url: str) -> None:
    await upgrade_database(db_url)
    engine = create_engine(db_url)
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = 'from_future'"))
    assert await current_revision(engine) == "from_future"
    await engine.dispose()
    for auto_migrate in (False, True):
        with pytest.raises(StorageError, match="does not know; upgrade recorder"):
            await TranscriptStore.open(db_url, auto_migrate=auto_migrate)
    with pytest.raises(StorageError, match="does not know; upgrade recorder"):
        await upgrade_database(db_url)


async def test_migrations_do_not_need_the_checkout(tmp_path: Path, monkeypatch) -> None:
    # The product builds the alembic config in code; alembic.ini is not read.
    monkeypatch.chdir(tmp_path)
    url = f"sqlite+aiosqlite:///{tmp_path / 'deep' / 'dir' / 'r.db'}"
    assert await upgrade_database(url) == head_revision()


async def test_alembic_command_line_check(db_url: str) -> None:
    # Developers use the alembic CLI with alembic.ini; env.py then runs its own loop.
    await upgrade_database(db_url)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alembic",
        "-c",
        str(ROOT / "alembic.ini"),
        "-x",
        f"db={db_url}",
        "check",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    assert "No new upgrade operations detected" in output.decode()
