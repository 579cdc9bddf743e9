"""The Voice Agent client used for spoken recaps."""

from __future__ import annotations

__all__: list[str] = []
