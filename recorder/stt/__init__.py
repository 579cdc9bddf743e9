"""Streaming speech-to-text: the v3 wire protocol and the reconnecting asyncio stream."""

from __future__ import annotations

__all__: list[str] = []
