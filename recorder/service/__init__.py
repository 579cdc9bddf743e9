"""The HTTP service: a FastAPI app over the transcript store, with live events and MCP.

Import :mod:`recorder.service.app` for :func:`~recorder.service.app.create_app`;
the package itself imports nothing, so the CLI's ``--help`` stays light.
"""

from __future__ import annotations

__all__: list[str] = []
