"""Search ignores case and accents the same way on SQLite and PostgreSQL.

The same queries run on both backends (the ``store`` fixture) against the same
turns, and must find the same turns with the same words marked.
"""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage.records import TurnRecord
from storage.search import fold_accents, fold_table, make_snippet, parse_query
from storage.store import TranscriptStore

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]

TEXTS = {
    "late": "Sorry I'm late, the train was délayed.",
    "cafe": "Let's meet at the CAFÉ near the Zürich office.",
    "french": "Ça marche, on se voit à l'École.",
    "upper": "THE DEPLOY WENT FINE",
    "plain": "the deploy was delayed again",
    "nfd": "decomposed cafe\u0301 text",
    "polish": "Łódź office and Straße",
}

# query -> keys of TEXTS it must find, identical on both databases.
QUERIES = {
    "delayed": {"late", "plain"},
    "DÉLAYED": {"late", "plain"},
    "Délayed": {"late", "plain"},
    "cafe": {"cafe", "nfd"},
    "Café": {"cafe", "nfd"},
    "zurich": {"cafe"},
    "ZÜRICH": {"cafe"},
    "ca": {"french"},
    "ecole": {"french"},
    "deploy": {"upper", "plain"},
    "dépl*": {"upper", "plain"},
    '"train was delayed"': {"late"},
    '"the cafe"': {"cafe"},
    # Letters unicode61 does not fold stay distinct on both.
    "lodz": set(),
    "łódź": {"polish"},
}


async def _seed(store: TranscriptStore) -> None:
    meeting = await store.start_meeting("accents", 9999, T0)
    session = await store.open_stream_session(meeting, 101, T0)
    keys = list(TEXTS)
    await store.upsert_turns(
        [
            TurnRecord(meeting, 101, session, order, order * 1000, order * 1000 + 900, TEXTS[key])
            for order, key in enumerate(keys)
        ]
    )


@pytest.mark.parametrize(("query", "expected"), list(QUERIES.items()), ids=list(QUERIES))
async def test_same_matches_on_both_databases(
    store: TranscriptStore, query: str, expected: set[str]
) -> None:
    await _seed(store)
    hits = await store.search(query, limit=50)
    by_text = {text: key for key, text in TEXTS.items()}
    assert {by_text[hit.text] for hit in hits} == expected
    for hit in hits:
        assert "«" in hit.snippet and "»" in hit.snippet, hit.snippet


async def test_snippets_mark_the_accented_word(store: TranscriptStore) -> None:
    await _seed(store)
    (hit,) = await store.search("train delayed")
    assert "«délayed»" in hit.snippet and "«train»" in hit.snippet


def test_fold_accents() -> None:
    assert fold_accents("Délayed ÇA Zürich École") == "Delayed CA Zurich Ecole"
    assert fold_accents("cafe\u0301") == "cafe"
    assert fold_accents("Łódź") == "Łodz"  # Ł is not a letter plus a mark


def test_make_snippet_windows_and_marks() -> None:
    text = " ".join(f"w{i}" for i in range(60)) + " Délayed " + " ".join(f"x{i}" for i in range(60))
    snippet = make_snippet(text, parse_query("delayed"))
    assert snippet.startswith("… ") and snippet.endswith(" …")
    assert "«Délayed»" in snippet
    assert make_snippet("no match here", parse_query("zzz")) == "no match here"
    assert make_snippet("Budgeting now", parse_query("budg*")) == "«Budgeting» now"


def test_migration_folds_exactly_what_search_folds() -> None:
    path = ROOT / "migrations" / "versions" / "0006_transcript_view.py"
    spec = importlib.util.spec_from_file_location("migration_0006", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    sources, targets, deleted = fold_table()
    assert migration.FOLD_FROM == sources
    assert migration.FOLD_TO == targets
    assert migration.COMBINING_MARKS == deleted
    # The guard that skips translate() lets every foldable character through.
    import re

    guard = re.compile(migration._FOLDABLE)
    assert all(guard.match(char) for char in sources + deleted)
    assert not guard.search("plain ASCII, 中文 and 🚀")


def test_fold_table_matches_sqlite_unicode61() -> None:
    # The table is what FTS5's unicode61 (remove_diacritics 2) does, letter by letter.
    import sqlite3

    sources, targets, _ = fold_table()
    connection = sqlite3.connect(":memory:")
    connection.execute(
        "CREATE VIRTUAL TABLE t USING fts5(x, tokenize='unicode61 remove_diacritics 2')"
    )
    connection.executemany("INSERT INTO t VALUES (?)", [(f"q{char}q",) for char in sources])
    for char, base in zip(sources, targets, strict=True):
        rows = connection.execute("SELECT x FROM t WHERE t MATCH ?", (f'"q{base}q"',)).fetchall()
        assert (f"q{char}q",) in rows, char


async def test_upgrading_a_database_with_turns_folds_them_too(db_url: str) -> None:
    # Turns written before migration 0006 are found the new way after it, and back.
    from sqlalchemy import text

    from storage.db import create_engine, downgrade_database, upgrade_database

    await upgrade_database(db_url, "0001_initial")
    engine = create_engine(db_url)
    try:
        async with engine.begin() as connection:
            for statement in (
                "INSERT INTO meetings (id, channel, started_at, status, bot_uid) "
                "VALUES (1, 'old', '2026-11-01 09:00:00+00:00', 'completed', 9999)",
                "INSERT INTO participants (id, meeting_id, uid, first_seen, last_seen) "
                "VALUES (1, 1, 101, '2026-11-01 09:00:00+00:00', '2026-11-01 09:00:00+00:00')",
                "INSERT INTO stream_sessions (id, meeting_id, participant_id, opened_at, "
                "audio_seconds) VALUES (1, 1, 1, '2026-11-01 09:00:00+00:00', 0)",
                "INSERT INTO turns (meeting_id, participant_id, stream_session_id, turn_order, "
                "start_ms, end_ms, text, words) "
                "VALUES (1, 1, 1, 0, 0, 900, 'the train was Délayed', '[]')",
            ):
                await connection.execute(text(statement))
    finally:
        await engine.dispose()
    await upgrade_database(db_url)
    store = await TranscriptStore.open(db_url)
    try:
        (hit,) = await store.search("delayed")
        assert "«Délayed»" in hit.snippet
        assert await store.count_matches("DELAYED") == 1
    finally:
        await store.close()
    assert await downgrade_database(db_url, "0001_initial") == "0001_initial"
    await upgrade_database(db_url)
