"""Alembic environment and versions of the transcript database, shipped in the wheel.

``storage.db`` finds this directory with ``Path(migrations.__file__).parent``
and builds the Alembic configuration in code; ``alembic.ini`` is only for
developers running the ``alembic`` command in a checkout.
"""

from __future__ import annotations

__all__: list[str] = []
