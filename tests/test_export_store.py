"""Exports from a real database (SQLite and PostgreSQL): round trip, the CLI, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import srt
from click.testing import CliRunner

from recorder.cli import cli
from recorder.export.files import _BATCH, export_meeting, meeting_header
from tests.support.export_data import golden_meeting, migrate, populate, store_meeting
from tests.support.json_reader import meeting_from_json


async def test_json_says_exactly_what_the_store_has(store, db_url: str, tmp_path: Path) -> None:
    meeting_id = await store_meeting(store, golden_meeting())
    output = tmp_path / "meeting.json"
    assert await export_meeting(db_url, meeting_id, output) == "json"
    exported = meeting_from_json(json.loads(output.read_text(encoding="utf-8")))
    stored = await store.get_meeting(meeting_id)
    assert exported == stored
    assert len(stored.turns) == 9 and stored.notes[0].kind == "recap"


async def test_header_has_no_turns_but_everything_else(store) -> None:
    meeting_id = await store_meeting(store, golden_meeting())
    header = await meeting_header(store, meeting_id)
    full = await store.get_meeting(meeting_id)
    assert header.turns == ()
    assert (header.summary, header.participants, header.notes) == (
        full.summary,
        full.participants,
        full.notes,
    )


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_export_format_follows_the_file_extension(db_url: str, tmp_path: Path) -> None:
    (meeting_id,) = populate(db_url)
    for fmt in ("html", "md", "json", "txt", "srt", "vtt"):
        output = tmp_path / f"out.{fmt}"
        result = _invoke("export", str(meeting_id), "-o", str(output), "--db", db_url)
        assert result.exit_code == 0, result.output
        assert f"({fmt})" in result.output
        assert output.stat().st_size > 500
    assert (tmp_path / "out.html").read_text(encoding="utf-8").startswith("<!doctype html>")
    assert len(list(srt.parse((tmp_path / "out.srt").read_text(encoding="utf-8")))) >= 9
    assert not list(tmp_path.glob(".*.part")), "no temporary files left behind"


def test_export_defaults_to_markdown_on_stdout(db_url: str) -> None:
    populate(db_url)
    result = _invoke("export", "latest", "--db", db_url)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("# design-review ✨ · meeting ")
    assert "`00:00:01` Good morning, everyone." in result.output


def test_export_latest_of_a_channel_and_explicit_format(db_url: str) -> None:
    populate(db_url, meetings=3)
    result = _invoke(
        "export", "latest", "--channel", "design-review ✨", "-f", "json", "--db", db_url
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["meeting"]["channel"] == "design-review ✨"
    result = _invoke("export", "latest", "-f", "txt", "--db", db_url)
    assert result.output.startswith("finance-2 · meeting ")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["export", "99"], 1, "error: no meeting with id 99; run 'recorder meetings'"),
        (["export", "nope"], 1, "error: 'nope' is not a meeting"),
        (["export", "latest", "-f", "pdf"], 2, "error: unknown export format 'pdf'"),
        (["export", "latest", "-o", "x.docx"], 2, "error: cannot tell the format from 'x.docx'"),
        (["export", "latest", "--channel", "nope"], 1, "error: no meetings recorded in channel"),
    ],
)
def test_export_errors_are_one_line(
    db_url: str, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    populate(db_url)
    result = CliRunner().invoke(cli, [*args, "--db", db_url])
    assert result.exit_code == code, result.output
    assert result.output.startswith(message), result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output


def test_export_of_an_empty_database_says_so(db_url: str, tmp_path: Path) -> None:
    migrate(db_url)
    output = tmp_path / "x.html"
    result = CliRunner().invoke(cli, ["export", "latest", "-o", str(output), "--db", db_url])
    assert result.exit_code == 1
    assert result.output.startswith("error: no meetings recorded yet")
    assert not output.exists()


def test_export_without_a_database_file_says_how_to_create_it(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing.db'}"
    result = CliRunner().invoke(cli, ["export", "latest", "--db", url])
    assert result.exit_code == 1
    assert "recorder db upgrade" in result.output


def test_export_to_an_unwritable_place_is_a_clear_error(db_url: str, tmp_path: Path) -> None:
    populate(db_url)
    output = tmp_path / "no" / "such" / "dir" / "x.md"
    result = CliRunner().invoke(cli, ["export", "latest", "-o", str(output), "--db", db_url])
    assert result.exit_code == 1
    assert result.output.startswith("error: cannot write to ")


async def test_export_streams_when_the_store_can_give_the_header_alone(store, db_url) -> None:
    """With ``get_meeting(with_turns=False)`` and ``iter_turns(with_words=False)`` the export
    reads the header alone and streams turns without word timings (what HTML needs)."""
    from dataclasses import replace

    from recorder.export.exporter import iter_export
    from recorder.export.files import load_for_export

    calls: list[tuple[str, dict]] = []

    class Streaming:
        # The real store, plus the two optional keywords the exporter asks for.
        async def get_meeting(self, meeting_id: int, *, with_turns: bool = True):
            calls.append(("get_meeting", {"with_turns": with_turns}))
            meeting = await store.get_meeting(meeting_id)
            return meeting if with_turns else replace(meeting, turns=())

        async def iter_turns(self, meeting_id: int, *, batch: int = 1000, with_words: bool = True):
            calls.append(("iter_turns", {"batch": batch, "with_words": with_words}))
            async for turn in store.iter_turns(meeting_id, batch=batch):
                yield turn if with_words else replace(turn, words=())

    meeting_id = await store_meeting(store, golden_meeting())
    streamed = {}
    for fmt, needs_words in (("html", False), ("json", True)):
        header, turns = await load_for_export(Streaming(), meeting_id, with_words=needs_words)
        assert header.turns == ()
        streamed[fmt] = "".join([p async for p in iter_export(header, turns, fmt)])
    assert calls == [
        ("get_meeting", {"with_turns": False}),
        ("iter_turns", {"batch": _BATCH, "with_words": False}),
        ("get_meeting", {"with_turns": False}),
        ("iter_turns", {"batch": _BATCH, "with_words": True}),
    ]
    whole, turns = await load_for_export(store, meeting_id)
    for fmt, text in streamed.items():
        assert text == "".join([p async for p in iter_export(whole, turns, fmt)])
        whole, turns = await load_for_export(store, meeting_id)


def test_exported_files_get_the_usual_permissions(db_url: str, tmp_path: Path) -> None:
    import os
    import stat

    populate(db_url)
    output = tmp_path / "shared.html"
    _invoke("export", "latest", "-o", str(output), "--db", db_url)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(output.stat().st_mode) == 0o666 & ~umask


def test_export_to_a_closed_pipe_stops_quietly(sqlite_url: str, tmp_path: Path) -> None:
    import asyncio
    import os
    import subprocess
    import sys

    from storage.db import upgrade_database
    from storage.store import TranscriptStore
    from tests.support.export_data import make_meeting, make_turn

    turns = [make_turn(i, 101, i * 1000, i * 1000 + 900, f"turn {i} " * 20) for i in range(1, 3000)]

    async def fill() -> None:
        await upgrade_database(sqlite_url)
        async with await TranscriptStore.open(sqlite_url) as store:
            await store_meeting(store, make_meeting([(101, "A")], turns))

    asyncio.run(fill())
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECORDER_")}
    with subprocess.Popen(
        [sys.executable, "-m", "recorder", "export", "latest", "-f", "txt", "--db", sqlite_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.read(1000)  # like `| head -c 1000`
        process.stdout.close()
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=60) == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
