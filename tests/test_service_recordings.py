"""``/v1/recordings`` against a real PostgreSQL: the same queue, checks and messages as the CLI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from recorder.cli import cli
from recorder.fleet.connect import fleet_database
from recorder.fleet.queue import make_app
from recorder.fleet.recordings import Recordings
from recorder.service.app import create_app
from storage.db import create_engine, upgrade_database
from storage.tokens import create_token
from tests.support.service import serving

pytestmark = pytest.mark.postgres

R = "/v1/recordings"


@dataclass
class Api:
    client: httpx.AsyncClient
    url: str


@pytest.fixture
async def api(postgres_url: str) -> AsyncIterator[Api]:
    await upgrade_database(postgres_url)
    engine = create_engine(postgres_url)
    try:
        _, token = await create_token(engine, "tests")
    finally:
        await engine.dispose()
    async with serving(create_app(postgres_url, mcp=False)) as base_url:
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as client:
            yield Api(client, postgres_url)


async def _cli(*args: str) -> tuple[int, str, str]:
    def invoke() -> tuple[int, str, str]:
        result = CliRunner().invoke(cli, list(args))
        return result.exit_code, result.stdout, result.stderr

    return await asyncio.to_thread(invoke)


async def _options(url: str, recording_id: int) -> dict[str, Any]:
    app = make_app(fleet_database(url))
    await app.open_async()
    try:
        row = await Recordings(app.connector).get(recording_id)  # type: ignore[arg-type]
    finally:
        await app.close_async()
    assert row is not None
    return row.options


async def test_create_list_get_stop_cancel(api: Api, tmp_path: Path) -> None:
    script = tmp_path / "m.json"
    script.write_text("{}")  # noqa: ASYNC240 - a few bytes
    created = await api.client.post(R, json={"channel": "standup", "transport": f"replay:{script}"})
    assert created.status_code == 201, created.text
    first = created.json()
    assert first["status"] == "queued" and first["channel"] == "standup"
    assert first["transport"] == f"replay:{script.resolve()}" and first["worker_host"] is None
    # One waiting recording per channel, as 'recorder record' says.
    again = await api.client.post(R, json={"channel": "standup"})
    assert again.status_code == 409
    assert "already has a recording waiting" in again.json()["error"]["message"]
    later = await api.client.post(R, json={"channel": "later", "at": "2099-01-01T09:30:00Z"})
    assert later.status_code == 201 and later.json()["status"] == "scheduled"
    third = (await api.client.post(R, json={"channel": "third"})).json()
    # The CLI sees what the API queued, and the API what the CLI queued.
    code, out, err = await _cli("jobs", "--json", f"--db={api.url}")
    assert code == 0, err
    assert {row["id"] for row in map(json.loads, out.splitlines())} == {
        first["id"],
        later.json()["id"],
        third["id"],
    }
    code, out, err = await _cli("record", "--channel", "fourth", f"--db={api.url}")
    assert code == 0, err
    fourth = int(out)
    assert (await api.client.get(f"{R}/{fourth}")).json()["channel"] == "fourth"
    # Pages, newest first, and filters.
    page = (await api.client.get(R, params={"limit": 3})).json()
    assert [r["id"] for r in page["recordings"]] == [fourth, third["id"], later.json()["id"]]
    rest = (await api.client.get(R, params={"limit": 3, "cursor": page["next_cursor"]})).json()
    assert [r["id"] for r in rest["recordings"]] == [first["id"]] and rest["next_cursor"] is None
    scheduled = (await api.client.get(R, params={"status": "scheduled"})).json()["recordings"]
    assert [r["id"] for r in scheduled] == [later.json()["id"]]
    by_channel = (await api.client.get(R, params={"channel": "third"})).json()["recordings"]
    assert [r["id"] for r in by_channel] == [third["id"]]
    # Stop: not started is a 409 that says to cancel; cancel works; stop after is idempotent.
    stop = await api.client.post(f"{R}/{first['id']}/stop")
    assert stop.status_code == 409 and f"recorder cancel {first['id']}" in stop.text
    cancelled = await api.client.post(f"{R}/{first['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    stopped = await api.client.post(f"{R}/{first['id']}/stop")
    assert stopped.status_code == 200 and stopped.json()["status"] == "cancelled"
    missing = await api.client.get(f"{R}/999999")
    assert missing.status_code == 404 and "no recording 999999" in missing.text
    # The channel is free again.
    assert (await api.client.post(R, json={"channel": "standup"})).status_code == 201


async def test_stop_reaches_the_holder_through_notify(api: Api) -> None:
    import psycopg

    recording = (await api.client.post(R, json={"channel": "live"})).json()
    database = fleet_database(api.url)
    app = make_app(database)
    await app.open_async()
    try:
        recordings = Recordings(app.connector)  # type: ignore[arg-type]
        claim = await recordings.claim(recording["id"], token="t", host="h", pid=1, lease_s=30)
        assert claim is not None
        async with await psycopg.AsyncConnection.connect(
            database.conninfo, autocommit=True
        ) as listener:
            await listener.execute("LISTEN recorder_fleet_stop")
            stopped = await api.client.post(f"{R}/{recording['id']}/stop")
            assert stopped.status_code == 200, stopped.text
            body = stopped.json()
            assert body["status"] == "recording" and body["stop_requested"] is True
            assert body["worker_host"] == "h"
            async with asyncio.timeout(10):
                notice = await anext(listener.notifies())
            assert notice.payload.endswith(f":{recording['id']}")
        cancel = await api.client.post(f"{R}/{recording['id']}/cancel")
        assert cancel.status_code == 409 and f"recorder stop {recording['id']}" in cancel.text
    finally:
        await app.close_async()


async def test_the_api_stores_the_options_the_cli_stores(api: Api, tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("101=Alice\n")  # noqa: ASYNC240 - a few bytes
    code, out, err = await _cli(
        "record", "--channel", "cli", "--recap", "--recap-every", "10m", "--recap-on-end",
        "--keyterms", "Kubernetes, Alice", f"--speaker-names={names}", "--speed", "2",
        "--max-duration", "1h", "--empty-timeout", "30", "--idle-close", "5",
        "--prompt", "be brief", "--notes", f"--db={api.url}",
    )  # fmt: skip
    assert code == 0, err
    created = await api.client.post(
        R,
        json={
            "channel": "api",
            "recap": {"every_s": 600, "on_end": True},
            "keyterms": ["Kubernetes", " Alice"],
            "names": {"101": "Alice"},
            "speed": 2,
            "max_duration_s": 3600,
            "empty_timeout_s": 30,
            "idle_close_s": 5,
            "prompt": "be brief",
            "notes": True,
        },
    )
    assert created.status_code == 201, created.text
    assert await _options(api.url, created.json()["id"]) == await _options(api.url, int(out))


@pytest.mark.parametrize(
    ("flags", "body"),
    [
        (["--speed", "200"], {"speed": 200}),
        (["--idle-close", "0.2"], {"idle_close_s": 0.2}),
        (["--transport", "webex"], {"transport": "webex"}),
        (["--recap", "--recap-every", "5"], {"recap": {"every_s": 5}}),
    ],
)
async def test_the_api_refuses_what_the_cli_refuses(
    api: Api, flags: list[str], body: dict[str, Any]
) -> None:
    code, _, err = await _cli("record", "--channel", "c", *flags, f"--db={api.url}")
    assert code != 0 and "Traceback" not in err
    response = await api.client.post(R, json={"channel": "c", **body})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"]
    assert not (await api.client.get(R)).json()["recordings"]


async def test_readyz_checks_the_queue(api: Api) -> None:
    async with httpx.AsyncClient(base_url=str(api.client.base_url)) as anonymous:
        ready = await anonymous.get("/readyz")
        assert ready.status_code == 200 and ready.json()["queue"] is True
    engine = create_engine(api.url)
    try:
        from sqlalchemy import text

        async with engine.begin() as connection:
            await connection.execute(text("ALTER TABLE procrastinate_jobs RENAME TO gone_jobs"))
        async with httpx.AsyncClient(base_url=str(api.client.base_url)) as anonymous:
            down = await anonymous.get("/readyz")
        assert down.status_code == 503 and "queue" in down.json()["error"]["message"]
        async with engine.begin() as connection:
            await connection.execute(text("ALTER TABLE gone_jobs RENAME TO procrastinate_jobs"))
    finally:
        await engine.dispose()


async def test_a_resumed_meeting_tells_its_live_streams(api: Api) -> None:
    """A takeover: the meeting was reported interrupted, then a worker resumes it."""
    from datetime import UTC, datetime, timedelta

    from storage.store import TranscriptStore

    async with await TranscriptStore.open(api.url) as store:
        start = datetime.now(UTC)
        meeting_id = await store.start_meeting("taken-over", 9999, start)
        await store.finish_meeting(meeting_id, start + timedelta(seconds=1), "interrupted")
        await store.resume_meeting(meeting_id)
        events: list[tuple[str, dict[str, Any]]] = []

        async def follow() -> None:
            path = f"/v1/meetings/{meeting_id}/events"
            async with api.client.stream("GET", path) as sse:
                kind = ""
                async for line in sse.aiter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        events.append((kind, json.loads(line[6:])))

        reader = asyncio.create_task(follow())
        # A fresh client reads past the interrupted end, and stays for the real one.
        while len(events) < 3:
            assert not reader.done(), events
            await asyncio.sleep(0.05)
        await store.finish_meeting(meeting_id, start + timedelta(seconds=5))
        await asyncio.wait_for(reader, 10)
    assert [kind for kind, _ in events] == [
        "meeting.started",
        "meeting.ended",
        "meeting.resumed",
        "meeting.ended",
    ]
    assert events[2][1]["previous_status"] == "interrupted"
    assert events[3][1]["status"] == "completed"
