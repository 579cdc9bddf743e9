"""Full-text search and read-only SQL on both databases, with hostile input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.errors import ReadOnlyViolation, StorageError
from storage.records import TurnRecord
from storage.search import Term, parse_query, to_fts5_match, to_tsquery
from storage.store import TranscriptStore

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

LINES = [
    (101, "We need to cut the budget before Friday."),
    (202, "The budget review is tomorrow, and the budgeting tool is broken."),
    (101, "Let's meet near the café after lunch."),
    (202, "AND then OR maybe NOT: the (parenthesis) problem"),
    (303, "Shipping the e-mail feature next sprint"),
]

# FTS5 and tsquery syntax, and things that are neither: none may raise.
HOSTILE = [
    '"',
    '"budget',
    'budget"',
    '"""',
    "*",
    "budget *",
    "-",
    "-budget",
    "budget -review",
    "NEAR",
    "NEAR(budget review)",
    "budget NEAR/2 review",
    "AND",
    "OR",
    "NOT",
    "budget AND",
    "AND budget OR",
    "(",
    ")",
    "(budget",
    ":",
    "text:budget",
    "text : budget",
    "{text}: budget",
    "^budget",
    "budget^",
    "+budget",
    "budget & review",
    "budget | review",
    "!budget",
    "budget:*",
    "'budget'",
    "budget'",
    "\\",
    "budget\\",
    "<->",
    "budget <-> review",
    "%",
    "_",
    "",
    "   ",
    "\x00",
    "budget\x00review",
    "🙂",
    "日本語",
    "a" * 500,
    " ".join(["budget"] * 100),
]

# Syntax around one word: still finds that word.
FIND_BUDGET = {
    '"budget',
    'budget"',
    "budget *",
    "-budget",
    "(budget",
    "^budget",
    "budget^",
    "+budget",
    "!budget",
    "budget:*",
    "'budget'",
    "budget'",
    "budget\\",
    " ".join(["budget"] * 100),
}


async def seed(store: TranscriptStore) -> dict[str, int]:
    ids = {}
    for channel, offset in (("standup", 0), ("retro", 2)):
        meeting = await store.start_meeting(channel, 9999, T0 + timedelta(days=offset))
        ids[channel] = meeting
        sessions = {}
        for uid in (101, 202, 303):
            sessions[uid] = await store.open_stream_session(meeting, uid, T0)
        await store.set_display_name(meeting, 101, "Alice")
        await store.upsert_turns(
            [
                TurnRecord(
                    meeting, uid, sessions[uid], order, order * 1000, order * 1000 + 900, text
                )
                for order, (uid, text) in enumerate(LINES)
            ]
        )
    return ids


def test_is_dense_estimate() -> None:
    from storage.search import is_dense_estimate

    assert is_dense_estimate([{"Plan": {"Plan Rows": 1_000_000}}], window=10)
    assert not is_dense_estimate('[{"Plan": {"Plan Rows": 100}}]', window=10)
    assert not is_dense_estimate("not a plan", window=10)


def test_parse_query() -> None:
    assert parse_query("budget") == (Term(("budget",)),)
    assert parse_query('"budget review" budg*') == (
        Term(("budget", "review")),
        Term(("budg",), is_prefix=True),
    )
    assert parse_query('"half open') == (Term(("half",)), Term(("open",)))
    assert parse_query("text:budget e-mail") == (Term(("text", "budget")), Term(("e", "mail")))
    assert parse_query("NEAR(a b)") == (Term(("NEAR", "a")), Term(("b",)))
    assert parse_query('* - : ^ ( ) "" \x00') == ()
    assert parse_query('"cut the"*') == (Term(("cut", "the"), is_prefix=True),)
    assert len(parse_query("w " * 100)) == 16


