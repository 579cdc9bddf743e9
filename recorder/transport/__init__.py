"""Transports deliver participants' audio to the bot: Agora, or a replayed script."""

from __future__ import annotations

__all__: list[str] = []
