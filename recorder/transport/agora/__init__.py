"""The Agora transport: the only package that imports the Agora SDK, and only after pre-flight."""

from __future__ import annotations

__all__: list[str] = []
