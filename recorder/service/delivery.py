"""Sending webhooks: turn committed events into deliveries, POST them signed, retry with backoff.

The dispatcher runs in every ``recorder serve`` process. It wakes on the same
NOTIFY as live streams (and every ``poll_s``), adds a pending delivery per event
and interested endpoint, claims due deliveries (leased, so processes share the
work without sending twice at once) and POSTs them. A failed attempt is tried
again after ``first_retry_s``, doubling up to ``max_retry_s``, until
``give_up_after`` from the event (a day by default); then it is ``failed``.
Recording never waits for any of it: recorders only write events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from recorder import __version__
from recorder.service.signing import derive_secret, sign
from recorder.service.targets import TargetRefused, check_target
from storage.webhooks import Delivery, Endpoint, claim_due, enqueue_new_events, record_attempt

__all__ = ["RetryPolicy", "WebhookDispatcher", "message_body"]

log = logging.getLogger("recorder.service.webhooks")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try a failed delivery again, and when to stop."""

    first_retry_s: float = 5.0
    max_retry_s: float = 3600.0
    give_up_after: timedelta = timedelta(days=1)

    def next_delay_s(self, attempts: int) -> float:
        """The pause after the ``attempts``-th failed attempt."""
        return float(min(self.max_retry_s, self.first_retry_s * 2.0 ** max(0, attempts - 1)))


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


class WebhookDispatcher:
    """Delivers webhooks for one service process.

    Args:
        engine: the service's engine.
        server_key: ``RECORDER_WEBHOOK_KEY``, the root of every endpoint's secret.
        policy: retry timing.
        poll_s: look for due retries at least this often.
        timeout_s: per request.
        batch: deliveries claimed (and sent concurrently) at a time.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        server_key: str,
        *,
        policy: RetryPolicy | None = None,
        poll_s: float = 1.0,
        timeout_s: float = 10.0,
        batch: int = 20,
    ) -> None:
        self._engine = engine
        self._key = server_key
        self.policy = policy or RetryPolicy()
        self._poll_s = poll_s
        self._timeout_s = timeout_s
        self._batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._since: datetime | None = None
        self.sent = 0

    def wake(self) -> None:
        """Something was committed: look now."""
        self._wake.set()

    async def start(self) -> None:
        """Run in the background until :meth:`stop`."""
        self._task = asyncio.create_task(self._run(), name="webhooks")

    async def stop(self) -> None:
        """Stop (a delivery in flight is abandoned; its lease lets another process retry)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        headers = {"User-Agent": f"recorder/{__version__}", "Content-Type": "application/json"}
        async with httpx.AsyncClient(
            timeout=self._timeout_s, follow_redirects=False, headers=headers, trust_env=False
        ) as client:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_s)
                self._wake.clear()
                try:
                    await self.run_once(client)
                except Exception as exc:  # the database is away: try again on the next wake
                    log.warning("! webhook dispatch failed: %s", exc)

    async def run_once(self, client: httpx.AsyncClient) -> int:
        """Enqueue new events and send what is due; returns how many were attempted."""
        now = datetime.now(UTC)
        # Events are stamped before their transaction commits; look back a little
        # past the previous scan so a slow commit is still seen.
        since = now - self.policy.give_up_after
        if self._since is not None:
            since = max(since, self._since - timedelta(minutes=5))
        await enqueue_new_events(self._engine, since=since)
        self._since = now
        attempted = 0
        while True:
            lease = self._timeout_s * 3 + 5
            claimed = await claim_due(self._engine, limit=self._batch, lease_s=lease)
            if not claimed:
                return attempted
            await asyncio.gather(*(self._attempt(client, d, e) for d, e in claimed))
            attempted += len(claimed)

    async def _attempt(
        self, client: httpx.AsyncClient, delivery: Delivery, endpoint: Endpoint
    ) -> None:
        http_status: int | None = None
        try:
            if endpoint.disabled_at is not None:
                raise TargetRefused("the endpoint was removed")
            await check_target(endpoint.url, allow_private=endpoint.allow_private)
            body = message_body(delivery)
            message_id = f"evt_{delivery.event_id}"
            timestamp = int(time.time())
            secret = derive_secret(self._key, endpoint.id, endpoint.salt)
            response = await client.post(
                endpoint.url,
                content=body,
                headers={
                    "webhook-id": message_id,
                    "webhook-timestamp": str(timestamp),
                    "webhook-signature": sign(secret, message_id, timestamp, body),
                },
            )
            http_status = response.status_code
            if 200 <= http_status < 300:
                await record_attempt(
                    self._engine,
                    delivery.id,
                    status="delivered",
                    http_status=http_status,
                    error=None,
                )
                self.sent += 1
                return
            error = f"HTTP {http_status}"
        except TargetRefused as exc:
            error = str(exc)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        await self._failed(delivery, http_status, error)

    async def _failed(self, delivery: Delivery, http_status: int | None, error: str) -> None:
        retry_at = datetime.now(UTC) + timedelta(
            seconds=self.policy.next_delay_s(delivery.attempts)
        )
        if retry_at - delivery.created_at > self.policy.give_up_after:
            log.warning("! webhook %d failed for good: %s", delivery.id, error)
            await record_attempt(
                self._engine, delivery.id, status="failed", http_status=http_status, error=error
            )
            return
        await record_attempt(
            self._engine,
            delivery.id,
            status="pending",
            http_status=http_status,
            error=error,
            next_attempt_at=retry_at,
        )
