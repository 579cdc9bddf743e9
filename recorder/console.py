"""The live console of ``recorder join``: final turns on stdout, who is speaking on stderr."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from typing import TextIO

from recorder.timeline import format_clock

__all__ = ["LiveConsole", "plural"]


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``1 turn``, ``2 turns``, ``0 meetings`` (``many`` for irregular plurals)."""
    return f"{count} {noun if count == 1 else (many or noun + 's')}"


def _silence(stream: TextIO) -> None:
    """Point ``stream``'s descriptor at /dev/null so no later flush fails again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (tests)
        pass


class LiveConsole:
    """Prints final turns as ``[mm:ss] Name (uid): text`` and a live "speaking" line.

    The speaking line is drawn only when ``status`` is a terminal, so piped
    output stays clean and diff-friendly.
    """

    def __init__(
        self,
        names: dict[int, str] | None = None,
        *,
        out: TextIO | None = None,
        status: TextIO | None = None,
        quiet: bool = False,
    ) -> None:
        self.names = dict(names or {})
        self._out = out or sys.stdout
        self._status = status or sys.stderr
        self._is_tty = bool(getattr(self._status, "isatty", lambda: False)())
        self._quiet = quiet
        self._speaking: dict[int, str] = {}
        self._status_drawn = False

    def add_names(self, names: Mapping[int, str]) -> None:
        """Label these uids by name too (names the recording learns once its transport is open)."""
        self.names.update(names)

    def label(self, uid: int) -> str:
        """``Name (uid)``, or ``uid`` alone when no name is known."""
        name = self.names.get(uid)
        return f"{name} ({uid})" if name else str(uid)

    def info(self, message: str) -> None:
        """A diagnostic line (stderr)."""
        self._clear_status()
        print(message, file=self._status, flush=True)

    def final(self, uid: int, start_ms: float, text: str) -> None:
        """Print one final turn."""
        self._speaking.pop(uid, None)
        if self._quiet:
            return
        self._clear_status()
        try:
            print(
                f"[{format_clock(start_ms, compact=True)}] {self.label(uid)}: {text}",
                file=self._out,
                flush=True,
            )
        except OSError as exc:
            # The reader left (| head) or the disk is full: the turns are stored all the
            # same, so the recording goes on without printing them.
            self._quiet = True
            _silence(self._out)
            self.info(f"! turns are no longer printed ({exc.strerror or exc}); recording goes on")
            return
        self._draw_status()

    def partial(self, uid: int, text: str) -> None:
        """Show what ``uid`` is saying right now (terminal only)."""
        self._speaking[uid] = text
        self._draw_status()

    def speaking(self, uid: int, is_speaking: bool) -> None:
        """Mark ``uid`` as speaking or not."""
        if is_speaking:
            self._speaking.setdefault(uid, "")
        else:
            self._speaking.pop(uid, None)
        self._draw_status()

    def _draw_status(self) -> None:
        if not self._is_tty or self._quiet:
            return
        if not self._speaking:
            self._clear_status()
            return
        parts = []
        for uid, text in list(self._speaking.items())[:4]:
            tail = f": {text[-40:]}" if text else ""
            parts.append(f"{self.label(uid)}{tail}")
        line = "speaking: " + " | ".join(parts)
        # One terminal row at most: a wrapped line could not be redrawn in place.
        width = shutil.get_terminal_size((160, 24)).columns - 1
        self._status.write("\r\x1b[2K" + line[: max(20, width)])
        self._status.flush()
        self._status_drawn = True

    def _clear_status(self) -> None:
        if self._status_drawn:
            self._status.write("\r\x1b[2K")
            self._status.flush()
            self._status_drawn = False
