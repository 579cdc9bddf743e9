"""The import graph points one way, and ``recorder --help`` loads nothing heavy.

Each check that looks at ``sys.modules`` runs in a fresh interpreter, since this
test process has long since imported everything.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What `recorder --help` and `recorder <cmd> --help` must not load: each costs tens
# to hundreds of milliseconds, and none is needed to print help.
HEAVY = ("sqlalchemy", "alembic", "websockets", "numpy")
FIRST_PARTY = ("recorder", "storage", "migrations", "templates")

_HELP_EVERYTHING = """
import contextlib, io, json, sys

HEAVY, FIRST_PARTY = json.loads(sys.argv[1])
chains = {}


class ImportSpy:
    # Notes which of our modules were loading when a heavy library was first asked for.
    def find_spec(self, name, path=None, target=None):
        if name in HEAVY and name not in chains:
            chain, frame = [], sys._getframe(1)
            while frame is not None:
                module = frame.f_globals.get("__name__", "")
                if module.split(".")[0] in FIRST_PARTY and module not in chain:
                    chain.append(module)
                frame = frame.f_back
            chains[name] = " <- ".join(chain)
        return None


sys.meta_path.insert(0, ImportSpy())
import click
import recorder.cli


def walk(group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from walk(command, (*prefix, name))


outputs = {}
for path in [(), *walk(recorder.cli.cli)]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = recorder.cli.cli.main([*path, "--help"], "recorder", standalone_mode=False)
    outputs[" ".join(path)] = (code, buffer.getvalue())
print(json.dumps({
    "recorder_file": recorder.__file__,
    "outputs": outputs,
    "modules": sorted(sys.modules),
    "chains": chains,
}))
"""


def _run(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter on this tree; it prints one JSON object.

    ``sys.argv[1]`` holds ``[HEAVY, FIRST_PARTY]`` as JSON.
    """
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps([HEAVY, FIRST_PARTY])],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _heavy_in(modules: object) -> list[str]:
    assert isinstance(modules, list)
    return [name for name in HEAVY if name in modules]


def test_help_loads_no_heavy_library() -> None:
    result = _run(_HELP_EVERYTHING)
    assert Path(str(result["recorder_file"])).is_relative_to(ROOT)
    outputs = result["outputs"]
    assert isinstance(outputs, dict)
    # The group and every command and subcommand printed its help.
    assert {"", "db", "db upgrade", "join", "export", "show", "doctor"} <= set(outputs)
    for path, (code, text) in outputs.items():
        assert code == 0, f"recorder {path} --help exited {code}"
        assert "Usage:" in text, f"recorder {path} --help printed no usage"
    offenders = _heavy_in(result["modules"])
    chains = result["chains"]
    assert isinstance(chains, dict)
    why = "; ".join(f"{name} <- {chains.get(name, '?')}" for name in offenders)
    assert not offenders, f"recorder --help imported {offenders}: {why}"


def test_config_imports_only_errors_at_load() -> None:
    result = _run(
        "import json, sys\n"
        "import recorder.config\n"
        "print(json.dumps({'modules': sorted(sys.modules)}))"
    )
    modules = result["modules"]
    assert isinstance(modules, list)
    ours = {name for name in modules if name.split(".")[0] in FIRST_PARTY}
    assert ours == {"recorder", "recorder.errors", "recorder.config"}, sorted(ours)
    assert not _heavy_in(modules)


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _first_party_imports(path: Path) -> set[str]:
    """Every first-party module a file imports, at module level or inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from recorder.cli import export` imports the module recorder.cli.export.
            submodules = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [node.module, *(name for name in submodules if _is_module(name))]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] in FIRST_PARTY)
    return found


@pytest.mark.parametrize("leaf", ["errors", "config"])
def test_leaves_import_nothing_of_ours_but_errors(leaf: str) -> None:
    # Also catches imports inside functions, which the sys.modules check cannot see.
    allowed = set() if leaf == "errors" else {"recorder.errors"}
    assert _first_party_imports(ROOT / "recorder" / f"{leaf}.py") <= allowed


@pytest.mark.parametrize(
    "path", sorted((ROOT / "storage").glob("*.py")), ids=lambda path: path.name
)
def test_storage_imports_only_the_leaves_of_recorder(path: Path) -> None:
    from_recorder = {
        name for name in _first_party_imports(path) if name.split(".")[0] == "recorder"
    }
    assert from_recorder <= {"recorder.errors", "recorder.config"}, sorted(from_recorder)


def _command_modules() -> set[str]:
    """The modules of recorder/cli that define commands (not shared helpers)."""
    return {
        f"recorder.cli.{path.stem}"
        for path in (ROOT / "recorder" / "cli").glob("*.py")
        if path.stem != "__init__"
        and any(
            marker in path.read_text(encoding="utf-8")
            for marker in ("@click.command", "@click.group")
        )
    }


def test_only_the_entry_point_imports_command_modules() -> None:
    commands = _command_modules()
    assert {"recorder.cli.db", "recorder.cli.query"} <= commands
    offenders = {}
    for path in sorted((ROOT / "recorder").rglob("*.py")) + sorted((ROOT / "storage").glob("*.py")):
        if path == ROOT / "recorder" / "cli" / "__init__.py":
            continue
        imported = _first_party_imports(path)
        wrong = sorted(imported & commands)
        if path.parent != ROOT / "recorder" / "cli" and path != ROOT / "recorder" / "__main__.py":
            # Outside the CLI, nothing imports it at all (imports point down from the CLI).
            wrong = sorted(name for name in imported if name.startswith("recorder.cli"))
        if wrong:
            offenders[str(path.relative_to(ROOT))] = wrong
    assert not offenders, offenders
