"""Webhook delivery: a POST when a job ends, retried as the spec says (checklist item 21)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from recorder.emulator.batch.jobs import Job

__all__ = ["deliver"]


async def deliver(
    job: Job,
    *,
    attempts: int,
    retry_s: float,
    record: Callable[[str, dict[str, Any], int | None], None],
) -> None:
    """POST ``{"transcript_id", "status"}`` until a 2xx or a 4xx, at most ``attempts`` times."""
    url = str(job.params["webhook_url"])
    payload = {"transcript_id": job.id, "status": job.status}
    headers = {"Content-Type": "application/json"}
    if job.params.get("webhook_auth_header_name"):
        headers[job.params["webhook_auth_header_name"]] = str(
            job.params.get("webhook_auth_header_value", "")
        )
    for attempt in range(attempts):
        status = await asyncio.to_thread(_post, url, payload, headers)
        record(url, payload, status)
        job.webhook_status_code = status
        if status is not None and (200 <= status < 300 or 400 <= status < 500):
            return
        if attempt + 1 < attempts:
            await asyncio.sleep(retry_s)


def _post(url: str, payload: dict[str, Any], headers: dict[str, str]) -> int | None:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None
