"""Written meeting notes: transcript format, schemas, generation, merge and questions.

Submodules are imported where used (generation needs the HTTP client and storage).
"""

from __future__ import annotations

__all__: list[str] = []
