"""The pre-recorded (async) API emulator: HTTP server, jobs, tone-code recognition."""

from recorder.emulator.batch.accounts import Account, KeyScope
from recorder.emulator.batch.behaviour import FAULTS, BatchBehaviour
from recorder.emulator.batch.server import (
    BATCH_PATH,
    EU_HOST,
    EU_PREFIX,
    BatchEmulator,
    BatchServer,
)

__all__ = [
    "BATCH_PATH",
    "EU_HOST",
    "EU_PREFIX",
    "FAULTS",
    "Account",
    "BatchBehaviour",
    "BatchEmulator",
    "BatchServer",
    "KeyScope",
]
