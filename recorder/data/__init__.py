"""Bundled data: the demo meeting script."""

from __future__ import annotations

__all__: list[str] = []
