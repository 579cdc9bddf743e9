"""The transcript database: models, engines and migrations, the store, and search.

Import :class:`storage.store.TranscriptStore` for reading and writing; the
records it returns live in :mod:`storage.records`.
"""

from __future__ import annotations

__all__: list[str] = []
