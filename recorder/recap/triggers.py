"""What starts a recap: a participant saying the phrase, a timer on the meeting clock, the end.

The phrase is matched on final turns as whole words, ignoring case and
punctuation (:func:`contains_phrase`); a turn that says little besides it is a
request, not meeting content (:func:`is_bare_request`). :class:`RecapTimer`
fires every so often in meeting time, however fast that clock runs.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "RecapTimer",
    "SpokenTrigger",
    "Trigger",
    "contains_phrase",
    "is_bare_request",
    "normalize_phrase",
]

# "Recorder, recap please", "okay recorder, recap now": a request, not meeting content.
_REQUEST_EXTRA_WORDS = 3
_NOT_WORD = re.compile(r"[\W_]+")
#: The timer's first naps (wall seconds), while it learns how fast the meeting clock runs.
_FIRST_NAP_S = 0.01


def normalize_phrase(text: str) -> str:
    """Lowercase ``text`` and reduce punctuation and spacing to single spaces."""
    return " ".join(_NOT_WORD.sub(" ", text.casefold()).split())


def contains_phrase(text: str, phrase: str) -> bool:
    """Whether ``text`` says ``phrase`` as whole words, ignoring case and punctuation.

    >>> contains_phrase("Okay. Recorder recap, please!", "recorder, recap")
    True
    """
    wanted = normalize_phrase(phrase)
    return bool(wanted) and f" {wanted} " in f" {normalize_phrase(text)} "


def is_bare_request(text: str, phrase: str) -> bool:
    """Whether ``text`` says the phrase and little else (nothing in it to recap).

    >>> is_bare_request("Recorder, recap please.", "recorder, recap")
    True
    """
    if not contains_phrase(text, phrase):
        return False
    rest = f" {normalize_phrase(text)} ".replace(f" {normalize_phrase(phrase)} ", " ", 1)
    return len(rest.split()) <= _REQUEST_EXTRA_WORDS


@dataclass(frozen=True, slots=True)
class SpokenTrigger:
    """The final turn in which a participant asked for a recap."""

    uid: int
    start_ms: int
    end_ms: int
    text: str

    def as_meta(self) -> dict[str, Any]:
        """The note's ``meta["trigger"]``."""
        return {
            "uid": self.uid,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "text": self.text,
        }


Trigger = SpokenTrigger | Literal["timer", "end"]


class RecapTimer:
    """Calls ``on_due`` every ``every_s`` of meeting time, from :meth:`run`.

    Nothing announces the meeting clock's ticks, and it may run faster than the
    wall (a replay at 5x), so the timer measures its pace and sleeps until the
    clock should read the due time, then looks again: on time whatever the pace,
    with a handful of wake-ups per recap rather than a fixed poll. It never
    sleeps longer than it has watched the clock, so a first guess of the pace
    costs at most a doubling of the naps.

    Args:
        every_s: the period, in meeting seconds.
        clock_ms: meeting time now.
        on_due: called (on the loop) each time a period has passed.
        sleep: waits that many wall seconds (tests pass a fake clock's).
        wall_s: wall time now, in seconds, for measuring the pace.
    """

    def __init__(
        self,
        every_s: float,
        clock_ms: Callable[[], float],
        on_due: Callable[[], None],
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall_s: Callable[[], float] = time.monotonic,
    ) -> None:
        if every_s <= 0:
            raise ValueError(f"a recap timer needs a positive period, not {every_s!r}")
        self.every_ms = every_s * 1000.0
        self._clock_ms = clock_ms
        self._on_due = on_due
        self._sleep = sleep
        self._wall_s = wall_s
        self.naps = 0

    def __repr__(self) -> str:
        return f"<RecapTimer every {self.every_ms / 1000:g} s>"

    async def run(self) -> None:
        """Fire at every multiple of the period, until cancelled."""
        due_ms = self.every_ms
        watched_since = (self._wall_s(), self._clock_ms())
        while True:
            await self._sleep_until(due_ms, watched_since)
            due_ms += self.every_ms
            self._on_due()

    async def _sleep_until(self, due_ms: float, watched_since: tuple[float, float]) -> None:
        wall_0, clock_0 = watched_since
        while (left_ms := due_ms - (now_ms := self._clock_ms())) > 0:
            watched_s = self._wall_s() - wall_0
            # Meeting ms per wall ms so far (0 before the clock has visibly moved).
            pace = (now_ms - clock_0) / (watched_s * 1000.0) if watched_s > 0 else 0.0
            longest_s = max(_FIRST_NAP_S, watched_s)
            nap_s = min(left_ms / 1000.0 / pace, longest_s) if pace > 0 else longest_s
            self.naps += 1
            await self._sleep(nap_s)
