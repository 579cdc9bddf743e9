"""The spoken recap: triggers, the turn ledger, the prompt, one agent reply, and the player."""

from __future__ import annotations

__all__: list[str] = []
