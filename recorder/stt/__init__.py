"""Streaming speech-to-text: the v3 wire protocol and its asyncio session."""

from __future__ import annotations

__all__: list[str] = []
