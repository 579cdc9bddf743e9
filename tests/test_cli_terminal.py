"""Terminal behaviour of the reading commands, in real processes.

Colours only on a terminal and never with NO_COLOR or --no-color; tables cut to
the terminal's width; a closed pipe ends quietly with exit 0; -v after the
command. Terminals are real pseudo-terminals of a given size.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import unicodedata
from pathlib import Path

import pytest

from recorder.cli.output import format_table, truncate
from recorder.console import plural
from tests.support.export_data import make_meeting, make_turn, migrate, populate, store_meeting

ROOT = Path(__file__).resolve().parents[1]
_TIMEOUT_S = 60


def _env(**extra: str) -> dict[str, str]:
    # Not PYTHONASYNCIODEBUG either (`make test` sets it): its slow-callback warnings
    # would be stderr lines of the command under test.
    dropped = ("NO_COLOR", "COLUMNS", "LINES", "PYTHONASYNCIODEBUG")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _in_terminal(args: list[str], *, columns: int = 100, **env: str) -> tuple[int, str]:
    """Run ``recorder ARGS`` with stdout on a pseudo-terminal ``columns`` wide."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "recorder", *args],
        stdout=follower,
        stderr=subprocess.PIPE,
        env=_env(**env),
        cwd=ROOT,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.stderr is not None
    with process.stderr:
        errors = process.stderr.read().decode()
    code = process.wait(timeout=_TIMEOUT_S)
    assert "Traceback" not in errors, errors
    return code, b"".join(chunks).decode("utf-8").replace("\r\n", "\n")


def _columns(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


@pytest.fixture
def demo_db(sqlite_url: str) -> str:
    populate(sqlite_url)
    return sqlite_url


@pytest.mark.slow  # four processes each
@pytest.mark.parametrize("args", [["show", "latest"], ["search", "rollout"]])
def test_colours_on_a_terminal_unless_no_color(demo_db: str, args: list[str]) -> None:
    code, output = _in_terminal([*args, "--db", demo_db])
    assert code == 0 and "\x1b[" in output
    code, output = _in_terminal([*args, "--db", demo_db], NO_COLOR="1")
    assert code == 0 and "\x1b[" not in output and output.strip()
    code, output = _in_terminal([*args, "--no-color", "--db", demo_db])
    assert code == 0 and "\x1b[" not in output
    code, output = _in_terminal(["--no-color", *args, "--db", demo_db])
    assert code == 0 and "\x1b[" not in output
    if args[0] == "search":
        assert "«rollout»" in output  # without colour the markers stay


def test_no_colours_in_a_pipe(demo_db: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "recorder", "show", "latest", "--db", demo_db],
        capture_output=True,
        env=_env(),
        timeout=_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0 and b"\x1b[" not in done.stdout


def test_tables_fit_the_terminal(sqlite_url: str) -> None:
    migrate(sqlite_url)
    long_channel = "a-very-long-channel-name-" * 6

    async def store_it() -> None:
        from storage.store import TranscriptStore

        meeting = make_meeting(
            [(101, "Alice")], [make_turn(1, 101, 0, 1000, "hi")], channel=long_channel
        )
        async with await TranscriptStore.open(sqlite_url) as store:
            await store_meeting(store, meeting)

    asyncio.run(store_it())
    code, output = _in_terminal(["meetings", "--db", sqlite_url], columns=100)
    lines = output.splitlines()
    assert code == 0 and len(lines) == 2
    assert all(_columns(line) <= 100 for line in lines), lines
    # The widest columns give way; the short ones stay whole.
    assert "a-very-" in lines[1] and "…" in lines[1]
    assert " 1 " in lines[1] and lines[1].rstrip().endswith("$0.450")
    # A pipe gets whole cells up to the cap; --json is never cut.
    done = subprocess.run(
        [sys.executable, "-m", "recorder", "meetings", "--db", sqlite_url],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=_TIMEOUT_S,
        check=False,
    )
    assert long_channel[:50] in done.stdout


def _big_meeting(url: str, turns: int) -> None:
    migrate(url)

    async def store_it() -> None:
        from storage.store import TranscriptStore

        meeting = make_meeting(
            [(101, "Alice")],
            [make_turn(i, 101, i * 1000, i * 1000 + 900, f"turn {i} " * 20) for i in range(turns)],
        )
        async with await TranscriptStore.open(url) as store:
            await store_meeting(store, meeting)

    asyncio.run(store_it())


@pytest.mark.parametrize(
    "command",
    [
        "recorder show latest --db {db} | head -1",
        "recorder show latest --json --db {db} | head -1",
        "recorder search turn --limit 1000 --db {db} | head -1",
        "recorder sql 'SELECT * FROM transcript' --max-rows 5000 --db {db} | head -1",
        "recorder sql 'SELECT * FROM transcript' --csv --max-rows 5000 --db {db} | head -1",
    ],
)
def test_a_closed_pipe_exits_zero_quietly(sqlite_url: str, command: str, tmp_path: Path) -> None:
    _big_meeting(sqlite_url, 3000)  # far more than a pipe buffer holds
    launcher = tmp_path / "recorder"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m recorder "$@"\n')
    launcher.chmod(0o755)
    done = subprocess.run(
        ["bash", "-c", "set -o pipefail; " + command.format(db=sqlite_url)],
        capture_output=True,
        text=True,
        env=_env(PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}"),
        timeout=_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # Nothing but the row count `sql` prints on stderr anyway.
    assert done.stderr in ("", "(3000 rows)\n"), done.stderr
    assert len(done.stdout.splitlines()) == 1


@pytest.mark.slow  # four processes
def test_verbose_after_the_command(sqlite_url: str) -> None:
    migrate(sqlite_url)
    for args in (["-v", "db", "info"], ["db", "info", "-v"], ["db", "info", "-vv"]):
        done = subprocess.run(
            [sys.executable, "-m", "recorder", *args, "--db", sqlite_url],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert " INFO " in done.stderr, args
    done = subprocess.run(
        [sys.executable, "-m", "recorder", "meetings", "-v", "--db", sqlite_url],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_format_table_fits_a_width() -> None:
    rows = [["1", "x" * 80, "done"], ["2", "短い名前" * 10, "ok"]]
    text = format_table(["ID", "NAME", "STATUS"], rows, width=40)
    assert all(_columns(line) <= 40 for line in text.splitlines())
    assert text.splitlines()[1].endswith("done") and "…" in text
    wide = format_table(["ID", "NAME", "STATUS"], rows)
    assert max(_columns(line) for line in wide.splitlines()) > 40
    assert truncate("abcdef", 4) == "abc…" and truncate("abc", 4) == "abc"
    assert _columns(truncate("短い名前", 5)) <= 5


def test_plural() -> None:
    assert plural(1, "turn") == "1 turn"
    assert plural(0, "meeting") == "0 meetings"
    assert plural(2, "person", "people") == "2 people"