@given(st.text(max_size=80))
@settings(max_examples=200, deadline=None)
def test_rendered_queries_only_quote_words(text: str) -> None:
    terms = parse_query(text)
    fts = to_fts5_match(terms)
    tsq = to_tsquery(terms)
    for term in terms:
        for word in term.words:
            assert word.isalnum()
    # Nothing but quoted words, operators we chose, and spaces.
    stripped = fts
    for term in terms:
        stripped = stripped.replace('"' + " ".join(term.words) + '"', "", 1)
    assert set(stripped) <= set(" AND*")
    assert "''" not in tsq


async def test_search_finds_words(store: TranscriptStore) -> None:
    ids = await seed(store)
    hits = await store.search("budget")
    assert {h.text for h in hits} == {LINES[0][1], LINES[1][1]}
    assert all("«budget»" in h.snippet.lower() for h in hits)
    assert hits == sorted(hits, key=lambda h: -h.rank)
    assert {h.meeting_id for h in hits} == set(ids.values())
    hit = hits[0]
    assert hit.channel in ids and hit.meeting_started_at.tzinfo is not None
    assert hit.end_ms > hit.start_ms


async def test_search_prefix_phrase_and_case(store: TranscriptStore) -> None:
    await seed(store)
    assert {h.text for h in await store.search("budg*")} == {LINES[0][1], LINES[1][1]}
    assert {h.text for h in await store.search("BUDGETING")} == {LINES[1][1]}
    assert {h.text for h in await store.search('"budget review"')} == {LINES[1][1]}
    assert await store.search('"review budget"') == []
    assert {h.text for h in await store.search("e-mail")} == {LINES[4][1]}
    assert {h.text for h in await store.search("near café")} == {LINES[2][1]}
    assert {h.text for h in await store.search("AND (parenthesis)")} == {LINES[3][1]}


async def test_search_filters(store: TranscriptStore) -> None:
    ids = await seed(store)
    only_retro = await store.search("budget", channel="retro")
    assert {h.meeting_id for h in only_retro} == {ids["retro"]} and len(only_retro) == 2
    assert {h.text for h in await store.search("budget", speaker="alice")} == {LINES[0][1]}
    assert {h.text for h in await store.search("budget", speaker="202")} == {LINES[1][1]}
    assert await store.search("budget", speaker="nobody") == []
    recent = await store.search("budget", since=T0 + timedelta(days=1))
    assert {h.meeting_id for h in recent} == {ids["retro"]}
    assert len(await store.search("the", limit=3)) == 3
    assert await store.search("budget", limit=0) == []


async def test_search_never_fails_on_query_syntax(store: TranscriptStore) -> None:
    await seed(store)
    for query in HOSTILE:
        hits = await store.search(query)
        if query in FIND_BUDGET:
            assert {LINES[0][1], LINES[1][1]} <= {h.text for h in hits}, query


async def test_search_folds_diacritics(store: TranscriptStore) -> None:
    await seed(store)
    assert {h.text for h in await store.search("café")} == {LINES[2][1]}
    # Both databases fold accents (tests/test_search_accents.py has the details).
    assert {h.text for h in await store.search("cafe")} == {LINES[2][1]}


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(query=st.text(max_size=40))
async def test_search_accepts_any_text(store: TranscriptStore, query: str) -> None:
    await store.search(query)


async def test_deleted_and_updated_turns_leave_the_index(store: TranscriptStore) -> None:
    await seed(store)
    from sqlalchemy import delete

    from storage.models import TurnRow

    async with store._engine.begin() as connection:
        await connection.execute(delete(TurnRow).where(TurnRow.text.like("%Friday%")))
    assert {h.text for h in await store.search("budget")} == {LINES[1][1]}


# -- read-only SQL -----------------------------------------------------------


async def test_run_query_reads(store: TranscriptStore) -> None:
    await seed(store)
    result = await store.run_query(
        "SELECT channel, count(*) AS n FROM meetings GROUP BY channel ORDER BY channel"
    )
    assert result.columns == ("channel", "n")
    assert [tuple(r) for r in result.rows] == [("retro", 1), ("standup", 1)]
    assert not result.truncated
    limited = await store.run_query("SELECT id FROM turns ORDER BY id", max_rows=3)
    assert len(limited.rows) == 3 and limited.truncated


