"""What several benchmarks share: the streaming emulator in a process of its own, a bare socket."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

from recorder.stt.wire import WireSocket, open_wire

__all__ = ["open_bench_wire", "start_emulator"]

ROOT = Path(__file__).resolve().parents[1]


def start_emulator(*, profile: str | None = None) -> tuple[subprocess.Popen[str], str]:
    """``recorder emulate`` on a free port (its CPU is not the bench's); returns it and its URL.

    ``profile``: a file name; the emulator runs under cProfile and writes it on SIGINT.
    """
    command = [sys.executable]
    if profile:
        command += ["-m", "cProfile", "-o", profile]
    command += ["-m", "recorder", "emulate", "--port", "0", "--realtime-factor", "1.5"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT
    )
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"ws://\S+/v3/ws", line)
        if match:
            return process, match.group(0)
    raise RuntimeError("the emulator did not print its URL")


async def open_bench_wire(url: str, *, close_timeout_s: float) -> WireSocket:
    """One lean streaming socket (recorder.stt.wire) to ``url``, no pings."""
    return await open_wire(
        url,
        {"Authorization": "bench"},
        open_timeout_s=30.0,
        close_timeout_s=close_timeout_s,
        ping_interval_s=None,
        ping_timeout_s=None,
        user_agent="bench",
        max_size=2**20,
        logger=logging.getLogger("bench"),
    )
