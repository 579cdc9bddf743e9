"""Webhook delivery through the fleet's queue: one procrastinate job per delivery, run by workers.

Recorders only write ``meeting_events`` (in the transaction that commits what
they tell), so recording never waits for a webhook. Every ``recorder worker``
started with ``RECORDER_WEBHOOK_KEY`` runs, beside its recordings:

* a *feeder*, woken by the events' NOTIFY (and every ``poll_s``), which adds a
  pending row to ``webhook_deliveries`` (the delivery log) per new event and
  interested endpoint, and defers a ``recorder.deliver_webhook`` job for every
  due delivery that has no job waiting or running;
* a procrastinate worker on the ``webhooks`` queue, apart from the recordings'
  queue so deliveries never take a recording's place.

A job claims its delivery (a lease on the row, so a duplicate job does nothing),
POSTs it signed the Standard Webhooks way (https://www.standardwebhooks.com/), and
on failure writes the attempt to the log and asks procrastinate to retry it
after an exponential backoff (:class:`RetryPolicy`), until a day after the
event; then the delivery is ``failed``. A worker that dies mid-delivery stops its
heartbeat; once the row's lease and the heartbeat are both old, the feeder
defers the delivery again.
Delivery is at least once: a receiver deduplicates on ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from procrastinate import App, RetryDecision
from procrastinate.jobs import Job
from procrastinate.retry import BaseRetryStrategy
from sqlalchemy.ext.asyncio import AsyncEngine

from recorder import __version__
from recorder.fleet.queue import WEBHOOK_QUEUE
from recorder.fleet.signing import derive_secret, sign
from recorder.fleet.targets import TargetRefused, check_target
from storage.webhooks import Delivery, Endpoint, claim_one, enqueue_new_events, record_attempt

__all__ = [
    "DELIVER_TASK",
    "WEBHOOK_QUEUE",
    "DeliverLater",
    "DeliveryRetry",
    "RetryPolicy",
    "WebhookSender",
    "message_body",
    "register_webhook_task",
    "webhook_worker",
]

log = logging.getLogger("recorder.fleet.webhooks")

DELIVER_TASK = "recorder.deliver_webhook"
# The events' NOTIFY channel (storage.events.CHANNEL).
_EVENTS_CHANNEL = "recorder_events"
# A webhook worker whose heartbeat (every 10 s, procrastinate's default) is this old is
# dead: its running deliveries are deferred again.
_STALLED_S = 60.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try a failed delivery again, and when to stop."""

    first_retry_s: float = 5.0
    max_retry_s: float = 3600.0
    give_up_after: timedelta = timedelta(days=1)

    def next_delay_s(self, attempts: int) -> float:
        """The pause after the ``attempts``-th failed attempt."""
        return float(min(self.max_retry_s, self.first_retry_s * 2.0 ** max(0, attempts - 1)))


class DeliverLater(Exception):  # noqa: N818 - a signal to the retry strategy, not an error
    """The attempt failed; procrastinate runs the job again after ``delay_s``."""

    def __init__(self, delay_s: float, error: str) -> None:
        super().__init__(error)
        self.delay_s = delay_s


class DeliveryRetry(BaseRetryStrategy):
    """Failed attempts retry after their backoff; other failures (database away) in a minute."""

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        """What procrastinate does with a delivery job that raised ``exception``."""
        if isinstance(exception, DeliverLater):
            return RetryDecision(retry_at=datetime.now(UTC) + timedelta(seconds=exception.delay_s))
        if job.attempts < 24 * 60:  # a day of minutes; the row's own bound usually ends it first
            return RetryDecision(retry_at=datetime.now(UTC) + timedelta(seconds=60))
        return None


