"""The AssemblyAI Voice Agent API: the sans-I/O wire protocol and the asyncio session around it.

Generic: nothing here knows about recaps or meetings (the spoken recap in
:mod:`recorder.recap` uses it). ``protocol`` parses and builds frames,
``session`` drives one socket, ``timeouts`` bounds its waits.
"""

from __future__ import annotations

__all__: list[str] = []
