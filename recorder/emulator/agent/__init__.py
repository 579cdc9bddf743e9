"""The emulated AssemblyAI Voice Agent API: server, configuration, sockets, "LLM" and voice."""

from __future__ import annotations

__all__: list[str] = []
