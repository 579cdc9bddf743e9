"""``/v1/webhooks``: add, list and remove webhook endpoints, and read their delivery log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from recorder.fleet.targets import TargetRefused, check_target
from recorder.service.auth import require_token
from recorder.service.errors import ApiError
from recorder.service.schemas import ErrorResponse, SafeText
from recorder.service.state import Service, service_of

__all__ = [
    "DeliveryOut",
    "WebhookCreate",
    "WebhookCreated",
    "WebhookOut",
    "add_webhook",
    "list_webhooks",
    "remove_webhook",
    "router",
    "webhook_deliveries",
]

router = APIRouter(
    prefix="/v1",
    dependencies=[Depends(require_token)],
    responses={status: {"model": ErrorResponse} for status in (400, 401, 404, 422, 503)},
)
ServiceDep = Annotated[Service, Depends(service_of)]
EndpointId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class WebhookCreate(BaseModel):
    """A URL and the events it wants (``*`` for all)."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[SafeText, Field(min_length=1, max_length=2000)]
    events: Annotated[
        list[Annotated[str, Field(max_length=40)]], Field(min_length=1, max_length=10)
    ]
    allow_private_targets: bool = False


class WebhookOut(BaseModel):
    """An endpoint (its secret is shown only when it is created)."""

    id: int
    url: str
    events: list[str]
    created_at: datetime | None


class WebhookCreated(WebhookOut):
    """A new endpoint with its signing secret: store it now, it is not shown again."""

    secret: str


class DeliveryOut(BaseModel):
    """One event sent (or being sent) to an endpoint."""

    id: int
    event_id: int
    kind: str
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None


def _server_key(service: Service) -> str:
    if not service.webhook_key:
        raise ApiError(503, "webhooks are off: start the service with RECORDER_WEBHOOK_KEY set")
    return service.webhook_key


@router.post("/webhooks", status_code=201, response_model=WebhookCreated, summary="Add a webhook")
async def add_webhook(
    request: Annotated[WebhookCreate, Body()], service: ServiceDep
) -> WebhookCreated:
    """Send these events to this URL, signed the Standard Webhooks way.

    The response holds the endpoint's ``whsec_`` secret, shown only this once.
    """
    from recorder.fleet.signing import derive_secret
    from storage.webhooks import add_endpoint, check_events

    try:
        events = check_events(request.events)
        await check_target(request.url, allow_private=request.allow_private_targets)
    except (ValueError, TargetRefused) as exc:
        raise ApiError(422, str(exc)) from exc
    key = _server_key(service)
    endpoint = await add_endpoint(
        service.engine, request.url, events, allow_private=request.allow_private_targets
    )
    return WebhookCreated(
        id=endpoint.id,
        url=endpoint.url,
        events=list(endpoint.events),
        created_at=endpoint.created_at,
        secret=derive_secret(key, endpoint.id, endpoint.salt),
    )


@router.get("/webhooks", response_model=list[WebhookOut], summary="List webhooks")
async def list_webhooks(service: ServiceDep) -> list[WebhookOut]:
    """Active endpoints, oldest first."""
    from storage.webhooks import list_endpoints

    return [
        WebhookOut(id=e.id, url=e.url, events=list(e.events), created_at=e.created_at)
        for e in await list_endpoints(service.engine)
    ]


@router.delete(
    "/webhooks/{endpoint_id}", status_code=204, response_class=Response, summary="Remove a webhook"
)
async def remove_webhook(endpoint_id: EndpointId, service: ServiceDep) -> Response:
    """Stop sending to the endpoint; its delivery log stays."""
    from storage.webhooks import remove_endpoint

    await remove_endpoint(service.engine, endpoint_id)
    return Response(status_code=204)


@router.get(
    "/webhooks/{endpoint_id}/deliveries",
    response_model=list[DeliveryOut],
    summary="A webhook's delivery log",
)
async def webhook_deliveries(
    endpoint_id: EndpointId,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[DeliveryOut]:
    """Deliveries to the endpoint, newest first."""
    from storage.webhooks import deliveries, get_endpoint

    await get_endpoint(service.engine, endpoint_id)
    return [
        DeliveryOut(
            id=d.id,
            event_id=d.event_id,
            kind=d.kind,
            status=d.status,
            attempts=d.attempts,
            created_at=d.created_at,
            next_attempt_at=d.next_attempt_at,
            last_attempt_at=d.last_attempt_at,
            last_status=d.last_status,
            last_error=d.last_error,
        )
        for d in await deliveries(service.engine, endpoint_id=endpoint_id, limit=limit)
    ]
