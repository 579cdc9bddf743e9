"""``recorder`` subprocesses for tests: a clean environment, started, their output watched.

Shared by the fleet's process tests and the service's end-to-end fleet test.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Proc", "clean_env", "recorder_exec", "start"]


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RECORDER_", "ASSEMBLYAI", "AGORA"))
    }
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env.pop("PYTHONASYNCIODEBUG", None)
    env.update(extra)
    return env


@dataclass
class Proc:
    """A ``recorder`` subprocess whose stdout lines are collected as they come."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    reader: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            async with self.changed:
                self.lines.append(line.decode().rstrip())
                self.changed.notify_all()
        async with self.changed:
            self.changed.notify_all()

    async def wait_line(self, text: str, within: float) -> str:
        """The first line containing ``text``, waiting for it."""

        def found() -> str | None:
            return next((line for line in self.lines if text in line), None)

        async with self.changed:
            await asyncio.wait_for(
                self.changed.wait_for(lambda: found() is not None or self.process.returncode),
                within,
            )
        line = found()
        assert line is not None, f"no {text!r} in {self.lines}"
        return line

    @property
    def pid(self) -> int:
        return self.process.pid


async def start(tmp_path: Path, *args: str, env: dict[str, str], name: str) -> Proc:
    stderr = (tmp_path / f"{name}.err").open("wb")  # noqa: ASYNC230 - opened once, before the run
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "recorder",
        *args,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
    )
    stderr.close()
    proc = Proc(process)
    proc.reader = asyncio.create_task(proc._read())
    return proc


async def recorder_exec(tmp_path: Path, *args: str) -> asyncio.subprocess.Process:
    """``recorder ARGS`` in ``tmp_path``, clean environment and a test key, output piped."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "recorder",
        *args,
        cwd=tmp_path,
        env=clean_env(tmp_path, ASSEMBLYAI_API_KEY="test-key"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
