"""What every request of one service process shares: the store, an engine, the live-event hub."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

if TYPE_CHECKING:
    from procrastinate import App
    from sqlalchemy.ext.asyncio import AsyncEngine

    from recorder.service.hub import EventHub
    from storage.store import TranscriptStore

__all__ = ["Service", "service_of"]


@dataclass
class Service:
    """The open resources of a running service (made by the app's lifespan).

    Attributes:
        store: the transcript store (meetings, transcripts, search, names).
        engine: a pooled engine for the service's own tables (tokens, events, audit).
        hub: wakes live-event streams when a recorder commits events.
        database_url: the database URL (with its password; never shown).
        webhook_key: the root of webhook signing secrets (None: webhooks are off).
        fleet: the fleet's procrastinate app (recordings are queued through it).
    """

    store: TranscriptStore
    engine: AsyncEngine
    hub: EventHub
    database_url: str = field(repr=False)
    webhook_key: str | None = field(default=None, repr=False)
    fleet: App | None = None


def service_of(request: Request) -> Service:
    """The service of the app serving ``request`` (a FastAPI dependency)."""
    service: Service = request.app.state.service
    return service
