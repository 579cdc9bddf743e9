"""recorder: a silent meeting bot that writes speaker-attributed transcripts to SQL."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
