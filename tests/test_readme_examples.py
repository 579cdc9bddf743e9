"""Every command example in the README and in every ``--help`` runs, as written.

What counts as an example: a line of a README code block, or of a command's
``--help``, whose command (after any ``VAR=value`` assignments) is ``recorder``;
a line ending in ``\\`` continues on the next.

The convention for examples that cannot run here (also stated in a README comment):

* a line that needs something this test cannot give (an account, a network, a
  server) says so in a trailing comment starting ``# needs:``, e.g.
  ``recorder db upgrade --db postgresql+asyncpg://... # needs: PostgreSQL``;
  it is skipped, with that reason;
* :data:`NOT_HERE` lists the few kinds of command that can never run here
  whatever their text (``--help`` texts carry no comments): joining a real
  channel, serving until stopped, the real-time demo, a real PostgreSQL;
* :data:`EXIT_CODES` lists documented non-zero exits (``doctor`` exits 1 when a
  required check fails, as it does with no credentials).

Every other example must exit 0 without a traceback. Examples run in the order
they are written (so ``tokens create`` comes before ``tokens revoke``), the README
as one group and each top-level command's helps as another, each group on its own
copy of the demo database. Each runs verbatim in bash
as in a new shell after the README's quick start: ``HOME`` is a temporary
directory whose default database holds the demo meeting (``recorder demo``, at
``--speed 20``), the environment's ``bin`` (which holds ``recorder``) is on
``PATH``, no ``RECORDER_``/``ASSEMBLYAI_``/``AGORA_`` variable is set, and the
working directory is empty. :func:`test_the_demo_try_next_lines_run` runs the
demo's own "try next" lines with ``recorder`` *not* on ``PATH``, as after
``make demo``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from recorder.cli import cli

pytestmark = pytest.mark.slow  # a demo meeting, then one process per example

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
_TIMEOUT_S = 120
_CLEARED_PREFIXES = ("RECORDER_", "ASSEMBLYAI_", "AGORA_")

# (pattern on the command, reason): never run here, whatever the example says.
NOT_HERE = [
    (r"^recorder join --channel", "needs: Agora and AssemblyAI accounts"),
    (r"^recorder join --transport replay:meeting\.json", "needs: an emulator and meeting.json"),
    (r"^recorder emulate\b", "serves until stopped"),
    (r"^recorder demo\b", "plays the meeting in real time; see the try-next test"),
    (r"--online\b", "needs: a real AssemblyAI key and the network"),
    (r"--db postgresql", "needs: a PostgreSQL server"),
    (r"^recorder serve\b", "serves until stopped"),
    (r"^recorder webhooks add\b", "needs: RECORDER_WEBHOOK_KEY"),
    (r"^recorder webhooks remove\b", "needs: an endpoint added first"),
    (r"^recorder (worker|record|jobs|stop|cancel)\b", "needs: PostgreSQL (the fleet's queue)"),
    (r"^recorder (repair|retranscribe)\b", "needs: an AssemblyAI key (transcribes kept audio)"),
    (r"^recorder (notes|ask)\b", "needs: an AssemblyAI key (the LLM Gateway)"),
]
# (pattern, allowed exit codes): documented non-zero exits.
EXIT_CODES = [(r"^recorder doctor\b", {0, 1})]
# Examples that read the demo's database: each must find something there, since an
# example that prints nothing (no rows, `[]`, a CSV header alone) shows the reader nothing.
READS = r"^recorder (meetings|show|search|speakers|sql)\b"

_ASSIGNMENT = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*")


def _logical_lines(lines: list[str]) -> Iterator[str]:
    pending = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1].strip() + " "
            continue
        yield (pending + line.strip()).strip()
        pending = ""


def _examples_in(lines: list[str]) -> list[str]:
    found = []
    for line in _logical_lines(lines):
        command = _ASSIGNMENT.sub("", line)
        if command.startswith("recorder ") or command == "recorder":
            found.append(line)
    return found


def readme_examples() -> list[str]:
    """The ``recorder`` lines of the README's code blocks (indented or fenced)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    code: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            code.append(line)
        else:
            code.append("")
    return _examples_in(code)


def help_examples_by_command() -> dict[str, list[str]]:
    """The ``recorder`` lines of each top-level command's help and its subcommands' helps."""
    found = {"recorder": _examples_in((cli.help or "").splitlines())}

    def collect(command: click.Command) -> list[str]:
        examples = _examples_in((command.help or "").splitlines())
        if isinstance(command, click.Group):
            for sub in command.commands.values():
                examples += collect(sub)
        return examples

    for name, command in cli.commands.items():
        found[f"recorder {name}"] = collect(command)
    return {path: examples for path, examples in found.items() if examples}


