"""One timeout unit for waits in tests, scaled on slow machines.

Set ``RECORDER_TEST_TIMEOUT_SCALE`` (default 1) to stretch every wait, as
websockets' ``MS`` in its ``tests/utils.py`` does.
"""

from __future__ import annotations

import os

__all__ = ["TIMEOUT"]

# Read at import, before conftest's autouse fixture clears RECORDER_* for each test.
TIMEOUT = 5.0 * float(os.environ.get("RECORDER_TEST_TIMEOUT_SCALE", "1"))
