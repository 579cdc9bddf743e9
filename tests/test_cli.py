from __future__ import annotations

import importlib
import pkgutil

import click
import pytest
from click.testing import CliRunner

import recorder
import storage
from recorder import __version__
from recorder.cli import cli

DESIGN_COMMANDS = {
    "join",
    "demo",
    "meetings",
    "show",
    "search",
    "export",
    "speakers",
    "sql",
    "db",
    "emulate",
}


def _walk(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name, command in group.commands.items():
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths.extend(_walk(command, (*prefix, name)))
    return paths


def test_help_lists_every_design_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    listed = {
        line.split()[0]
        for line in result.output.split("Commands:")[1].splitlines()
        if line.strip() and line.startswith("  ") and not line.startswith("   ")
    }
    assert DESIGN_COMMANDS <= listed


@pytest.mark.parametrize("path", _walk(cli), ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    assert command.help, f"recorder {' '.join(path)} has no help text"
    # A raw docstring turns click's no-rewrap marker into a literal "\\b" and mangles examples.
    assert "\\b" not in result.output


def test_short_help_flag() -> None:
    assert CliRunner().invoke(cli, ["-h"]).exit_code == 0


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_unknown_command_exits_2_without_traceback() -> None:
    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code == 2
    assert result.output == "error: no such command 'frobnicate' (see 'cli --help')\n"
    assert "Traceback" not in result.output


def _modules(package: object) -> list[str]:
    path = package.__path__  # type: ignore[attr-defined]
    names = [package.__name__]  # type: ignore[attr-defined]
    for info in pkgutil.walk_packages(path, prefix=f"{package.__name__}."):  # type: ignore[attr-defined]
        if info.name.endswith("__main__") or info.name == "recorder.transport.agora.transport":
            continue
        names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules(recorder) + _modules(storage))
def test_all_is_accurate(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    for attribute in exported:
        assert hasattr(module, attribute), f"{name}.__all__ names missing {attribute}"
    public = {
        attribute
        for attribute, value in vars(module).items()
        if not attribute.startswith("_")
        and getattr(value, "__module__", None) == name
        and (isinstance(value, type) or callable(value))
    }
    assert public <= set(exported), (
        f"{name} defines public {sorted(public - set(exported))} not in __all__"
    )


def test_readme_carries_the_json_schema() -> None:
    from pathlib import Path

    from recorder.export.json_format import SCHEMA

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert SCHEMA.strip() in readme
    assert readme.startswith("# recorder")
    quick = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "make demo" in quick and "make test" in quick