def message_body(delivery: Delivery) -> bytes:
    """The JSON body: ``{"type", "timestamp", "data"}`` (Standard Webhooks' payload shape)."""
    return json.dumps(
        {
            "type": delivery.kind,
            "timestamp": delivery.created_at.isoformat(),
            "data": {"event_id": delivery.event_id, **delivery.payload},
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")


class WebhookSender:
    """Sends deliveries and feeds the queue, for one process.

    Args:
        engine: an engine on the transcripts' database.
        server_key: ``RECORDER_WEBHOOK_KEY``, the root of every endpoint's secret.
        policy: retry timing.
        timeout_s: per request.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        server_key: str,
        *,
        policy: RetryPolicy | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self._engine = engine
        self._key = server_key
        self.policy = policy or RetryPolicy()
        self._timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None
        self._since: datetime | None = None
        self.sent = 0

    def __repr__(self) -> str:
        return f"WebhookSender(policy={self.policy!r})"

    @property
    def lease_s(self) -> float:
        """How long a claimed delivery is held before another job may try it."""
        return self._timeout_s * 3 + 5

    async def __aenter__(self) -> WebhookSender:
        headers = {"User-Agent": f"recorder/{__version__}", "Content-Type": "application/json"}
        self._client = httpx.AsyncClient(
            timeout=self._timeout_s, follow_redirects=False, headers=headers, trust_env=False
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def deliver(self, delivery_id: int) -> str:
        """Attempt one delivery: ``delivered``, ``failed`` (for good) or ``skipped`` (not due).

        Raises:
            DeliverLater: the attempt failed and will be tried again.
        """
        claimed = await claim_one(self._engine, delivery_id, lease_s=self.lease_s)
        if claimed is None:
            return "skipped"
        delivery, endpoint = claimed
        http_status, error = await self._post(delivery, endpoint)
        if error is None:
            await record_attempt(
                self._engine, delivery.id, status="delivered", http_status=http_status, error=None
            )
            self.sent += 1
            return "delivered"
        delay = self.policy.next_delay_s(delivery.attempts)
        retry_at = datetime.now(UTC) + timedelta(seconds=delay)
        if endpoint.disabled_at is not None or (
            retry_at - delivery.created_at > self.policy.give_up_after
        ):
            log.warning("! webhook %d failed for good: %s", delivery.id, error)
            await record_attempt(
                self._engine, delivery.id, status="failed", http_status=http_status, error=error
            )
            return "failed"
        await record_attempt(
            self._engine,
            delivery.id,
            status="pending",
            http_status=http_status,
            error=error,
            next_attempt_at=retry_at,
        )
        raise DeliverLater(delay, error)

    async def _post(self, delivery: Delivery, endpoint: Endpoint) -> tuple[int | None, str | None]:
        assert self._client is not None, "use the sender as an async context manager"
        try:
            if endpoint.disabled_at is not None:
                raise TargetRefused("the endpoint was removed")
            await check_target(endpoint.url, allow_private=endpoint.allow_private)
            body = message_body(delivery)
            message_id = f"evt_{delivery.event_id}"
            timestamp = int(time.time())
            secret = derive_secret(self._key, endpoint.id, endpoint.salt)
            response = await self._client.post(
                endpoint.url,
                content=body,
                headers={
                    "webhook-id": message_id,
                    "webhook-timestamp": str(timestamp),
                    "webhook-signature": sign(secret, message_id, timestamp, body),
                },
            )
        except TargetRefused as exc:
            return None, str(exc)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}"

    async def feed(self, app: App) -> int:
        """Add deliveries for new events and defer a job for each due one without a job.

        Returns:
            How many jobs were deferred.
        """
        now = datetime.now(UTC)
        # Events are stamped before their transaction commits; look back a little
        # past the previous scan so a slow commit is still seen.
        since = now - self.policy.give_up_after
        if self._since is not None:
            since = max(since, self._since - timedelta(minutes=5))
        await enqueue_new_events(self._engine, since=since)
        self._since = now
        rows = await app.connector.execute_query_all_async(
            "SELECT d.id FROM webhook_deliveries AS d "
            "WHERE d.status = 'pending' AND d.next_attempt_at <= now() + interval '1 second' "
            "AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs AS j "
            "  WHERE j.task_name = %(task)s AND j.args->>'delivery_id' = d.id::text "
            "  AND (j.status = 'todo' OR (j.status = 'doing' AND EXISTS ("
            # A running job counts while its worker is alive (heartbeats).
            "    SELECT 1 FROM procrastinate_workers AS w WHERE w.id = j.worker_id "
            "    AND w.last_heartbeat > now() - make_interval(secs => %(stall)s))))) "
            "ORDER BY d.next_attempt_at LIMIT 1000",
            task=DELIVER_TASK,
            stall=_STALLED_S,
        )
        for row in rows:
            await app.configure_task(name=DELIVER_TASK, queue=WEBHOOK_QUEUE).defer_async(
                delivery_id=int(row["id"])
            )
        return len(rows)


def register_webhook_task(app: App, sender: WebhookSender) -> None:
    """Teach ``app`` the delivery task (workers that send webhooks)."""

    async def deliver_webhook(delivery_id: int) -> None:
        await sender.deliver(delivery_id)

    app.task(name=DELIVER_TASK, queue=WEBHOOK_QUEUE, retry=DeliveryRetry())(deliver_webhook)


async def _feed_forever(
    app: App, sender: WebhookSender, conninfo: str, poll_s: float, say: Callable[[str], None]
) -> None:
    import psycopg

    wake = asyncio.Event()

    async def listen() -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    conninfo, autocommit=True
                ) as connection:
                    await connection.execute(f"LISTEN {_EVENTS_CHANNEL}")
                    async for _ in connection.notifies():
                        wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("! webhook feeder lost its LISTEN connection (%s); reconnecting", exc)
                await asyncio.sleep(1.0)

    listener = asyncio.create_task(listen(), name="webhook-listen")
    failing = False
    try:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), poll_s)
            wake.clear()
            try:
                await sender.feed(app)
            except Exception as exc:  # the database is away: try again on the next wake
                if not failing:
                    say(f"webhooks: cannot feed the queue ({exc}); retrying")
                failing = True
            else:
                failing = False
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


@contextlib.asynccontextmanager
async def webhook_worker(
    app: App,
    sender: WebhookSender,
    conninfo: str,
    *,
    name: str,
    concurrency: int = 4,
    poll_s: float = 1.0,
    say: Callable[[str], None] = log.info,
) -> AsyncIterator[None]:
    """Feed and run webhook deliveries in the background while the block runs.

    ``app`` must be open and have the task registered (:func:`register_webhook_task`);
    ``sender`` must be entered.
    """
    tasks = [
        asyncio.create_task(
            _feed_forever(app, sender, conninfo, poll_s, say), name="webhook-feeder"
        ),
        asyncio.create_task(
            app.run_worker_async(
                queues=[WEBHOOK_QUEUE],
                name=f"{name}:webhooks",
                concurrency=concurrency,
                install_signal_handlers=False,
                fetch_job_polling_interval=poll_s,
                wait=True,
            ),
            name="webhook-worker",
        ),
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
