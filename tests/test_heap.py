"""The start-up heap is frozen once, after garbage is collected (in a process of its own)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent(
    """
    import gc, weakref
    from recorder.heap import freeze_startup_heap

    class Node:
        pass

    def cycle():
        a, b = Node(), Node()
        a.other, b.other = b, a
        return weakref.ref(a)

    gc.disable()  # only the freeze's own collection may free the cycle
    garbage = cycle()
    freeze_startup_heap()
    frozen = gc.get_freeze_count()
    assert garbage() is None, "garbage was frozen instead of freed"
    assert frozen > 1000, frozen
    later = cycle()
    freeze_startup_heap()
    assert gc.get_freeze_count() == frozen, "a second call froze again"
    gc.collect()
    assert later() is None, "a later recording's garbage was kept"
    print(frozen)
    """
)


def test_start_up_is_frozen_once_and_garbage_never() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 1000
