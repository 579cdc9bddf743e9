"""The HTTP API against a real PostgreSQL and a real uvicorn on loopback: auth, reads, writes."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from recorder.cli import cli
from recorder.errors import ConfigError
from recorder.export.exporter import iter_export
from recorder.service.app import create_app
from storage.db import create_engine, upgrade_database
from storage.store import TranscriptStore
from storage.tokens import create_token, revoke_token
from tests.support.service import START, seed_meeting, serving

pytestmark = pytest.mark.postgres

TURNS = [
    (101, 0, 2000, "good morning everyone"),
    (102, 2500, 4000, "morning, the budget is ready"),
    (101, 4500, 6000, "<script>alert(1)</script> & more"),
]


@dataclass
class Api:
    client: httpx.AsyncClient
    base_url: str
    url: str
    token: str
    store: TranscriptStore


@pytest.fixture
async def migrated(postgres_url: str) -> str:
    await upgrade_database(postgres_url)
    return postgres_url


@pytest.fixture
async def api(migrated: str) -> AsyncIterator[Api]:
    engine = create_engine(migrated)
    try:
        _, token = await create_token(engine, "tests")
    finally:
        await engine.dispose()
    app = create_app(migrated, poll_s=0.5)
    store = await TranscriptStore.open(migrated)
    try:
        async with serving(app) as base_url:
            async with httpx.AsyncClient(
                base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as client:
                yield Api(client, base_url, migrated, token, store)
    finally:
        await store.close()


# -- service set-up and auth ----------------------------------------------------------


def test_sqlite_is_refused_with_a_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="needs PostgreSQL"):
        create_app(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    result = CliRunner().invoke(cli, ["serve", "--db", f"sqlite+aiosqlite:///{tmp_path}/r.db"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: the service needs PostgreSQL")
    assert "Traceback" not in result.output


async def test_health_needs_no_token_and_readyz_checks_the_database(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.base_url) as anonymous:
        assert (await anonymous.get("/healthz")).json() == {"status": "ok"}
        ready = await anonymous.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ok"


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Token abc", "Basic dXNlcjpwYXNz", "Bearer rec_wrong", "Bearer x" * 100],
)
async def test_missing_or_wrong_token_is_a_json_401(api: Api, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    async with httpx.AsyncClient(base_url=api.base_url, headers=headers) as client:
        for path in ("/v1/meetings", "/v1/search?q=x", "/v1/meetings/1/events"):
            response = await client.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"]["code"] == "unauthorized"


async def test_a_revoked_token_is_refused_at_once(api: Api) -> None:
    engine = create_engine(api.url)
    try:
        _, token = await create_token(engine, "short-lived")
        headers = {"Authorization": f"Bearer {token}"}
        assert (await api.client.get("/v1/meetings", headers=headers)).status_code == 200
        await revoke_token(engine, "short-lived")
        refused = await api.client.get("/v1/meetings", headers=headers)
        assert refused.status_code == 401
        assert token not in refused.text
    finally:
        await engine.dispose()


async def test_tokens_are_stored_hashed_and_never_logged(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await api.client.get("/v1/meetings")
    await api.client.get("/v1/meetings", headers={"Authorization": "Bearer rec_notmine"})
    engine = create_engine(api.url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(text("SELECT * FROM api_tokens"))).all()
    finally:
        await engine.dispose()
    stored = json.dumps([list(map(str, row)) for row in rows])
    assert api.token not in stored and api.token[8:] not in stored
    assert api.token not in caplog.text and "rec_notmine" not in caplog.text


def test_tokens_cli_creates_lists_and_revokes(migrated: str) -> None:
    runner = CliRunner()
    created = runner.invoke(cli, ["tokens", "create", "--name", "app1", "--db", migrated])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert token.startswith("rec_") and len(token) > 40
    again = runner.invoke(cli, ["tokens", "create", "--name", "app1", "--db", migrated])
    assert again.exit_code == 2 and "exists already" in again.output
    listed = runner.invoke(cli, ["tokens", "list", "--json", "--db", migrated])
    assert listed.exit_code == 0
    (entry,) = json.loads(listed.stdout)
    assert entry["name"] == "app1" and entry["active"] and token not in listed.stdout
    table = runner.invoke(cli, ["tokens", "list", "--db", migrated])
    assert "app1" in table.stdout and token not in table.stdout
    revoked = runner.invoke(cli, ["tokens", "revoke", "app1", "--db", migrated])
    assert revoked.exit_code == 0
    assert (
        json.loads(runner.invoke(cli, ["tokens", "list", "--json", "--db", migrated]).stdout)[0][
            "active"
        ]
        is False
    )
    missing = runner.invoke(cli, ["tokens", "revoke", "app1", "--db", migrated])
    assert missing.exit_code == 1 and missing.output.startswith("error: no active token")


# -- reads ----------------------------------------------------------------------------


async def test_meetings_are_listed_newest_first_with_filters_and_cursor(api: Api) -> None:
    ids = []
    for n in range(7):
        ids.append(
            await seed_meeting(
                api.store,
                "standup" if n % 2 == 0 else "retro",
                [(101, 0, 1000, f"turn {n}")],
                started_at=START + timedelta(hours=n),
            )
        )
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await api.client.get("/v1/meetings", params=params)).json()
        seen += [m["id"] for m in page["meetings"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    standup = (await api.client.get("/v1/meetings", params={"channel": "standup"})).json()
    assert [m["id"] for m in standup["meetings"]] == [ids[6], ids[4], ids[2], ids[0]]
    since = (START + timedelta(hours=5)).isoformat()
    recent = (await api.client.get("/v1/meetings", params={"since": since})).json()
    assert [m["id"] for m in recent["meetings"]] == [ids[6], ids[5]]
    first = recent["meetings"][0]
    assert first["status"] == "completed" and first["turn_count"] == 1


async def test_one_meeting_with_participants_and_notes(api: Api) -> None:
    meeting_id = await seed_meeting(api.store, turns=TURNS, names={101: "Alice"})
    await api.store.add_note(meeting_id, "recap", "They agreed.", created_at=START)
    body = (await api.client.get(f"/v1/meetings/{meeting_id}")).json()
    assert body["meeting"]["id"] == meeting_id
    names = {p["uid"]: p["display_name"] for p in body["participants"]}
    assert names == {101: "Alice", 102: None}
    assert [n["text"] for n in body["notes"]] == ["They agreed."]
    notes = (await api.client.get(f"/v1/meetings/{meeting_id}/notes")).json()
    assert [n["kind"] for n in notes] == ["recap"]
    missing = await api.client.get("/v1/meetings/999999")
    assert missing.status_code == 404 and "no meeting" in missing.json()["error"]["message"]


@pytest.mark.parametrize("fmt", ["json", "md", "html", "txt", "srt", "vtt"])
async def test_transcript_is_the_export_in_every_format(api: Api, fmt: str) -> None:
    meeting_id = await seed_meeting(api.store, turns=TURNS, names={101: "Alice"})
    response = await api.client.get(f"/v1/meetings/{meeting_id}/transcript", params={"format": fmt})
    assert response.status_code == 200
    header = await api.store.get_meeting(meeting_id, with_turns=False)
    turns = api.store.iter_turns(meeting_id)
    expected = "".join([piece async for piece in iter_export(header, turns, fmt)])
    assert response.text == expected
    if fmt == "html":
        assert "<script>alert(1)</script>" not in response.text
        assert response.headers["content-type"].startswith("text/html")


async def test_participant_is_renamed_and_the_name_is_validated(api: Api) -> None:
    meeting_id = await seed_meeting(api.store, turns=TURNS)
    path = f"/v1/meetings/{meeting_id}/participants/102"
    renamed = await api.client.patch(path, json={"display_name": " Bob "})
    assert renamed.status_code == 200 and renamed.json()["display_name"] == "Bob"
    header = await api.store.get_meeting(meeting_id, with_turns=False)
    assert {p.uid: p.display_name for p in header.participants}[102] == "Bob"
    cleared = await api.client.patch(path, json={"display_name": None})
    assert cleared.json()["display_name"] is None
    nobody = await api.client.patch(
        f"/v1/meetings/{meeting_id}/participants/5", json={"display_name": "X"}
    )
    assert nobody.status_code == 404


async def test_delete_is_irreversible_and_audited(api: Api, tmp_path: Path) -> None:
    from storage.audio import add_segment

    meeting_id = await seed_meeting(api.store, turns=TURNS)
    await api.store.add_note(meeting_id, "recap", "gone soon", created_at=START)
    audio = tmp_path / "101-0.flac"
    audio.write_bytes(b"fLaC")  # noqa: ASYNC240 - a few bytes
    await add_segment(
        api.store, meeting_id, 101, start_ms=0, sample_rate_hz=16000, format="flac", path=str(audio)
    )
    live = await seed_meeting(api.store, turns=TURNS, finish=False)
    assert (await api.client.delete(f"/v1/meetings/{live}")).status_code == 409
    deleted = await api.client.delete(f"/v1/meetings/{meeting_id}")
    assert deleted.status_code == 204
    assert (await api.client.get(f"/v1/meetings/{meeting_id}")).status_code == 404
    assert (await api.client.delete(f"/v1/meetings/{meeting_id}")).status_code == 404
    engine = create_engine(api.url)
    try:
        async with engine.connect() as connection:
            left = {
                name: await connection.scalar(
                    text(f"SELECT count(*) FROM {name} WHERE meeting_id = :m"), {"m": meeting_id}
                )
                for name in ("turns", "participants", "notes", "stream_sessions", "meeting_events")
            }
            audit = (
                await connection.execute(text("SELECT actor, action, target FROM audit_log"))
            ).all()
    finally:
        await engine.dispose()
    assert set(left.values()) == {0}
    assert not audio.exists()
    assert [tuple(row) for row in audit] == [
        ("token:tests", "meeting.delete", f"meeting:{meeting_id}")
    ]


async def test_search_is_the_cli_search(api: Api) -> None:
    meeting_id = await seed_meeting(api.store, turns=TURNS, names={102: "Bob"})
    await seed_meeting(api.store, "retro", [(103, 0, 1000, "budget talk elsewhere")])
    hits = (await api.client.get("/v1/search", params={"q": "budget"})).json()["hits"]
    assert len(hits) == 2
    expected = await api.store.search("budget", channel="standup", speaker="Bob")
    narrowed = (
        await api.client.get(
            "/v1/search", params={"q": "budget", "channel": "standup", "speaker": "Bob"}
        )
    ).json()["hits"]
    assert [h["turn_id"] for h in narrowed] == [h.turn_id for h in expected]
    assert narrowed[0]["meeting_id"] == meeting_id and "«budget»" in narrowed[0]["snippet"]


async def test_openapi_lists_every_route(api: Api) -> None:
    from fastapi.routing import APIRoute

    schema = (await api.client.get("/openapi.json")).json()
    app = create_app(api.url)
    routes = {
        (route.path, method)
        for route in app.routes
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods
    }
    documented = {
        (path, method.upper()) for path, item in schema["paths"].items() for method in item
    }
    expected = {
        ("/healthz", "GET"),
        ("/readyz", "GET"),
        ("/v1/meetings", "GET"),
        ("/v1/meetings/{meeting_id}", "GET"),
        ("/v1/meetings/{meeting_id}", "DELETE"),
        ("/v1/meetings/{meeting_id}/transcript", "GET"),
        ("/v1/meetings/{meeting_id}/notes", "GET"),
        ("/v1/meetings/{meeting_id}/participants/{uid}", "PATCH"),
        ("/v1/meetings/{meeting_id}/events", "GET"),
        ("/v1/search", "GET"),
        ("/v1/sql", "POST"),
        ("/v1/recordings", "GET"),
        ("/v1/recordings", "POST"),
        ("/v1/recordings/{recording_id}", "GET"),
        ("/v1/recordings/{recording_id}/stop", "POST"),
        ("/v1/recordings/{recording_id}/cancel", "POST"),
        ("/v1/webhooks", "GET"),
        ("/v1/webhooks", "POST"),
        ("/v1/webhooks/{endpoint_id}", "DELETE"),
        ("/v1/webhooks/{endpoint_id}/deliveries", "GET"),
    }
    assert routes <= documented
    assert expected == documented
    assert "HTTPBearer" in json.dumps(schema["components"]["securitySchemes"])


async def test_a_token_in_use_shows_when_it_was_last_used(api: Api) -> None:
    from storage.tokens import list_tokens

    assert (await api.client.get("/v1/meetings")).status_code == 200
    engine = create_engine(api.url)
    try:
        (token,) = await list_tokens(engine)
    finally:
        await engine.dispose()
    assert token.name == "tests" and token.last_used_at is not None
