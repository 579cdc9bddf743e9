"""The pre-recorded (async) API emulator: HTTP server, jobs, tone-code recognition."""

from recorder.emulator.batch.server import BATCH_PATH, BatchBehaviour, BatchEmulator, BatchServer

__all__ = ["BATCH_PATH", "BatchBehaviour", "BatchEmulator", "BatchServer"]
