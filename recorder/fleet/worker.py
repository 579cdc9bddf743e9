"""The worker process: take recordings from the queue, up to a capacity, and survive peers.

Around procrastinate's worker it runs three companions:

* a stalled-job sweep: jobs of a worker whose heartbeat stopped are put back in
  the queue, so a killed worker's recordings are taken over within ``stall_s``
  plus one sweep (as
  https://procrastinate.readthedocs.io/en/stable/howto/production/retry_stalled_jobs.html
  describes);
* a LISTEN on ``recorder_fleet_stop`` so ``recorder stop`` reaches the holder at once;
* signal handling: the first SIGTERM (or Ctrl+C) drains, handing every held
  recording back to the queue (another worker continues the same meeting) and
  exiting 0 within ``drain_s``; a second one exits at once and the fleet takes
  over as if the worker had been killed.

Its queue bookkeeping (fetch, heartbeat, listener, a job's end) rides out a blip
of the database (:mod:`recorder.fleet.steady`); its companions retry on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from procrastinate import App, JobContext
from procrastinate.exceptions import ConnectorException

from recorder.config import Config
from recorder.errors import MigrationRequired
from recorder.fleet.connect import FleetDatabase
from recorder.fleet.job import FleetRuntime, run_job
from recorder.fleet.queue import QUEUE, RECORD_TASK, make_app, open_app, prune_jobs
from recorder.fleet.recordings import STOP_CHANNEL, Recordings
from recorder.fleet.steady import SteadyJobManager
from storage.db import create_engine, ensure_schema

__all__ = ["WorkerSettings", "run_worker"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How a worker runs.

    Attributes:
        capacity: most recordings held at once.
        heartbeat_s: how often the worker tells the queue it is alive.
        stall_s: a worker silent this long is dead; its recordings are taken over.
        lease_s: how long a recording's lease lasts without renewal.
        poll_s: how often the queue is polled besides LISTEN/NOTIFY.
        drain_s: bound on handing recordings back after SIGTERM.
        status_s: how often the worker prints a heartbeat line.
        prune_s: how often finished jobs are pruned from the queue's tables.
        webhook_first_retry_s: the pause after a failed webhook delivery (doubling).
        webhook_max_retry_s: the longest pause between webhook attempts.
    """

    capacity: int = 4
    heartbeat_s: float = 2.0
    stall_s: float = 10.0
    lease_s: float = 10.0
    poll_s: float = 1.0
    drain_s: float = 30.0
    status_s: float = 60.0
    prune_s: float = 600.0
    webhook_first_retry_s: float = 5.0
    webhook_max_retry_s: float = 3600.0


def _say(text: str) -> None:
    stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
    sys.stdout.write(f"{stamp} {text}\n")
    sys.stdout.flush()


async def run_worker(database: FleetDatabase, config: Config, settings: WorkerSettings) -> int:
    """Run a worker until SIGTERM; returns the exit code.

    Raises:
        DatabaseUnreachable: the database cannot be reached.
        MigrationRequired: the fleet's tables are missing.
    """
    host = socket.gethostname()
    pid = os.getpid()
    runtime: FleetRuntime | None = None

    async def handle(context: JobContext, recording_id: int) -> None:
        assert runtime is not None
        await run_job(runtime, context, recording_id)

    app = make_app(database, handle)
    # A blip of the database must not stop the worker (recorder.fleet.steady).
    app.job_manager = SteadyJobManager(app.connector, _say)
    engine = create_engine(database.url)
    sender = None
    if config.webhook_key:
        from recorder.fleet.webhooks import RetryPolicy, WebhookSender, register_webhook_task

        policy = RetryPolicy(
            first_retry_s=settings.webhook_first_retry_s,
            max_retry_s=settings.webhook_max_retry_s,
        )
        sender = WebhookSender(engine, config.webhook_key, policy=policy)
        register_webhook_task(app, sender)
    await open_app(app, database)
    try:
        schema = await _check_schema(app, database)
        await ensure_schema(engine, auto_migrate=False, url=database.url)
        runtime = FleetRuntime(
            recordings=Recordings(app.connector),  # type: ignore[arg-type]
            config=config,
            engine=engine,
            url=database.url,
            host=host,
            pid=pid,
            lease_s=settings.lease_s,
            say=_say,
        )
        if sender is None:
            return await _serve(app, database, runtime, settings, schema)
        from recorder.fleet.webhooks import webhook_worker

        async with (
            sender,
            webhook_worker(
                app,
                sender,
                database.conninfo,
                name=f"{host}:{pid}",
                poll_s=settings.poll_s,
                say=_say,
            ),
        ):
            _say("webhooks: this worker sends them (RECORDER_WEBHOOK_KEY is set)")
            return await _serve(app, database, runtime, settings, schema)
    finally:
        await app.close_async()
        await engine.dispose()


