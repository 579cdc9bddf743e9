"""Local emulators of the AssemblyAI services, and the synthetic speech codec they hear."""

from __future__ import annotations

__all__: list[str] = []
