"""``recorder meetings``, ``show``, ``search``, ``speakers``, ``sql`` on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner

from recorder.cli import cli
from recorder.cli.reading import parse_clock, parse_since
from recorder.errors import UsageError
from tests.support.export_data import make_meeting, make_turn, migrate, populate, store_meeting


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


def _columns(text: str) -> int:
    # Terminal columns: CJK characters take two.
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _ok(*args: str) -> str:
    result = _run(*args)
    assert result.exit_code == 0, result.output
    return result.output


# -- meetings -------------------------------------------------------------------------


def test_meetings_lists_newest_first(db_url: str) -> None:
    ids = populate(db_url, meetings=2)
    lines = _ok("meetings", "--db", db_url).splitlines()
    assert lines[0].split() == [
        "ID",
        "CHANNEL",
        "STARTED",
        "DURATION",
        "PEOPLE",
        "TURNS",
        "STATUS",
        "BILLED",
        "SPEECH",
        "RATIO",
        "COST",
        "GAPS",
    ]
    assert len(lines) == 3
    golden = next(line for line in lines if "design-review" in line)
    assert golden.split()[0] == str(ids[0])
    assert "2026-11-20 09:00 UTC" in golden and "2 h 00 min" in golden
    assert "3 9 completed" in " ".join(golden.split())


def test_meetings_json_and_filters(db_url: str) -> None:
    populate(db_url, meetings=3)
    rows = json.loads(_ok("meetings", "--json", "--channel", "finance-1", "--db", db_url))
    assert [r["channel"] for r in rows] == ["finance-1"]
    assert list(rows[0]) == [
        "id",
        "channel",
        "bot_uid",
        "status",
        "started_at",
        "ended_at",
        "duration_ms",
        "participant_count",
        "turn_count",
        "billed_ms",
        "speech_ms",
        "billed_speech_ratio",
        "price_per_hour",
        "estimated_cost_usd",
        "open_gaps",
    ]
    assert rows[0]["started_at"] == "2026-11-20T09:00:00Z"
    assert rows[0]["duration_ms"] == 3_600_000
    assert len(json.loads(_ok("meetings", "--json", "--since", "2026-11-20", "--db", db_url))) == 3
    # Nothing matches: not an error. A note on stderr, [] with --json, exit 0.
    result = _run("meetings", "--since", "2026-11-21T00:00", "--db", db_url)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr.startswith("no meetings since 2026-11-21T00:00")
    result = _run("meetings", "--since", "2026-11-21T00:00", "--json", "--db", db_url)
    assert (result.exit_code, result.stdout) == (0, "[]\n")


def test_meetings_json_matches_the_export_meeting_object(db_url: str, tmp_path: Path) -> None:
    populate(db_url)
    (listed,) = json.loads(_ok("meetings", "--json", "--db", db_url))
    out = tmp_path / "m.json"
    _ok("export", "latest", "-o", str(out), "--db", db_url)
    exported = json.loads(out.read_text(encoding="utf-8").split("\n{", 1)[0])["meeting"]
    # Every field both print has the same name and value.
    shared = set(listed) & set(exported)
    assert {"id", "duration_ms", "participant_count", "turn_count", "billed_ms"} <= shared
    assert {key: listed[key] for key in shared} == {key: exported[key] for key in shared}


def test_meetings_csv(db_url: str) -> None:
    populate(db_url)
    lines = _ok("meetings", "--csv", "--db", db_url).splitlines()
    assert lines[0] == (
        "id,channel,bot_uid,status,started_at,ended_at,duration_ms,participant_count,turn_count,"
        "billed_ms,speech_ms,billed_speech_ratio,price_per_hour,estimated_cost_usd,open_gaps"
    )
    assert len(lines) == 2 and ",7205000," in lines[1]


def test_meetings_say_what_streaming_cost(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.export_data import golden_meeting

    populate(db_url)
    golden = golden_meeting()
    billed_ms = round(sum(s.billed_seconds for s in golden.stream_sessions) * 1000)
    speech_ms = sum(t.end_ms - t.start_ms for t in golden.turns)
    monkeypatch.setenv("RECORDER_PRICE_PER_HOUR", "0.5")
    [row] = json.loads(_ok("meetings", "--json", "--db", db_url))
    assert row["billed_ms"] == billed_ms > 0
    assert row["speech_ms"] == speech_ms > 0
    assert row["billed_speech_ratio"] == pytest.approx(billed_ms / speech_ms, abs=1e-3)
    assert row["price_per_hour"] == 0.5
    assert row["estimated_cost_usd"] == pytest.approx(billed_ms / 3_600_000 * 0.5)
    table = _ok("meetings", "--db", db_url).splitlines()[1]
    assert f"{billed_ms / speech_ms:.2f}x" in table
    assert f"${billed_ms / 3_600_000 * 0.5:.3f}" in table
    title = _ok("show", "latest", "--db", db_url).splitlines()[0]
    assert f"({billed_ms / speech_ms:.2f}x), about $" in title


def test_a_bad_price_is_one_clear_line(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    populate(db_url)
    monkeypatch.setenv("RECORDER_PRICE_PER_HOUR", "cheap")
    result = _run("meetings", "--db", db_url)
    assert result.exit_code != 0
    assert result.output.startswith("error: RECORDER_PRICE_PER_HOUR must be a price")
    assert "Traceback" not in result.output


# -- show -----------------------------------------------------------------------------


def test_show_prints_the_transcript(db_url: str) -> None:
    populate(db_url)
    output = _ok("show", "latest", "--db", db_url)
    lines = output.splitlines()
    assert lines[0].startswith("design-review ✨ · meeting ")
    assert lines[1] == "[00:00:01] Alice Martín: Good morning, everyone. Let's get started."
    assert "[00:00:22] 李雷:" in lines
    last_turn = lines.index(next(line for line in lines if line.startswith("[01:59:45]")))
    assert lines[last_turn].startswith("[01:59:45] Alice Martín: That's all.")
    # The recap note is printed where it was made, its lines indented.
    assert lines[last_turn + 1 :] == [
        "[01:59:55] (recap) Launch is on track for Friday.",
        "    Rollout: 50% then 100%.",
        "",
        "    Next sync: next week.",
    ]
    assert "\x1b[" not in output  # no colours when stdout is not a terminal


def test_show_json_and_csv_list_turns(db_url: str) -> None:
    populate(db_url)
    turns = json.loads(_ok("show", "latest", "--speaker", "303", "--json", "--db", db_url))
    assert len(turns) == 2
    assert list(turns[0]) == [
        "id",
        "meeting_id",
        "uid",
        "speaker",
        "display_name",
        "start_ms",
        "end_ms",
        "text",
    ]
    assert turns[0]["speaker"] == "303" and turns[0]["display_name"] is None
    lines = _ok("show", "latest", "--speaker", "303", "--csv", "--db", db_url).splitlines()
    assert lines[0] == "id,meeting_id,uid,speaker,display_name,start_ms,end_ms,text"
    assert len(lines) == 3
    result = _run("show", "latest", "--from", "3:00:00", "--json", "--db", db_url)
    assert (result.exit_code, result.stdout) == (0, "[]\n")
    assert result.stderr.startswith("no turns in meeting")


def test_show_filters_by_speaker_and_time(db_url: str) -> None:
    populate(db_url)
    lines = _ok("show", "latest", "--speaker", "alice martín", "--from", "0:05", "--db", db_url)
    turns = lines.splitlines()[1:]
    assert [t[:10] for t in turns] == ["[00:00:05]", "[00:00:28]", "[01:59:45]"]
    turns = _ok("show", "latest", "--speaker", "303", "--db", db_url).splitlines()[1:]
    assert len(turns) == 2 and all(" 303: " in t for t in turns)
    turns = _ok("show", "latest", "--from", "00:10", "--to", "1:00:00", "--db", db_url)
    assert [t[:10] for t in turns.splitlines()[1:]] == [
        "[00:00:10]",
        "[00:00:18]",
        "[00:00:22]",
        "[00:00:23]",
        "[00:00:28]",
        "[01:00:00]",
    ]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["show", "42"], 1, "error: no meeting with id 42"),
        (["show", "latest", "--speaker", "Nobody"], 1, "error: no participant 'Nobody'"),
        (["show", "latest", "--from", "ten"], 2, "error: --from must be a time like 12:30"),
        (["show", "latest", "--from", "5:00", "--to", "1:00"], 2, "error: --to (1:00) is before"),
        (["meetings", "--since", "yesterday"], 2, "error: --since must be a date"),
        (["meetings", "--since", "2026-02-30"], 2, "error: --since must be a date"),
        (["search", "x", "--since", "2026/11/20"], 2, "error: --since must be a date"),
        (["speakers", "7777"], 1, "error: no meeting with id 7777"),
        (["speakers", "latest", "--set", "Alice"], 2, "error: --set wants UID=NAME"),
        (["speakers", "latest", "--set", "999=Zed"], 1, "error: uid 999 was not in meeting"),
        (["sql", "SELEC 1"], 1, "error: "),
        (["sql", "SELECT 1", "--json", "--csv"], 2, "error: choose one of --json and --csv"),
    ],
)
def test_errors_are_one_clear_line(db_url: str, args: list[str], code: int, message: str) -> None:
    populate(db_url)
    result = _run(*args, "--db", db_url)
    assert result.exit_code == code, result.output
    assert result.output.startswith(message), result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output


@pytest.mark.parametrize(
    "args",
    [["show", "latest"], ["speakers", "latest"], ["export", "latest"]],
)
def test_latest_on_an_empty_database_is_a_clear_error(db_url: str, args: list[str]) -> None:
    migrate(db_url)
    result = _run(*args, "--db", db_url)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: no meetings recorded yet"), result.output


@pytest.mark.parametrize(
    "args", [["meetings"], ["search", "budget"], ["sql", "SELECT * FROM transcript"]]
)
def test_an_empty_listing_is_not_an_error(db_url: str, args: list[str]) -> None:
    migrate(db_url)
    for extra, stdout in (([], ""), (["--json"], "[]\n"), (["--csv"], None)):
        result = _run(*args, *extra, "--db", db_url)
        assert result.exit_code == 0, result.output
        if args[0] != "sql" and stdout is not None:
            assert result.stdout == stdout
            assert result.stderr.startswith("no meetings recorded yet"), result.stderr
    assert _run(*args, "--json", "--db", db_url).stdout == "[]\n"
    # CSV: the header row alone.
    header = _run(*args, "--csv", "--db", db_url).stdout.splitlines()
    assert len(header) == 1 and header[0].count(",") >= 6


def test_record_keys_are_the_documented_fields(db_url: str) -> None:
    from recorder.cli.reading import (
        COST_FIELDS,
        HIT_FIELDS,
        MEETING_FIELDS,
        PARTICIPANT_FIELDS,
        TURN_FIELDS,
    )

    populate(db_url)
    for args, fields in (
        (["meetings"], (*MEETING_FIELDS, *COST_FIELDS, "open_gaps")),
        (["show", "latest"], TURN_FIELDS),
        (["search", "rollout"], HIT_FIELDS),
        (["speakers", "latest"], PARTICIPANT_FIELDS),
    ):
        (first, *_) = json.loads(_ok(*args, "--json", "--db", db_url))
        assert tuple(first) == fields, args
        assert _ok(*args, "--csv", "--db", db_url).splitlines()[0] == ",".join(fields)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    machine = readme.split("### Machine output", 1)[1].split("###", 1)[0]
    for field in HIT_FIELDS:
        assert f"`{field}`" in machine, field


# -- search ---------------------------------------------------------------------------


def test_search_ranks_and_marks_matches(db_url: str) -> None:
    ids = populate(db_url, meetings=3)
    lines = _ok("search", "rollout", "--db", db_url).splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{ids[0]} design-review ✨ 2026-11-20 [00:00:23] 303: ")
    assert "«rollout»" in lines[0]
    result = _run("search", "budget", "--limit", "1", "--db", db_url)
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and "«Budget»" in lines[0]
    every = json.loads(_ok("search", "budget", "--limit", "1000", "--json", "--db", db_url))
    assert len(every) > 1
    assert f"{len(every) - 1} more; use --limit {len(every)} to see them" in result.stderr
    assert "more" not in _run("search", "budget", "--limit", "1000", "--db", db_url).stderr
    assert "more" not in _run("search", "budget", "--limit", str(len(every)), "--db", db_url).stderr
    hits = json.loads(_ok("search", "budget", "--channel", "finance-2", "--json", "--db", db_url))
    assert [h["channel"] for h in hits] == ["finance-2"]
    assert hits[0]["speaker"] == "Dana" and hits[0]["start_ms"] == 1000
    result = _run("search", "rollout", "--speaker", "Alice Martín", "--db", db_url)
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr.startswith("nothing matches 'rollout'")
    result = _run("search", "rollout", "--speaker", "Alice Martín", "--json", "--db", db_url)
    assert (result.exit_code, result.stdout) == (0, "[]\n")
    assert len(_ok("search", "friday", "--speaker", "101", "--db", db_url).splitlines()) == 1


def test_search_highlights_in_colour_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    query = importlib.import_module("recorder.cli.search")

    assert query._highlight("a «b» c", tty=False) == "a «b» c"
    coloured = query._highlight("a «b» c", tty=True)
    assert "«" not in coloured and "\x1b[" in coloured and "b" in coloured


def test_untrusted_text_cannot_drive_the_terminal(db_url: str) -> None:
    migrate(db_url)
    nasty = "pay \x1b]0;owned\x07now \x1b[2J budget"
    meeting = make_meeting([(101, "Eve\x1b[31m")], [make_turn(1, 101, 0, 1000, nasty)])

    async def store_it() -> None:
        from storage.store import TranscriptStore

        async with await TranscriptStore.open(db_url) as store:
            await store_meeting(store, meeting)

    asyncio.run(store_it())
    for args in (["show", "latest"], ["search", "budget"], ["speakers", "latest"]):
        output = _ok(*args, "--db", db_url)
        assert "\x1b" not in output and "\x07" not in output, args


# -- speakers -------------------------------------------------------------------------


def test_speakers_lists_and_names_participants(db_url: str, tmp_path: Path) -> None:
    (meeting_id,) = populate(db_url)
    lines = _ok("speakers", str(meeting_id), "--db", db_url).splitlines()
    assert lines[0].split() == ["UID", "NAME", "TALK", "TIME", "TURNS", "FIRST", "SEEN"]
    assert lines[3].split()[:2] == ["303", "-"]
    result = CliRunner().invoke(
        cli, ["speakers", "latest", "--set", "303=Zoë Q", "--set", "202=", "--db", db_url]
    )
    assert result.exit_code == 0, result.output
    assert "uid 303 is now 'Zoë Q'" in result.output
    assert lines[3].split()[0] == "303"
    # The names are stored: exports and show use them, and uid 202 is back to its uid.
    shown = _ok("show", "latest", "--db", db_url)
    assert "[00:00:18] Zoë Q: Sorry, quick question." in shown
    assert "[00:00:10] 202: " in shown
    output = tmp_path / "x.md"
    _ok("export", "latest", "-o", str(output), "--db", db_url)
    assert "**Zoë Q**" in output.read_text(encoding="utf-8")


# -- sql ------------------------------------------------------------------------------


def test_sql_reads_in_three_shapes(db_url: str) -> None:
    populate(db_url)
    statement = "SELECT uid, display_name FROM participants ORDER BY uid"
    table = _ok("sql", statement, "--db", db_url).splitlines()
    assert table[0].split() == ["uid", "display_name"]
    assert table[1].split() == ["101", "Alice", "Martín"]
    assert table[3].split() == ["303", "NULL"]
    rows = json.loads(_ok("sql", statement, "--json", "--db", db_url))
    assert rows[0] == {"uid": 101, "display_name": "Alice Martín"}
    assert rows[2] == {"uid": 303, "display_name": None}
    csv_text = _ok("sql", statement, "--csv", "--db", db_url)
    assert csv_text.splitlines() == ["uid,display_name", "101,Alice Martín", "202,李雷", "303,"]


def test_sql_table_cuts_long_cells_but_json_does_not(db_url: str) -> None:
    populate(db_url)
    statement = "SELECT text FROM turns WHERE text LIKE '%staging%'"
    table = _ok("sql", statement, "--db", db_url).splitlines()
    assert _columns(table[1]) == 60 and table[1].endswith("…")
    (row,) = json.loads(_ok("sql", statement, "--json", "--db", db_url))
    assert row["text"].endswith("written down in the runbook.")


def test_sql_max_rows_says_it_truncated(db_url: str) -> None:
    populate(db_url)
    result = CliRunner().invoke(
        cli, ["sql", "SELECT id FROM turns ORDER BY id", "--max-rows", "2", "--db", db_url]
    )
    assert result.exit_code == 0
    assert "only the first 2 rows shown" in result.output


WRITES = {
    "sqlite": [
        "DELETE FROM turns",
        "DROP TABLE turns",
        "UPDATE participants SET display_name = 'x'",
        "INSERT INTO notes (meeting_id, kind, text, created_at, spoken) "
        "VALUES (1, 'x', 'y', '2026-01-01', 0)",
        "ATTACH DATABASE 'evil.db' AS evil",
        "PRAGMA writable_schema = 1",
        "PRAGMA journal_mode = DELETE",
        "VACUUM",
        "CREATE TABLE t (x)",
    ],
    "postgres": [
        "DELETE FROM turns",
        "DROP TABLE turns",
        "UPDATE participants SET display_name = 'x'",
        "CREATE TABLE t (x int)",
        "TRUNCATE turns",
        "SET default_transaction_read_only = off; DELETE FROM turns",
        "COMMIT; DELETE FROM turns",
        "ATTACH DATABASE 'evil.db' AS evil",
        "PRAGMA writable_schema = 1",
    ],
}


def test_sql_refuses_every_write_and_changes_nothing(
    db_url: str, backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # so an ATTACH that slipped through would show up here
    populate(db_url)
    count = "SELECT (SELECT count(*) FROM turns) AS t, (SELECT count(*) FROM notes) AS n"
    before = _ok("sql", count, "--json", "--db", db_url)
    names_before = _ok("sql", "SELECT display_name FROM participants", "--db", db_url)
    for statement in WRITES[backend]:
        result = _run("sql", statement, "--db", db_url)
        assert result.exit_code != 0, (statement, result.output)
        assert result.output.startswith("error: "), (statement, result.output)
        assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert _ok("sql", count, "--json", "--db", db_url) == before
    assert _ok("sql", "SELECT display_name FROM participants", "--db", db_url) == names_before
    assert not (tmp_path / "evil.db").exists()
    assert "turns" in _ok("sql", _tables_query(backend), "--db", db_url)


def _tables_query(backend: str) -> str:
    if backend == "sqlite":
        return "SELECT name FROM sqlite_master WHERE type = 'table'"
    return "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"


def test_sql_on_sqlite_cannot_read_token_hashes(sqlite_url: str) -> None:
    from storage.db import create_engine
    from storage.tokens import create_token

    populate(sqlite_url)

    async def make_token() -> None:
        engine = create_engine(sqlite_url)
        try:
            await create_token(engine, "secret")
        finally:
            await engine.dispose()

    asyncio.run(make_token())
    result = _run("sql", "SELECT token_hash FROM api_tokens", "--db", sqlite_url)
    assert result.exit_code == 1
    assert result.output == (
        "error: read-only SQL may read only recorder's transcript tables (meetings, "
        "participants, stream_sessions, turns, notes, transcript), not api_tokens\n"
    )
    assert _ok("sql", "SELECT count(*) AS n FROM transcript", "--json", "--db", sqlite_url)


def test_sql_write_error_names_read_only(db_url: str) -> None:
    populate(db_url)
    result = _run("sql", "DELETE FROM turns", "--db", db_url)
    assert result.exit_code == 1
    assert "read-only" in result.output


# -- parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [("0", 0), ("90", 90_000), ("1:30", 90_000), ("01:02:03", 3_723_000), ("2:00.5", 120_500)],
)
def test_parse_clock(text: str, ms: int) -> None:
    assert parse_clock(text, "--from") == ms


@pytest.mark.parametrize("text", ["", "1:60", "1:99:00", "a:00", "1::2", "-1"])
def test_parse_clock_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_clock(text, "--from")


def test_parse_since_accepts_dates_and_times() -> None:
    assert parse_since("2026-11-20").isoformat() == "2026-11-20T00:00:00+00:00"
    assert parse_since("2026-11-20T09:30").isoformat() == "2026-11-20T09:30:00+00:00"
    assert parse_since("2026-11-20T11:30+02:00").isoformat() == "2026-11-20T09:30:00+00:00"
    with pytest.raises(UsageError, match="--since must be a date"):
        parse_since("20/11/2026")


# -- sql --tables, --schema and the transcript view ----------------------------------


def test_sql_tables_lists_tables_and_the_transcript_view(db_url: str) -> None:
    populate(db_url)
    tables = {t["name"]: t for t in json.loads(_ok("sql", "--tables", "--json", "--db", db_url))}
    assert {"meetings", "participants", "stream_sessions", "turns", "notes", "transcript"} <= set(
        tables
    )
    assert tables["transcript"]["kind"] == "view"
    assert tables["transcript"]["columns"] == [
        "meeting",
        "channel",
        "uid",
        "speaker",
        "start_ms",
        "end_ms",
        "text",
    ]
    # Internal objects stay hidden.
    assert not [name for name in tables if name.startswith(("alembic", "turns_fts", "sqlite"))]
    assert "text_search" not in tables["turns"]["columns"]
    lines = _ok("sql", "--tables", "--db", db_url).splitlines()
    at = lines.index("transcript (view)")
    assert lines[at + 1] == "    meeting, channel, uid, speaker, start_ms, end_ms, text"
    assert "turns (table)" in lines and all(len(line) <= 100 for line in lines)


def test_sql_schema_of_one_table(db_url: str) -> None:
    migrate(db_url)
    columns = json.loads(_ok("sql", "--schema", "TURNS", "--json", "--db", db_url))
    by_name = {c["name"]: c for c in columns}
    assert {"id", "meeting_id", "participant_id", "start_ms", "end_ms", "text"} <= set(by_name)
    assert by_name["text"]["nullable"] is False
    lines = _ok("sql", "--schema", "transcript", "--db", db_url).splitlines()
    assert lines[0].split() == ["COLUMN", "TYPE", "NULL"] and len(lines) == 8
    result = _run("sql", "--schema", "nope", "--db", db_url)
    assert result.exit_code == 1
    assert result.output.startswith("error: no table or view 'nope'; try one of: ")
    result = _run("sql", "SELECT 1", "--tables", "--db", db_url)
    assert result.exit_code == 2 and "give one of SQL, --tables" in result.output
    result = _run("sql", "--db", db_url)
    assert result.exit_code == 2 and "--tables" in result.output


def test_the_transcript_view_answers_who_said_what(db_url: str) -> None:
    (meeting_id,) = populate(db_url)
    rows = json.loads(
        _ok(
            "sql",
            "SELECT speaker, count(*) AS turns FROM transcript GROUP BY speaker ORDER BY speaker",
            "--json",
            "--db",
            db_url,
        )
    )
    # Named participants by name, the unnamed one by uid.
    assert {row["speaker"] for row in rows} == {"Alice Martín", "李雷", "303"}
    first = json.loads(
        _ok(
            "sql",
            f"SELECT * FROM transcript WHERE meeting = {meeting_id} ORDER BY start_ms LIMIT 1",
            "--json",
            "--db",
            db_url,
        )
    )
    # The same turn as `show --json` lists first, in the view's columns.
    turn = json.loads(_ok("show", str(meeting_id), "--json", "--db", db_url))[0]
    assert first == [
        {
            "meeting": meeting_id,
            "channel": "design-review ✨",
            "uid": turn["uid"],
            "speaker": turn["speaker"],
            "start_ms": turn["start_ms"],
            "end_ms": turn["end_ms"],
            "text": turn["text"],
        }
    ]
    assert first[0]["speaker"] == "Alice Martín"


def test_sql_tables_without_a_database_file(tmp_path: Path) -> None:
    result = _run("sql", "--tables", "--db", f"sqlite:///{tmp_path / 'none.db'}")
    assert result.exit_code == 1
    assert result.output.startswith("error: there is no database file at ")


def test_db_info_json(db_url: str) -> None:
    populate(db_url)
    info = json.loads(_ok("db", "info", "--json", "--db", db_url))
    assert info["revision"] == info["head"]
    assert info["meetings"] == 1 and info["turns"] > 0


@pytest.mark.postgres
def test_the_reader_role_may_read_the_transcript_view(postgres_url: str) -> None:
    # On PostgreSQL `recorder sql` runs as the read-only role when it is set up:
    # the view must be among what that role may read, and --tables lists only that.
    from storage.bounded import ensure_reader, run_bounded_query

    populate(postgres_url)
    assert asyncio.run(ensure_reader(postgres_url)) is None
    result = asyncio.run(run_bounded_query(postgres_url, "SELECT count(*) FROM transcript"))
    assert result.rows[0][0] > 0
    rows = json.loads(_ok("sql", "SELECT speaker FROM transcript", "--json", "--db", postgres_url))
    assert rows and {"speaker"} == set(rows[0])
    names = {t["name"] for t in json.loads(_ok("sql", "--tables", "--json", "--db", postgres_url))}
    assert "transcript" in names and not names & {"api_tokens", "audit_log"}
