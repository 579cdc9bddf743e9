"""Hatchling build hook: compile the optional native audio tap when a C compiler is present.

Like websockets' ``speedups``: ``pip install .`` (or ``-e .``) on a machine
with ``cc`` gets ``recorder.transport.agora._tap``; without one, or when the
compile fails, the package installs all the same and the Agora transport uses
its pure-Python frame observer (docs/providers.md, "Agora: the native tap").
``RECORDER_BUILD_TAP=0`` skips the build. ``python hatch_build.py`` builds it
in place (a source checkout run without installing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
SOURCE = ROOT / "recorder" / "transport" / "agora" / "_tap.c"
TARGET = "recorder/transport/agora/_tap" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so")


def compile_tap(output: Path) -> str | None:
    """Compile the tap into ``output``; return why not, or None when built."""
    if os.environ.get("RECORDER_BUILD_TAP", "1") == "0":
        return "RECORDER_BUILD_TAP=0"
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        return "no C compiler (cc) found"
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").is_file():
        return f"no Python headers in {include}"
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".part")
    command = [
        *compiler.split(),
        "-shared",
        "-fPIC",
        "-O2",
        "-std=c11",
        "-D_GNU_SOURCE",
        "-Wall",
        f"-I{include}",
        str(SOURCE),
        "-o",
        str(partial),
        "-lpthread",
        "-lm",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the compiler did not run: {exc}"
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        return "the compile failed: " + " ".join(done.stderr.split())[:300]
    partial.replace(output)
    return None


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # running as a script without hatchling
    BuildHookInterface = object  # type: ignore[assignment,misc]


class TapBuildHook(BuildHookInterface):  # type: ignore[misc]
    """Adds the compiled tap to the wheel (or next to the source, for editable installs)."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Compile the tap; on any failure say why once and build the pure-Python package."""
        if self.target_name != "wheel":
            return
        if version == "editable":
            why = compile_tap(ROOT / TARGET)
        else:
            self._tmp = tempfile.mkdtemp(prefix="recorder-tap-")
            built = Path(self._tmp) / Path(TARGET).name
            why = compile_tap(built)
            if why is None:
                build_data["force_include"][str(built)] = TARGET
        if why is None:
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
        else:
            print(f"recorder: native audio tap not built ({why}); using the Python observer")

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        """Remove the temporary build directory."""
        tmp = getattr(self, "_tmp", None)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    problem = compile_tap(ROOT / TARGET)
    print(problem or f"built {TARGET}")
    sys.exit(1 if problem else 0)