async def _check_schema(app: App, database: FleetDatabase) -> str:
    row = await app.connector.execute_query_one_async(
        "SELECT current_schema() AS schema, to_regclass('recordings') IS NOT NULL AS ready, "
        "to_regclass('procrastinate_jobs') IS NOT NULL AS queue"
    )
    if not (row["ready"] and row["queue"]):
        raise MigrationRequired(
            f"the database at {database.shown} has no fleet tables yet; run "
            f"'recorder db upgrade --db {database.shown}' once"
        )
    return str(row["schema"])


async def _serve(
    app: App, database: FleetDatabase, runtime: FleetRuntime, settings: WorkerSettings, schema: str
) -> int:
    loop = asyncio.get_running_loop()
    worker = asyncio.create_task(
        app.run_worker_async(
            queues=[QUEUE],
            name=f"{runtime.host}:{runtime.pid}",
            concurrency=settings.capacity,
            install_signal_handlers=False,
            update_heartbeat_interval=settings.heartbeat_s,
            stalled_worker_timeout=settings.stall_s,
            fetch_job_polling_interval=settings.poll_s,
            abort_job_polling_interval=max(settings.poll_s, 5.0),
        ),
        name="procrastinate-worker",
    )
    draining = asyncio.Event()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            runtime.say("second signal: exiting now; the fleet takes the recordings over")
            os._exit(1)
        runtime.say(
            f"draining: handing {len(runtime.active)} recording(s) back to the queue "
            f"(within {settings.drain_s:.0f} s; signal again to exit at once)"
        )
        draining.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
    loop.set_exception_handler(_job_status_race(runtime))
    sides = [
        asyncio.create_task(_sweep_stalled(app, runtime, settings), name="stalled-sweep"),
        asyncio.create_task(_listen_for_stops(database, runtime, schema), name="stop-listener"),
        asyncio.create_task(_status(runtime, settings), name="status"),
        asyncio.create_task(_prune(app, settings), name="prune"),
    ]
    runtime.say(
        f"worker {runtime.host}:{runtime.pid} ready: capacity {settings.capacity}, "
        f"queue on {database.shown}"
    )
    stopping = asyncio.create_task(draining.wait(), name="drain-wait")
    try:
        await asyncio.wait({worker, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if worker.done():  # procrastinate stopped by itself (the database went away)
            error = worker.exception()
            runtime.say(f"worker stopped: {error or 'the queue stopped'}; exiting")
            return 1
        runtime.draining = True
        for active in list(runtime.active.values()):
            active.request_stop("worker stopping", handback=True)
        worker.cancel()
        done, _ = await asyncio.wait({worker}, timeout=settings.drain_s)
        if not done:
            runtime.say(
                f"{len(runtime.active)} recording(s) not handed back within "
                f"{settings.drain_s:g} s; exiting, the fleet takes them over"
            )
            # What is left is abandoned to the fleet; waiting on it could outlast the bound.
            os._exit(1)
        runtime.say("drained: every recording handed back; exiting")
        return 0
    finally:
        stopping.cancel()
        for side in sides:
            side.cancel()
        await asyncio.gather(*sides, stopping, return_exceptions=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def _job_status_race(
    runtime: FleetRuntime,
) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """One line, not a traceback, when procrastinate cannot settle a job taken over.

    A worker frozen past its lease (SIGSTOP, a paused VM) wakes up to find its
    job retried and finished by another worker; procrastinate then fails to
    record the job's end on the stale side. The recording itself is safe: the
    lease kept the stale worker from writing.
    """

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        future = context.get("future")
        name = future.get_name() if isinstance(future, asyncio.Task) else ""
        if isinstance(error, ConnectorException) and name.startswith("process job"):
            runtime.say(f"{name}: its end was already recorded by the worker that took it over")
            return
        loop.default_exception_handler(context)

    return handle


async def _sweep_stalled(app: App, runtime: FleetRuntime, settings: WorkerSettings) -> None:
    """Put back in the queue the recordings of workers whose heartbeat stopped."""
    manager = app.job_manager
    while True:
        await asyncio.sleep(settings.heartbeat_s)
        if runtime.draining:
            continue
        try:
            stalled = await manager.get_stalled_jobs(
                task_name=RECORD_TASK, seconds_since_heartbeat=settings.stall_s
            )
        except Exception as exc:
            log.warning("! stalled-job sweep failed: %s", exc)
            continue
        for job in stalled:
            if await _lease_is_live(runtime, job.task_kwargs.get("recording_id")):
                continue  # its worker is late with heartbeats but still renewing the lease
            try:
                await manager.retry_job(job)
            except Exception as exc:  # another worker put it back first
                log.debug("job %s not retried: %s", job.id, exc)
                continue
            recording = job.task_kwargs.get("recording_id")
            runtime.say(
                f"recording {recording}: its worker sent no heartbeat for "
                f"{settings.stall_s:.0f} s; back in the queue for takeover"
            )


async def _lease_is_live(runtime: FleetRuntime, recording_id: object) -> bool:
    """Whether a recording's holder still renews its lease (then its job is not stalled)."""
    if not isinstance(recording_id, int):
        return False
    try:
        row = await runtime.recordings.get(recording_id)
    except Exception as exc:
        log.warning("! cannot read recording %d: %s", recording_id, exc)
        return True  # when in doubt, do not move a recording
    return bool(
        row is not None
        and row.status == "recording"
        and row.lease_expires is not None
        and row.lease_expires > row.now
    )


async def _listen_for_stops(database: FleetDatabase, runtime: FleetRuntime, schema: str) -> None:
    """Stop a held recording as soon as ``recorder stop`` notifies (LISTEN/NOTIFY)."""
    import psycopg

    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                database.conninfo, autocommit=True
            ) as connection:
                await connection.execute(f"LISTEN {STOP_CHANNEL}")
                async for notice in connection.notifies():
                    where, _, ident = notice.payload.rpartition(":")
                    if where != schema or not ident.isdigit():
                        continue
                    active = runtime.active.get(int(ident))
                    if active is not None:
                        runtime.say(f"recording {ident}: stop requested")
                        active.request_stop("stop requested")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("! stop listener lost its connection (%s); reconnecting", exc)
            await asyncio.sleep(1.0)


async def _status(runtime: FleetRuntime, settings: WorkerSettings) -> None:
    while True:
        await asyncio.sleep(settings.status_s)
        held = ", ".join(str(i) for i in sorted(runtime.active)) or "none"
        runtime.say(
            f"heartbeat: {len(runtime.active)}/{settings.capacity} recordings held ({held})"
        )


async def _prune(app: App, settings: WorkerSettings) -> None:
    """Delete the queue's finished jobs now and then (every worker; it is idempotent)."""
    while True:
        await asyncio.sleep(settings.prune_s)
        try:
            await prune_jobs(app)
        except Exception as exc:
            log.warning("! pruning finished jobs failed: %s", exc)