WRITES = [
    "DELETE FROM turns",
    "UPDATE turns SET text = 'gone'",
    "INSERT INTO meetings (channel, started_at, status, bot_uid) "
    "VALUES ('x', '2026-01-01', 'recording', 1)",
    "DROP TABLE turns",
    "CREATE TABLE evil (x integer)",
    "ALTER TABLE turns ADD COLUMN evil integer",
    "CREATE INDEX evil ON turns (text)",
]
SQLITE_WRITES = [
    "PRAGMA writable_schema = ON",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA query_only = OFF",
    "PRAGMA user_version = 5",
    "REINDEX",
    "VACUUM",
    "CREATE TEMP TABLE evil (x integer)",
]
POSTGRES_WRITES = [
    "TRUNCATE turns",
    "SELECT nextval('turns_id_seq')",
    "CREATE TEMP TABLE evil (x integer)",
    "SET TRANSACTION READ WRITE",
    "GRANT ALL ON turns TO PUBLIC",
    "COPY (SELECT 1) TO '/tmp/recorder-test-copy.txt'",
    "/* hidden */ -- too\n copy turns to stdout",
]


async def _snapshot(store: TranscriptStore) -> tuple:
    turns = await store.run_query("SELECT id, text FROM turns ORDER BY id")
    meetings = await store.run_query("SELECT id, channel FROM meetings ORDER BY id")
    return turns.rows, meetings.rows


async def test_run_query_refuses_writes(
    store: TranscriptStore, backend: str, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    await seed(store)
    before = await _snapshot(store)
    extra = SQLITE_WRITES if backend == "sqlite" else POSTGRES_WRITES
    for sql in WRITES + extra:
        with pytest.raises(ReadOnlyViolation) as caught:
            await store.run_query(sql)
        assert "\n" not in str(caught.value) and "read-only" in str(caught.value), sql
    if backend == "sqlite":
        for sql in (
            f"ATTACH DATABASE '{tmp_path / 'evil.db'}' AS evil",
            f"VACUUM INTO '{tmp_path / 'copy.db'}'",
        ):
            with pytest.raises(ReadOnlyViolation):
                await store.run_query(sql)
        assert list(elsewhere.iterdir()) == []  # not even an empty file
    assert await _snapshot(store) == before
    # And the store itself still writes.
    await store.start_meeting("after", 1, T0)


async def test_run_query_reports_other_errors_in_one_line(store: TranscriptStore) -> None:
    for sql in ("SELEC 1", "SELECT * FROM nope", "SELECT 1; SELECT 2", ""):
        with pytest.raises(StorageError) as caught:
            await store.run_query(sql)
        assert not isinstance(caught.value, ReadOnlyViolation)
        assert str(caught.value).startswith("the query failed") and "\n" not in str(caught.value)


async def test_run_query_allows_reading_pragmas_and_search(
    store: TranscriptStore, backend: str
) -> None:
    await seed(store)
    if backend == "sqlite":
        info = await store.run_query("PRAGMA table_info(turns)")
        assert "name" in info.columns
        found = await store.run_query("SELECT rowid FROM turns_fts WHERE turns_fts MATCH 'budget'")
    else:
        found = await store.run_query(
            "SELECT id FROM turns WHERE text_search @@ to_tsquery('simple', 'budget')"
        )
    assert len(found.rows) == 4


# On SQLite nothing but the transcript tables may be read (PostgreSQL: the reader
# role's grants, tests/test_service_sql.py), however the table is reached.
SQLITE_OFF_LIMITS = [
    ("SELECT token_hash FROM api_tokens", "api_tokens"),
    ("SELECT count(*) FROM api_tokens", "api_tokens"),
    ('SELECT * FROM main."API_TOKENS"', "api_tokens"),
    ("SELECT 1 WHERE EXISTS (SELECT 1 FROM api_tokens)", "api_tokens"),
    ("WITH t AS (SELECT * FROM webhook_endpoints) SELECT count(*) FROM t", "webhook_endpoints"),
    ("SELECT id FROM turns UNION SELECT id FROM audit_log", "audit_log"),
    ("SELECT * FROM meeting_events", "meeting_events"),
    ("SELECT * FROM gaps", "gaps"),
    ("SELECT * FROM dbstat", "dbstat"),
]


async def test_sqlite_sql_reads_only_the_transcript_tables(sqlite_url: str) -> None:
    from storage.db import create_engine, upgrade_database
    from storage.tokens import create_token

    await upgrade_database(sqlite_url)
    engine = create_engine(sqlite_url)
    try:
        await create_token(engine, "secret")
    finally:
        await engine.dispose()
    store = await TranscriptStore.open(sqlite_url)
    try:
        await seed(store)
        for sql, table in SQLITE_OFF_LIMITS:
            with pytest.raises(ReadOnlyViolation) as caught:
                await store.run_query(sql)
            assert str(caught.value) == (
                "read-only SQL may read only recorder's transcript tables (meetings, "
                f"participants, stream_sessions, turns, notes, transcript), not {table}"
            ), sql
        # What stays readable: the transcripts, their search index, the schema.
        for sql in (
            "SELECT count(*) FROM transcript",
            "SELECT (SELECT count(*) FROM meetings), (SELECT count(*) FROM participants), "
            "(SELECT count(*) FROM stream_sessions), (SELECT count(*) FROM notes)",
            "SELECT rowid FROM turns_fts WHERE turns_fts MATCH 'budget'",
            "SELECT name FROM sqlite_master WHERE type = 'table'",
            "SELECT name FROM pragma_table_info('turns')",
            "SELECT value FROM json_each('[1, 2]')",
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 3) "
            "SELECT count(*) FROM n",
        ):
            assert (await store.run_query(sql)).rows, sql
    finally:
        await store.close()


