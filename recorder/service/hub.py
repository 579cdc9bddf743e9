"""One LISTEN connection per service process, fanning committed events out to live streams.

Recorders write events and ``pg_notify`` in the transaction that commits them
(:mod:`storage.events`). The hub listens on one dedicated connection; per
meeting with subscribers it keeps one feed, which on each wake-up reads the new
events once and hands them to every subscriber, so 200 clients of one meeting
cost one query per commit, not 200. A feed also polls every ``poll_s`` seconds,
which covers notifications missed while the listening connection was down.

A subscriber that falls behind by more than its queue holds is told so (it
then catches up from the database by id), so nothing is lost either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.db import create_engine
from storage.events import CHANNEL, MeetingEvent, events_after, last_event_id

__all__ = ["OVERFLOW", "EventHub", "Subscription"]

log = logging.getLogger("recorder.service.hub")

# Put on a subscriber's queue when it fell behind: catch up from the database.
OVERFLOW: list[MeetingEvent] = []
_QUEUE_BATCHES = 256
_RECONNECT_S = (0.5, 1.0, 2.0, 5.0)


class Subscription:
    """A live stream's view of one meeting's feed: batches of new events, in id order."""

    def __init__(self, feed: _Feed) -> None:
        self._feed = feed
        self.queue: asyncio.Queue[Sequence[MeetingEvent]] = asyncio.Queue(_QUEUE_BATCHES)

    def deliver(self, events: Sequence[MeetingEvent]) -> None:
        """Queue a batch, or mark the overflow."""
        try:
            self.queue.put_nowait(events)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(OVERFLOW)

    def close(self) -> None:
        """Stop receiving."""
        self._feed.unsubscribe(self)


class _Feed:
    def __init__(self, hub: EventHub, meeting_id: int, cursor: int) -> None:
        self.hub = hub
        self.meeting_id = meeting_id
        self.cursor = cursor
        self.subscribers: set[Subscription] = set()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscribers.discard(subscription)
        if not self.subscribers:
            self.wake.set()  # let the task notice and end

    async def run(self) -> None:
        while self.subscribers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.hub.poll_s)
            self.wake.clear()
            if not self.subscribers:
                break
            try:
                await self._fetch()
            except Exception as exc:  # the database went away: retry on the next wake or poll
                log.warning("! reading events of meeting %d failed: %s", self.meeting_id, exc)
        self.hub.drop_feed(self)

    async def _fetch(self) -> None:
        while True:
            events = await events_after(self.hub.engine, self.meeting_id, self.cursor)
            if not events:
                return
            self.cursor = events[-1].id
            self.hub.delivered += len(events)
            for subscriber in list(self.subscribers):
                subscriber.deliver(events)
            if len(events) < 1000:
                return


class EventHub:
    """Wakes the feeds of meetings whose recorders committed events.

    Args:
        database_url: the database the recorders write to.
        engine: the service's pooled engine, for reading events.
        poll_s: read each followed meeting's events at least this often.
    """

    def __init__(self, database_url: str, engine: AsyncEngine, *, poll_s: float = 5.0) -> None:
        self._url = database_url
        self.engine = engine
        self.poll_s = poll_s
        self.delivered = 0
        self._feeds: dict[int, _Feed] = {}
        self._listen_engine: AsyncEngine | None = None
        self._connection: AsyncConnection | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.is_listening = False
        # The server process of the LISTEN connection (tests end it to check recovery).
        self.listener_pid: int | None = None
        # Called on every notification (the webhook dispatcher's wake-up).
        self.on_notify: list[Callable[[], None]] = []

    async def start(self) -> None:
        """Start listening (retrying in the background if the database is down)."""
        self._listen_engine = create_engine(self._url, pooled=False)
        with contextlib.suppress(Exception):
            await self._listen()
        self._task = asyncio.create_task(self._supervise(), name="event-hub")

    async def stop(self) -> None:
        """Stop listening and every feed."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for feed in list(self._feeds.values()):
            if feed.task is not None:
                feed.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feed.task
        self._feeds.clear()
        await self._close_connection()
        if self._listen_engine is not None:
            await self._listen_engine.dispose()

    async def _listen(self) -> None:
        assert self._listen_engine is not None
        connection = await self._listen_engine.connect()
        try:
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection
            await driver.add_listener(CHANNEL, self._on_notify)
            driver.add_termination_listener(lambda _connection: self._on_lost())
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        self.listener_pid = int(driver.get_server_pid())
        self._lost.clear()
        self.is_listening = True
        # Anything committed while we were not listening: every feed looks again.
        for feed in self._feeds.values():
            feed.wake.set()

    def _on_lost(self) -> None:
        self.is_listening = False
        self._lost.set()

    async def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        self.is_listening = False
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.invalidate()

    async def _supervise(self) -> None:
        attempt = 0
        while True:
            if self.is_listening:
                await self._lost.wait()
                log.warning("! lost the event listener's database connection; reconnecting")
                await self._close_connection()
            await asyncio.sleep(_RECONNECT_S[min(attempt, len(_RECONNECT_S) - 1)])
            try:
                await self._listen()
                attempt = 0
            except Exception as exc:
                attempt += 1
                log.warning("! cannot listen for events yet: %s", exc)

    def _on_notify(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        for callback in self.on_notify:
            callback()
        try:
            meeting_id = int(payload)
        except ValueError:
            return
        feed = self._feeds.get(meeting_id)
        if feed is not None:
            feed.wake.set()

    async def subscribe(self, meeting_id: int) -> Subscription:
        """Follow a meeting: every event committed after this call arrives on the queue.

        Earlier events are the caller's to read from the database (overlaps are
        the caller's to drop by id).
        """
        feed = self._feeds.get(meeting_id)
        if feed is None:
            cursor = await last_event_id(self.engine, meeting_id)
            feed = self._feeds.get(meeting_id)  # another subscriber may have won the race
            if feed is None:
                feed = _Feed(self, meeting_id, cursor)
                self._feeds[meeting_id] = feed
        subscription = Subscription(feed)
        feed.subscribers.add(subscription)
        if feed.task is None or feed.task.done():
            feed.task = asyncio.create_task(feed.run(), name=f"events-{meeting_id}")
        return subscription

    def drop_feed(self, feed: _Feed) -> None:
        """Forget a feed without subscribers."""
        if self._feeds.get(feed.meeting_id) is feed and not feed.subscribers:
            del self._feeds[feed.meeting_id]

    @property
    def followed(self) -> int:
        """Meetings with at least one live stream."""
        return len(self._feeds)

    async def catch_up(self, meeting_id: int, after_id: int) -> list[MeetingEvent]:
        """Events after ``after_id`` straight from the database (one page)."""
        return await events_after(self.engine, meeting_id, after_id)
