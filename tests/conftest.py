"""Shared fixtures: a clean environment, and real databases for the storage tests.

``db_url`` and ``store`` run each test on a fresh SQLite file and on
PostgreSQL. PostgreSQL comes from ``RECORDER_TEST_POSTGRES_URL`` (e.g.
``postgresql+asyncpg://postgres@127.0.0.1:5432/test``); each test gets a
schema of its own (``recorder_test_<run>_<n>``, reached through the URL's
``search_path``), dropped afterwards, so runs never collide. Without the
variable the PostgreSQL cases are skipped, unless ``RECORDER_REQUIRE_POSTGRES=1``
(CI), which makes them fail.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

# Read before the autouse fixture below clears RECORDER_* for every test.
POSTGRES_URL = os.environ.get("RECORDER_TEST_POSTGRES_URL", "")
REQUIRE_POSTGRES = os.environ.get("RECORDER_REQUIRE_POSTGRES", "") == "1"
_RUN_ID = secrets.token_hex(3)
_SCHEMA_NUMBERS = itertools.count()
_CLEARED_PREFIXES = ("RECORDER_", "ASSEMBLYAI_", "AGORA_")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's real settings or keys (httpx ``clean_environ``)."""
    for name in list(os.environ):
        if name.startswith(_CLEARED_PREFIXES):
            monkeypatch.delenv(name, raising=False)


def require_postgres() -> str:
    """The PostgreSQL URL to test against, or skip (fail when it is required)."""
    if POSTGRES_URL:
        return POSTGRES_URL
    reason = (
        "RECORDER_TEST_POSTGRES_URL is not set; set it to e.g. "
        "postgresql+asyncpg://postgres@127.0.0.1:5432/test to run the PostgreSQL cases"
    )
    if REQUIRE_POSTGRES:
        pytest.fail(f"RECORDER_REQUIRE_POSTGRES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file URL in the test's temporary directory (not created yet)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'recorder.db'}"


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A URL to an empty schema of its own on the test PostgreSQL server."""
    from sqlalchemy import text

    from storage.db import create_engine

    base = require_postgres()
    schema = f"recorder_test_{_RUN_ID}_{next(_SCHEMA_NUMBERS)}"
    admin = create_engine(base)
    try:
        async with admin.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield (
            make_url(base)
            .update_query_dict({"search_path": schema})
            .render_as_string(hide_password=False)
        )
    finally:
        async with admin.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """Which database a parametrised storage test runs on."""
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty database on each backend: a SQLite file, or a fresh PostgreSQL schema."""
    if backend == "sqlite":
        yield request.getfixturevalue("sqlite_url")
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[object]:
    """A TranscriptStore on a database migrated to head."""
    from storage.db import upgrade_database
    from storage.store import TranscriptStore

    await upgrade_database(db_url)
    opened = await TranscriptStore.open(db_url)
    try:
        yield opened
    finally:
        await opened.close()


from agora_standin.plugin import agora_wrapper_site, native_world, world  # noqa: E402, F401
