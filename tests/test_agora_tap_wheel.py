"""The wheel builds with the native tap where a C compiler is, and without it where none is."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def build_wheel(out: Path, env: dict[str, str]) -> tuple[Path, str]:
    done = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = out.glob("meeting_recorder-*.whl")
    return wheel, done.stdout + done.stderr


def clean_env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("RECORDER_", "CC", "PYTHONPATH"))
    }


@pytest.mark.slow
def test_with_a_compiler_the_wheel_carries_the_tap(tmp_path: Path) -> None:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler here")
    wheel, _ = build_wheel(tmp_path / "dist", clean_env())
    names = zipfile.ZipFile(wheel).namelist()
    built = [n for n in names if n.startswith("recorder/transport/agora/_tap.")]
    assert len(built) == 2 and any(n.endswith(".so") for n in built)  # the source and the build
    assert "-cp3" in wheel.name and not wheel.name.endswith("-none-any.whl")  # platform-tagged

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    work = tmp_path / "elsewhere"  # not the checkout: only the installed package is importable
    work.mkdir()
    probe = subprocess.run(
        [python, "-c", "from recorder.transport.agora import _tap; print(_tap.table_address())"],
        cwd=work,
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert probe.returncode == 0, probe.stderr
    assert (
        int(probe.stdout) > 0
        and str(venv)
        in subprocess.run(
            [python, "-c", "from recorder.transport.agora import _tap; print(_tap.__file__)"],
            cwd=work,
            capture_output=True,
            text=True,
            env=clean_env(),
        ).stdout
    )


@pytest.mark.slow
def test_without_a_compiler_the_wheel_is_pure_python(tmp_path: Path) -> None:
    env = clean_env()
    env["PATH"] = str(tmp_path / "no-tools")  # no cc, gcc or anything else on the path
    wheel, output = build_wheel(tmp_path / "dist", env)
    names = zipfile.ZipFile(wheel).namelist()
    assert not [
        n for n in names if n.startswith("recorder/transport/agora/_tap.") and n.endswith(".so")
    ]
    assert wheel.name.endswith("-py3-none-any.whl")
    assert "native audio tap not built (no C compiler (cc) found)" in output
    assert "recorder/transport/agora/tap.py" in names  # the fallback ships either way
