"""Exports to things that are not regular files: written directly, never renamed over.

A write that fails (``/dev/full``) is one line and exit 1, never "wrote".
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from recorder.cli import cli
from tests.support.export_data import populate
from tests.support.timing import TIMEOUT

needs_dev_full = pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")


def export(db_url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["export", "latest", "--db", db_url, *args])
    assert isinstance(result.exception, SystemExit | None), result.exception
    return result.exit_code, result.output


@needs_dev_full
@pytest.mark.parametrize("fmt", ["md", "html", "json"])
def test_a_full_device_is_an_error_and_stays_a_device(sqlite_url: str, fmt: str) -> None:
    populate(sqlite_url)
    code, output = export(sqlite_url, "-f", fmt, "-o", "/dev/full")
    assert code == 1
    assert output == "error: cannot write '/dev/full': No space left on device\n"
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_dev_null_is_written_and_stays_a_device(sqlite_url: str) -> None:
    populate(sqlite_url)
    code, output = export(sqlite_url, "-f", "html", "-o", os.devnull)
    assert (code, output) == (0, f"wrote {os.devnull} (html)\n")
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_a_fifo_is_written_directly_and_stays_a_fifo(sqlite_url: str, tmp_path: Path) -> None:
    populate(sqlite_url)
    fifo = tmp_path / "pipe.md"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def read() -> None:
        with fifo.open("rb") as reader:  # blocks until the export opens the other end
            received.append(reader.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    code, output = export(sqlite_url, "-o", str(fifo))
    reader.join(TIMEOUT)
    assert (code, output) == (0, f"wrote {fifo} (md)\n")
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert received and received[0].startswith("# design-review ✨".encode())
    assert not list(tmp_path.glob(".*.part"))


def test_a_directory_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    populate(sqlite_url)
    (tmp_path / "out.md").mkdir()
    code, output = export(sqlite_url, "-o", str(tmp_path / "out.md"))
    assert code == 2
    assert "is a directory" in output and len(output.splitlines()) == 1, output


def test_the_target_check_refuses_a_directory(tmp_path: Path) -> None:
    from recorder.errors import RenderError
    from recorder.export.files import _open_output

    (tmp_path / "d").mkdir()
    with pytest.raises(RenderError, match="it is a directory; name a file"):
        _open_output(tmp_path / "d")


def test_a_symlink_stays_a_symlink_and_its_file_is_replaced(
    sqlite_url: str, tmp_path: Path
) -> None:
    populate(sqlite_url)
    real = tmp_path / "real.md"
    real.write_text("old")
    link = tmp_path / "link.md"
    link.symlink_to(real)
    code, _ = export(sqlite_url, "-o", str(link))
    assert code == 0
    assert link.is_symlink()
    assert real.read_text(encoding="utf-8").startswith("# design-review")
    assert not list(tmp_path.glob(".*.part"))


def test_a_regular_file_is_replaced_whole(sqlite_url: str, tmp_path: Path) -> None:
    populate(sqlite_url)
    output = tmp_path / "x.md"
    output.write_text("old contents")
    code, _ = export(sqlite_url, "-o", str(output))
    assert code == 0
    assert output.read_text(encoding="utf-8").startswith("# design-review")
    assert not list(tmp_path.glob(".*.part"))


@needs_dev_full
def test_stdout_on_a_full_device_is_one_line(sqlite_url: str) -> None:
    populate(sqlite_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECORDER_")}
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            [sys.executable, "-m", "recorder", "export", "latest", "--db", sqlite_url],
            stdout=full,
            stderr=subprocess.PIPE,
            env=env,
            timeout=60,
            check=False,
        )
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert stderr == "error: cannot write to standard output: No space left on device\n"


def _run(args: list[str], stdout: Any) -> tuple[int, str]:
    """``recorder ARGS`` in a real process with this stdout; its exit code and stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECORDER_")}
    env.pop("PYTHONASYNCIODEBUG", None)  # its slow-callback lines are not the command's
    done = subprocess.run(
        [sys.executable, "-m", "recorder", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=env,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stderr.decode()


@needs_dev_full
@pytest.mark.parametrize(
    ("args", "uses_db"),
    [
        (["show", "latest"], True),
        (["meetings", "--json"], True),
        (["meetings", "--csv"], True),
        (["speakers", "latest"], True),
        (["sql", "--tables"], True),
        (["--help"], False),
        (["show", "--help"], False),
        (["--version"], False),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_every_command_on_a_full_device_is_one_line(
    sqlite_url: str, args: list[str], uses_db: bool
) -> None:
    populate(sqlite_url)
    db = ["--db", sqlite_url] if uses_db else []
    with open("/dev/full", "wb") as full:
        code, stderr = _run([*args, *db], full)
    assert code == 1, stderr
    assert stderr == "error: cannot write to standard output: No space left on device\n"


def test_dev_stdout_appended_to_a_file_keeps_what_the_file_held(
    sqlite_url: str, tmp_path: Path
) -> None:
    # '-o /dev/stdout >> log': /dev/stdout leads to the regular file log; renaming a
    # new file over it dropped the log's earlier lines.
    populate(sqlite_url)
    log = tmp_path / "log.md"
    log.write_text("earlier line\n")
    with log.open("ab") as appended:
        code, stderr = _run(
            ["export", "latest", "--db", sqlite_url, "-f", "md", "-o", "/dev/stdout"], appended
        )
    assert code == 0, stderr
    text = log.read_text(encoding="utf-8")
    assert text.startswith("earlier line\n# design-review"), text[:80]
    assert not list(Path("/dev").glob(".stdout.*.part"))


@pytest.mark.parametrize(
    ("path", "is_descriptor"),
    [
        ("/dev/stdout", True),
        ("/dev/fd/3", True),
        ("/proc/self/fd/1", True),
        ("/dev/shm/notes.md", False),  # a real file system: replaced whole, as anywhere
        ("/proc/version", False),
        ("dev/stdout", False),  # relative: ./dev/stdout
    ],
)
def test_only_descriptor_paths_are_written_through(path: str, is_descriptor: bool) -> None:
    from recorder.export.files import _names_a_descriptor

    assert _names_a_descriptor(Path(path)) is is_descriptor
