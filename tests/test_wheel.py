"""Templates and migrations ship in the wheel: install it into a fresh venv and use it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_and_migrates(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("meeting_recorder-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "migrations/env.py" in names
    assert any(n.startswith("migrations/versions/") and n.endswith(".py") for n in names)
    assert any(n.startswith("templates/") for n in names)
    assert not any(n.startswith("tests/") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, str(wheel)], check=True, capture_output=True)

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RECORDER_", "ASSEMBLYAI", "AGORA"))
        and k != "PYTHONPATH"  # a checkout on it would be imported instead of the wheel
    }
    env["HOME"] = str(tmp_path / "home")
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    recorder = str(venv / "bin" / "recorder")
    work = tmp_path / "elsewhere"  # not the checkout, so only the installed package is importable
    work.mkdir()
    help_run = subprocess.run(
        [recorder, "--help"], cwd=work, env=env, capture_output=True, text=True
    )
    assert help_run.returncode == 0, help_run.stderr
    assert "export" in help_run.stdout

    db = f"sqlite+aiosqlite:///{tmp_path / 'wheel.db'}"
    upgrade = subprocess.run(
        [recorder, "db", "upgrade", "--db", db], cwd=work, env=env, capture_output=True, text=True
    )
    assert upgrade.returncode == 0, upgrade.stderr
    info = subprocess.run(
        [recorder, "db", "info", "--db", db], cwd=work, env=env, capture_output=True, text=True
    )
    assert info.returncode == 0, info.stderr
    assert "revision" in info.stdout
    module = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import recorder, storage; print(recorder.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert str(venv) in module.stdout
