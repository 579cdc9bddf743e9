"""Exports of a recorded meeting: view models, per-format escaping and writers.

The package itself imports nothing so that :mod:`recorder.export.render` can use
:mod:`recorder.export.escape` without a cycle; import
:mod:`recorder.export.exporter` for :func:`~recorder.export.exporter.export_meeting`.
"""

from __future__ import annotations

__all__: list[str] = []
