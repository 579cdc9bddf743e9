"""The emulated AssemblyAI Universal-Streaming v3 API: server, turn engine, parameters, sockets."""

from __future__ import annotations

__all__: list[str] = []
