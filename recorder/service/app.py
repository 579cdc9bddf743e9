"""The FastAPI application: ``create_app(database_url)`` and nothing global.

The lifespan opens the transcript store, a pooled engine for the service's
own tables, and the live-event hub, and closes them on shutdown. Routes live
in one module per resource (:mod:`~recorder.service.meetings`,
:mod:`~recorder.service.live`, :mod:`~recorder.service.sql`); every error is a
JSON body (:mod:`~recorder.service.errors`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from recorder import __version__
from recorder.errors import ConfigError
from recorder.service import live, meetings, recordings, sql, web, webhooks
from recorder.service.errors import error_response, install_error_handlers
from recorder.service.hub import EventHub
from recorder.service.limits import BodyLimit
from recorder.service.schemas import ErrorResponse
from recorder.service.state import Service
from storage.db import create_engine, normalize_url
from storage.errors import mask_url

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "Health",
    "create_app",
    "require_postgres",
]

DEFAULT_MAX_BODY_BYTES = 1 << 20


class Health(BaseModel):
    """The process answers; ``/readyz`` also checks the database."""

    status: str


def require_postgres(database_url: str) -> None:
    """Refuse any database but PostgreSQL, with what to do instead.

    Raises:
        ConfigError: the URL is malformed or not PostgreSQL.
    """
    url = normalize_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ConfigError(
            f"the service needs PostgreSQL, but the database is {mask_url(url)}; pass "
            "--db postgresql+asyncpg://user@host/db (or set RECORDER_DATABASE_URL)"
        )


def create_app(
    database_url: str,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    poll_s: float = 5.0,
    mcp: bool = True,
    webhook_key: str | None = None,
) -> FastAPI:
    """Build the service for one PostgreSQL database (migrated to head beforehand).

    Args:
        database_url: a ``postgresql+asyncpg://`` URL.
        max_body_bytes: larger request bodies are refused with 413.
        poll_s: how often live streams look for events they were not woken for.
        mcp: also serve the MCP endpoint at ``/mcp``.
        webhook_key: ``RECORDER_WEBHOOK_KEY``, to give new endpoints their secret
            (None: webhooks cannot be added). Workers send them (recorder.fleet.webhooks).

    Raises:
        ConfigError: not a PostgreSQL URL.
    """
    require_postgres(database_url)
    endpoint = None
    if mcp:
        from recorder.service.mcp import McpEndpoint

        endpoint = McpEndpoint()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from recorder.fleet.connect import fleet_database
        from recorder.fleet.control import open_fleet
        from storage.store import TranscriptStore

        async with AsyncExitStack() as stack:
            store = await TranscriptStore.open(database_url, auto_migrate=False)
            stack.push_async_callback(store.close)
            engine = create_engine(database_url)
            stack.push_async_callback(engine.dispose)
            fleet = await stack.enter_async_context(open_fleet(fleet_database(database_url)))
            hub = EventHub(database_url, engine, poll_s=poll_s)
            await hub.start()
            stack.push_async_callback(hub.stop)
            app.state.service = Service(
                store=store,
                engine=engine,
                hub=hub,
                database_url=database_url,
                webhook_key=webhook_key,
                fleet=fleet,
            )
            if endpoint is not None:
                endpoint.backend.store = store
                endpoint.backend.database_url = database_url
                await stack.enter_async_context(endpoint.run())
            yield

    app = FastAPI(
        title="recorder",
        version=__version__,
        summary="Meeting transcripts over HTTP: list, read, search, follow live.",
        lifespan=lifespan,
        responses={401: {"model": ErrorResponse}},
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    @app.get("/healthz", response_model=Health, tags=["health"], summary="Liveness")
    async def healthz() -> Health:
        """The process is up (no auth, no database)."""
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Health,
        tags=["health"],
        summary="Readiness",
        responses={503: {"model": ErrorResponse}},
    )
    async def readyz(request: Request) -> Any:
        """The database and the fleet's queue answer (no auth)."""
        from sqlalchemy import text

        service: Service = request.app.state.service
        try:
            async with service.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:
            return error_response(503, "the database does not answer")
        try:
            assert service.fleet is not None
            row = await service.fleet.connector.execute_query_one_async(
                "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS ready"
            )
        except Exception:
            return error_response(503, "the fleet's queue does not answer")
        if not row["ready"]:
            return error_response(503, "the fleet's queue has no tables; run 'recorder db upgrade'")
        return JSONResponse({"status": "ok", "events": service.hub.is_listening, "queue": True})

    app.include_router(meetings.router, tags=["meetings"])
    app.include_router(recordings.router, tags=["recordings"])
    app.include_router(live.router, tags=["live"])
    app.include_router(sql.router, tags=["sql"])
    app.include_router(webhooks.router, tags=["webhooks"])
    app.include_router(web.router)
    web.install_sign_in_redirect(app)
    if endpoint is not None:
        # Starlette serves an endpoint that is not a function as a plain ASGI app.
        app.add_route(
            "/mcp",
            endpoint,  # type: ignore[arg-type]
            methods=["GET", "POST", "DELETE"],
            include_in_schema=False,
        )
    return app