def help_examples() -> list[str]:
    """The ``recorder`` lines of every command's help text."""
    return [example for group in help_examples_by_command().values() for example in group]


def _skip_reason(example: str) -> str | None:
    command, _, comment = example.partition(" # ")
    if comment.strip().startswith("needs:"):
        return comment.strip()
    command = _ASSIGNMENT.sub("", command.strip())
    for pattern, reason in NOT_HERE:
        if re.search(pattern, command):
            return reason
    return None


def _allowed_codes(example: str) -> set[int]:
    command = _ASSIGNMENT.sub("", example)
    for pattern, codes in EXIT_CODES:
        if re.search(pattern, command):
            return codes
    return {0}


def _prints_nothing(example: str, stdout: str) -> bool:
    """A reading example (:data:`READS`) whose output on the terminal is empty."""
    command = _ASSIGNMENT.sub("", example.partition(" # ")[0]).strip()
    if not re.search(READS, command) or re.search(r"\s(>|-o)\s", command):
        return False  # not a reader, or its output goes to a file
    lines = stdout.strip().splitlines()
    return not lines or lines == ["[]"] or ("--csv" in command and len(lines) < 2)


def _new_shell_env(home: Path, *, path: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_CLEARED_PREFIXES) and not name.startswith("XDG_")
    }
    env.update(HOME=str(home), PATH=path, PYTHONPATH=str(ROOT), NO_COLOR="")
    env.pop("VIRTUAL_ENV", None)
    return env


def _run_demo(home: Path, work: Path, path: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(BIN / "recorder"), "demo", "--speed", "20", "-q"],
        cwd=work,
        env=_new_shell_env(home, path=path),
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME whose default database holds the demo meeting (the README's starting point)."""
    home = tmp_path_factory.mktemp("home")
    work = tmp_path_factory.mktemp("work")
    _run_demo(home, work, f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return home


def _groups() -> list[object]:
    """Examples run in the order they are written, each group on its own copy of the
    demo database: the README, then each command's help (create then revoke, ...)."""
    groups: list[object] = [pytest.param(readme_examples(), id="README")]
    for path, examples in help_examples_by_command().items():
        groups.append(pytest.param(examples, id=f"{path} --help"))
    return groups


def test_there_are_examples_to_run() -> None:
    readme, helps = readme_examples(), help_examples()
    assert len(readme) >= 20 and len(helps) >= 20
    runnable = [e for e in readme + helps if _skip_reason(e) is None]
    assert len(runnable) >= 30
    # Synopses such as "[--json]" are not examples: the README shows real commands.
    assert not [e for e in runnable if re.search(r"\s\[--", e)]


@pytest.mark.parametrize("examples", _groups())
def test_examples_run(examples: list[str], demo_home: Path, tmp_path: Path) -> None:
    # Each group starts from the demo database as `make demo` left it (a copy).
    home = tmp_path / "home"
    shutil.copytree(demo_home, home)
    work = tmp_path / "work"
    work.mkdir()
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    failures, skipped = [], []
    for example in examples:
        reason = _skip_reason(example)
        if reason is not None:
            skipped.append(f"{example}  [{reason}]")
            continue
        done = subprocess.run(
            ["bash", "-c", example],
            cwd=work,
            env=_new_shell_env(home, path=path),
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
        output = done.stdout + done.stderr
        if (
            done.returncode not in _allowed_codes(example)
            or "Traceback" in output
            or "command not found" in output
        ):
            failures.append(f"{example}\n  exit {done.returncode}: {output.strip()[-500:]}")
        elif _prints_nothing(example, done.stdout):
            failures.append(f"{example}\n  found nothing in the demo meeting: {output.strip()}")
    print("not run here:", *skipped, sep="\n  ")
    assert not failures, "\n".join(failures)


def test_the_demo_try_next_lines_run(tmp_path: Path) -> None:
    # As after `make demo` in a new shell: recorder is not on PATH until the printed step.
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    bare_path = os.pathsep.join(
        part
        for part in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
        if Path(part).resolve() != BIN.resolve()
    )
    demo = _run_demo(home, work, bare_path)
    lines = demo.stderr.split("try next:\n", 1)[1].splitlines()
    commands = [line.strip() for line in lines if line.startswith("    ")]
    assert commands, demo.stderr
    assert commands[0].startswith(". ") and "activate" in commands[0]
    assert any(command.startswith("recorder search") for command in commands)
    script = "set -e\n" + "\n".join(commands) + "\n"
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=work,
        env=_new_shell_env(home, path=bare_path),
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "«délayed»" in done.stdout  # `recorder search delayed` found the accented word
    assert "transcript" in done.stdout  # `recorder sql --tables` lists the view
    assert shlex.split(commands[1])[0] == "recorder"