async def test_run_query_times_out(store: TranscriptStore, backend: str) -> None:
    slow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    with pytest.raises(StorageError, match="longer than"):
        await store.run_query(slow, timeout_s=0.3)


async def test_ranking_window_covers_the_most_recent_matches(store: TranscriptStore) -> None:
    from storage.search import build_search

    meeting = await store.start_meeting("c", 1, T0)
    session = await store.open_stream_session(meeting, 7, T0)
    texts = [
        "budget budget budget",
        "the budget and many other words here",
        "a budget with plenty of other words too",
    ]
    await store.upsert_turns(
        [
            TurnRecord(meeting, 7, session, i, i * 1000, i * 1000 + 500, t)
            for i, t in enumerate(texts)
        ]
    )
    terms = parse_query("budget")

    async def ranked(window: int, is_dense: bool) -> list[str]:
        statement = build_search(store.dialect, terms, window=window, is_dense=is_dense)
        async with store._engine.connect() as connection:
            return [row.text for row in await connection.execute(statement)]

    for is_dense in (True, False):  # both PostgreSQL strategies (SQLite ignores it)
        everything = await ranked(100, is_dense)
        assert everything[0] == texts[0] and len(everything) == 3
        recent = await ranked(2, is_dense)
        assert sorted(recent) == sorted(texts[1:])


# Letters and digits of any script are words on both databases. (PostgreSQL's
# parser treats other number symbols such as "²" or "½" as separators, so
# those are only searchable on SQLite.)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    word=st.text(
        alphabet=st.characters(categories=["Lu", "Ll", "Lt", "Lm", "Lo", "Nd", "Nl"]),
        min_size=1,
        max_size=12,
    )
)
async def test_any_stored_word_is_found(store: TranscriptStore, word: str) -> None:
    meeting = await store.start_meeting("words", 1, T0)
    session = await store.open_stream_session(meeting, 7, T0)
    text = f"alpha {word} omega"
    await store.upsert_turns([TurnRecord(meeting, 7, session, 0, 0, 500, text)])
    hits = await store.search(word, channel="words")
    assert any(h.meeting_id == meeting for h in hits), (word, [h.text for h in hits])
