"""Webhooks: signed (Standard Webhooks), each event delivered once, retried while refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from recorder.cli import cli
from recorder.fleet.connect import fleet_database
from recorder.fleet.queue import make_app, open_app
from recorder.fleet.signing import derive_secret
from recorder.fleet.targets import TargetRefused, check_target
from recorder.fleet.webhooks import (
    RetryPolicy,
    WebhookSender,
    register_webhook_task,
    webhook_worker,
)
from recorder.service.app import create_app
from storage.db import create_engine, upgrade_database
from storage.store import TranscriptStore
from storage.tokens import create_token
from tests.support.service import START, add_turns, seed_meeting, serving
from tests.support.webhooks import Receiver, standard_webhooks_verify

KEY = "k" * 40
FAST = RetryPolicy(first_retry_s=0.2, max_retry_s=0.4)


@dataclass
class Setup:
    api: httpx.AsyncClient
    receiver: Receiver
    receiver_url: str
    url: str
    store: TranscriptStore


@pytest.fixture
async def setup(postgres_url: str) -> AsyncIterator[Setup]:
    await upgrade_database(postgres_url)
    engine = create_engine(postgres_url)
    try:
        _, token = await create_token(engine, "hooks")
    finally:
        await engine.dispose()
    receiver = Receiver()
    store = await TranscriptStore.open(postgres_url)
    app = create_app(postgres_url, mcp=False, webhook_key=KEY)
    # The webhook half of a 'recorder worker' (recorder.fleet.webhooks), in this process.
    database = fleet_database(postgres_url)
    fleet = make_app(database)
    engine = create_engine(postgres_url)
    sender = WebhookSender(engine, KEY, policy=FAST)
    register_webhook_task(fleet, sender)
    await open_app(fleet, database)
    try:
        async with (
            sender,
            webhook_worker(fleet, sender, database.conninfo, name="tests", poll_s=0.2),
            serving(receiver) as receiver_url,
            serving(app) as base_url,
        ):
            async with httpx.AsyncClient(
                base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as api:
                yield Setup(api, receiver, receiver_url, postgres_url, store)
    finally:
        await fleet.close_async()
        await engine.dispose()
        await store.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/",
        "http://localhost/",
        "http://10.1.2.3/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "ftp://example.com/",
        "http:///nohost",
    ],
)
async def test_private_and_odd_targets_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused):
        await check_target(url, allow_private=False)


@pytest.mark.postgres
async def test_events_arrive_signed_once_each(setup: Setup) -> None:
    refused = await setup.api.post(
        "/v1/webhooks", json={"url": setup.receiver_url, "events": ["turn.final"]}
    )
    assert refused.status_code == 422 and "private" in refused.json()["error"]["message"]
    created = await setup.api.post(
        "/v1/webhooks",
        json={
            "url": setup.receiver_url,
            "events": ["turn.final", "meeting.ended"],
            "allow_private_targets": True,
        },
    )
    assert created.status_code == 201
    hook = created.json()
    assert hook["secret"].startswith("whsec_")
    assert hook["secret"] == derive_secret(KEY, hook["id"], await _salt(setup.url, hook["id"]))
    meeting_id = await seed_meeting(setup.store, finish=False)
    script = [(101, i * 1000, i * 1000 + 800, f"words number {i}") for i in range(5)]
    await add_turns(setup.store, meeting_id, {}, script)
    await setup.store.finish_meeting(meeting_id, START + timedelta(seconds=10))
    await setup.receiver.wait(lambda: len(setup.receiver.received) >= 6)
    received = setup.receiver.received
    # Standard Webhooks promises no order across events; each arrives once.
    assert sorted(setup.receiver.kinds()) == ["meeting.ended"] + ["turn.final"] * 5
    assert len({headers["webhook-id"] for headers, _ in received}) == 6
    for headers, body in received:
        assert standard_webhooks_verify(hook["secret"], headers, body)
        assert not standard_webhooks_verify(hook["secret"], headers, body + b" ")
    texts = sorted(
        json.loads(body)["data"]["text"]
        for _, body in received
        if json.loads(body)["type"] == "turn.final"
    )
    assert texts == sorted(text for *_, text in script)
    log = (await setup.api.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()
    assert {d["status"] for d in log} == {"delivered"} and len(log) == 6
    # Sent by the queue's workers: one procrastinate job per delivery.
    assert await _jobs(setup.url, "succeeded") == 6


async def _jobs(url: str, status: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return int(
                await connection.scalar(
                    text(
                        "SELECT count(*) FROM procrastinate_jobs "
                        "WHERE task_name = 'recorder.deliver_webhook' AND status = :s"
                    ),
                    {"s": status},
                )
                or 0
            )
    finally:
        await engine.dispose()


def test_delivery_retries_back_off_and_stop_after_a_day() -> None:
    policy = RetryPolicy(first_retry_s=5, max_retry_s=3600)
    assert [policy.next_delay_s(n) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert policy.next_delay_s(30) == 3600 and policy.give_up_after == timedelta(days=1)


@pytest.mark.postgres
async def test_a_failing_receiver_gets_every_event_later(setup: Setup) -> None:
    hook = (
        await setup.api.post(
            "/v1/webhooks",
            json={"url": setup.receiver_url, "events": ["*"], "allow_private_targets": True},
        )
    ).json()
    setup.receiver.failing = True
    meeting_id = await seed_meeting(setup.store, finish=False)
    await add_turns(
        setup.store, meeting_id, {}, [(7, i * 10, i * 10 + 5, f"t{i}") for i in range(4)]
    )
    # Retried: several refusals, and the log says so.
    await setup.receiver.wait(lambda: setup.receiver.refused >= 10)
    log = (await setup.api.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()
    assert {d["status"] for d in log} == {"pending"}
    assert max(d["attempts"] for d in log) >= 2 and {d["last_status"] for d in log} == {500}
    setup.receiver.failing = False
    await setup.store.finish_meeting(meeting_id, START + timedelta(seconds=1))
    expected = 1 + 4 + 1  # started, four turns, ended
    await setup.receiver.wait(lambda: len(setup.receiver.received) >= expected)
    ids = [headers["webhook-id"] for headers, _ in setup.receiver.received]
    assert len(ids) == len(set(ids)) == expected
    assert sorted(setup.receiver.kinds()) == sorted(
        ["meeting.started", "meeting.ended"] + ["turn.final"] * 4
    )


@pytest.mark.postgres
async def test_webhooks_cli(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    await upgrade_database(postgres_url)
    runner = CliRunner()

    def invoke(*args: str):
        return asyncio.to_thread(runner.invoke, cli, [*args, "--db", postgres_url])

    missing_key = await invoke("webhooks", "add", "https://example.com/hook")
    assert missing_key.exit_code == 1 and "RECORDER_WEBHOOK_KEY" in missing_key.output
    monkeypatch.setenv("RECORDER_WEBHOOK_KEY", KEY)
    refused = await invoke("webhooks", "add", "http://127.0.0.1:9/hook")
    assert refused.exit_code == 2 and "private" in refused.output
    bad = await invoke("webhooks", "add", "http://127.0.0.1:9/", "--events", "nope")
    assert bad.exit_code == 2 and "unknown event kind" in bad.output
    added = await invoke(
        "webhooks",
        "add",
        "http://127.0.0.1:9/hook",
        "--events",
        "turn.final",
        "--allow-private-targets",
    )
    assert added.exit_code == 0, added.output
    secret = added.stdout.strip()
    assert secret.startswith("whsec_")
    listed = json.loads((await invoke("webhooks", "list", "--json")).stdout)
    assert listed == [{"id": 1, "url": "http://127.0.0.1:9/hook", "events": ["turn.final"]}]
    engine = create_engine(postgres_url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(text("SELECT * FROM webhook_endpoints"))).all()
    finally:
        await engine.dispose()
    assert secret not in repr(rows) and secret[6:] not in repr(rows)
    assert (await invoke("webhooks", "log")).exit_code == 0
    assert (await invoke("webhooks", "remove", "1")).exit_code == 0
    assert json.loads((await invoke("webhooks", "list", "--json")).stdout) == []


async def _salt(url: str, endpoint_id: int) -> str:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return str(
                await connection.scalar(
                    text("SELECT salt FROM webhook_endpoints WHERE id = :i"), {"i": endpoint_id}
                )
            )
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_finished_jobs_are_pruned(postgres_url: str) -> None:
    from recorder.fleet.queue import WEBHOOK_QUEUE, prune_jobs

    await upgrade_database(postgres_url)
    database = fleet_database(postgres_url)
    fleet = make_app(database)
    engine = create_engine(postgres_url)
    register_webhook_task(fleet, WebhookSender(engine, KEY))
    await open_app(fleet, database)
    try:
        defer = fleet.configure_task(name="recorder.deliver_webhook", queue=WEBHOOK_QUEUE)
        old, fresh, waiting = [await defer.defer_async(delivery_id=n) for n in (1, 2, 3)]
        async with engine.begin() as connection:
            await connection.execute(
                text("UPDATE procrastinate_jobs SET status = 'succeeded' WHERE id IN (:a, :b)"),
                {"a": old, "b": fresh},
            )
            await connection.execute(
                text(
                    "UPDATE procrastinate_events SET at = now() - interval '2 hours' "
                    "WHERE job_id = :a"
                ),
                {"a": old},
            )
        await prune_jobs(fleet)
        async with engine.connect() as connection:
            left = set(
                (await connection.execute(text("SELECT id FROM procrastinate_jobs"))).scalars()
            )
        assert left == {fresh, waiting}
    finally:
        await fleet.close_async()
        await engine.dispose()
