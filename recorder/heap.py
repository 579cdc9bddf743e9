"""What the process holds once a recording is under way stays out of full collections.

A full garbage collection (generation 2) walks every object the collector
tracks, holding the GIL: no audio moves meanwhile. About 100,000 of those
objects are the process's start-up (modules, classes, SQLAlchemy, websockets,
the Agora wrapper) and live until it exits. At 500 speakers they made each full
collection 100-180 ms, long enough for every participant's audio to reach the
pipeline late (bench/bench_agora_path.py). Frozen (:func:`gc.freeze`,
https://docs.python.org/3/library/gc.html#gc.freeze) they are never walked
again, and those collections took 70 ms.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_startup_heap"]

_done = False


def freeze_startup_heap() -> None:
    """Once per process: collect what is garbage now, then freeze what is left.

    Collected first, so no garbage is frozen (a frozen cycle is never freed).
    Only the first call freezes: a worker's later recordings leave their objects
    to the collector. The first recording's own objects are frozen with the
    start-up, so a cycle among them outlives it: once per process, a few KB.
    """
    global _done
    if _done:
        return
    _done = True
    gc.collect()
    gc.freeze()
