"""Who a key belongs to, and what is shared by everyone on one account.

A key maps to an (account, project) pair (spec section 1, checklist item 2): uploads and
transcripts belong to the project, while the request budget and the concurrency limit
are the account's, shared by all its projects and keys. An emulator configured without
a key map puts every accepted key in :data:`DEFAULT_SCOPE`, one account and one project.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import date

__all__ = ["DEFAULT_SCOPE", "Account", "AccountState", "KeyScope"]


@dataclass(frozen=True, slots=True)
class KeyScope:
    """Where a key's requests belong: its account and its project."""

    account: str = "default"
    project: str = "default"


#: Where a key without a mapping belongs.
DEFAULT_SCOPE = KeyScope()


@dataclass(frozen=True, slots=True)
class Account:
    """An account's settings.

    Attributes:
        concurrency: transcripts processed at once (None: ``BatchBehaviour.concurrency``).
        created: when the account was opened (picks the default model, spec 6.1).
        balance_negative: its balance is below zero: create requests are refused and
            queued jobs run one at a time (spec section 9).
    """

    concurrency: int | None = None
    created: date = date(2026, 1, 1)
    balance_negative: bool = False


@dataclass(slots=True)
class AccountState:
    """An account's live state: its recent requests and its transcripts running or waiting."""

    account: Account
    concurrency: int
    recent: deque[float] = field(default_factory=deque)
    running: int = 0
    waiting: deque[asyncio.Future[None]] = field(default_factory=deque)

    @property
    def limit(self) -> int:
        """Transcripts at once: one while the balance is negative."""
        return 1 if self.account.balance_negative else self.concurrency

    def over_budget(self, per_window: int, window_s: float) -> float | None:
        """Seconds until a request fits the budget, or None (and the request is counted)."""
        now = time.monotonic()
        while self.recent and now - self.recent[0] >= window_s:
            self.recent.popleft()
        if len(self.recent) >= per_window:
            return window_s - (now - self.recent[0])
        self.recent.append(now)
        return None

    def must_wait(self) -> asyncio.Future[None] | None:
        """Take a slot, or the future that gets one in turn (first come, first served)."""
        if self.running < self.limit and not self.waiting:
            self.running += 1
            return None
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(turn)
        return turn

    def release(self) -> None:
        """Give the slot back, or hand it to the next waiting job."""
        while self.waiting and self.running <= self.limit:
            turn = self.waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.running -= 1
