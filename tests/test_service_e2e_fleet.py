"""End to end on real processes: ``recorder serve``, two ``recorder worker``s, the emulator.

A client asks the API to record a replayed meeting; a worker records it; an SSE
client follows it live and gets every turn exactly once, word for word, then
``meeting.ended``; a webhook receiver (a local HTTP server) that refuses
everything for the first seconds still gets every signed ``turn.final`` and
``meeting.ended`` later, through the workers' delivery queue.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from pathlib import Path

import httpx
import pytest

from storage.db import create_engine, upgrade_database
from storage.tokens import create_token
from tests.support.processes import Proc, clean_env, start
from tests.support.service import serving
from tests.support.timing import TIMEOUT
from tests.support.webhooks import Receiver, standard_webhooks_verify

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

KEY = "e2e-webhook-key-" + "x" * 24
SAYS = ["Alpha bravo charlie.", "Delta echo foxtrot.", "Golf hotel india.", "Juliet kilo lima."]
SCRIPT = {
    "channel": "e2e-fleet",
    "participants": [{"uid": 1, "name": "Ann"}, {"uid": 2, "name": "Ben"}],
    "events": [
        {"at": 0.0, "uid": 1, "join": True},
        {"at": 0.0, "uid": 2, "join": True},
        {"at": 0.3, "uid": 1, "say": SAYS[0]},
        {"at": 1.6, "uid": 2, "say": SAYS[1]},
        {"at": 2.9, "uid": 1, "say": SAYS[2]},
        {"at": 4.2, "uid": 2, "say": SAYS[3]},
        {"at": 6.0, "uid": 1, "leave": True},
        {"at": 6.0, "uid": 2, "leave": True},
    ],
    "end": 6.5,
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _wait_ready(base_url: str, serve: Proc, tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 6 * TIMEOUT
    async with httpx.AsyncClient(base_url=base_url) as client:
        while True:
            assert serve.process.returncode is None, (tmp_path / "serve.err").read_text()
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert loop.time() < deadline, "recorder serve did not become ready"
            await asyncio.sleep(0.1)


async def test_api_recording_on_workers_streams_and_hooks_every_event_once(
    postgres_url: str, tmp_path: Path
) -> None:
    await upgrade_database(postgres_url)
    engine = create_engine(postgres_url)
    try:
        _, token = await create_token(engine, "e2e")
    finally:
        await engine.dispose()
    script = tmp_path / "meeting.json"
    script.write_text(json.dumps(SCRIPT))  # noqa: ASYNC240 - a few bytes, before the run
    processes: list[Proc] = []
    receiver = Receiver(failing=True)
    try:
        emulator = await start(
            tmp_path, "emulate", "--port=0", env=clean_env(tmp_path), name="emulator"
        )
        processes.append(emulator)
        stt_url = (await emulator.wait_line("streaming:", 6 * TIMEOUT)).split(": ", 1)[1]
        env = clean_env(
            tmp_path,
            ASSEMBLYAI_API_KEY="test-key",
            RECORDER_STT_URL=stt_url,
            RECORDER_WEBHOOK_KEY=KEY,
        )
        port = _free_port()
        serve = await start(
            tmp_path, "serve", f"--port={port}", "--no-mcp", f"--db={postgres_url}",
            env=env, name="serve",
        )  # fmt: skip
        processes.append(serve)
        for n in range(2):
            worker = await start(
                tmp_path, "worker", f"--db={postgres_url}", "--capacity=2", "--heartbeat=0.5",
                "--stall-timeout=3", "--webhook-retry=0.5", env=env, name=f"worker-{n}",
            )  # fmt: skip
            processes.append(worker)
            await worker.wait_line("ready", 6 * TIMEOUT)
            await worker.wait_line("webhooks: this worker sends them", TIMEOUT)
        base_url = f"http://127.0.0.1:{port}"
        await _wait_ready(base_url, serve, tmp_path)
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            serving(receiver) as receiver_url,
            httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as api,
        ):
            hook = await api.post(
                "/v1/webhooks",
                json={
                    "url": receiver_url,
                    "events": ["turn.final", "meeting.ended"],
                    "allow_private_targets": True,
                },
            )
            assert hook.status_code == 201, hook.text
            secret = hook.json()["secret"]
            created = await api.post(
                "/v1/recordings",
                json={
                    "channel": SCRIPT["channel"],
                    "transport": f"replay:{script}",
                    "empty_timeout_s": 30,
                    "sessions_per_minute": 600,
                },
            )
            assert created.status_code == 201, created.text
            recording = created.json()
            assert recording["status"] == "queued"
            loop = asyncio.get_running_loop()
            failing_since = loop.time()
            # The meeting exists once a worker has joined the channel.
            deadline = loop.time() + 6 * TIMEOUT
            while (row := (await api.get(f"/v1/recordings/{recording['id']}")).json())[
                "meeting_id"
            ] is None:
                assert loop.time() < deadline, row
                await asyncio.sleep(0.1)
            assert row["status"] == "recording" and row["worker_host"]
            events = []
            async with asyncio.timeout(12 * TIMEOUT):
                async with api.stream("GET", f"/v1/meetings/{row['meeting_id']}/events") as sse:
                    assert sse.status_code == 200
                    async for line in sse.aiter_lines():
                        if line.startswith("data: "):
                            events.append(json.loads(line[6:]))
            kinds = [event["kind"] for event in events]
            assert kinds[0] == "meeting.started" and kinds[-1] == "meeting.ended", kinds
            ids = [event["id"] for event in events]
            assert ids == sorted(set(ids))
            # Every turn exactly once as final, word for word (after its formatting update).
            finals = [event for event in events if event["kind"] == "turn.final"]
            assert len({event["turn_id"] for event in finals}) == len(finals) == len(SAYS)
            texts = {event["turn_id"]: event["text"] for event in finals}
            for event in events:
                if event["kind"] == "turn.updated":
                    texts[event["turn_id"]] = event["text"]
            assert list(texts.values()) == SAYS
            assert [event["speaker"] for event in finals] == ["Ann", "Ben", "Ann", "Ben"]
            # The receiver has been refusing all along; the workers keep retrying.
            await receiver.wait(lambda: receiver.refused >= 3)
            assert not receiver.received
            # Refuse for at least 5 s in all.
            await asyncio.sleep(max(0.0, failing_since + 5.0 - loop.time()))
            receiver.failing = False
            recovered_at = loop.time()
            expected = {event["id"] for event in events if event["kind"] == "turn.final"}
            ended = next(event for event in events if event["kind"] == "meeting.ended")
            expected.add(ended["id"])
            async with receiver.changed:
                await asyncio.wait_for(
                    receiver.changed.wait_for(lambda: len(receiver.received) >= len(expected)),
                    12 * TIMEOUT,
                )
            print(
                f"webhooks: receiver refused for {loop.time() - failing_since:.1f} s "
                f"({receiver.refused} refusals); every event arrived "
                f"{loop.time() - recovered_at:.1f} s after it recovered"
            )
            delivered = Counter(headers["webhook-id"] for headers, _ in receiver.received)
            assert set(delivered) == {f"evt_{i}" for i in expected}
            assert set(delivered.values()) == {1}
            for headers, body in receiver.received:
                assert standard_webhooks_verify(secret, headers, body)
                message = json.loads(body)
                if message["type"] == "turn.final":
                    final = next(e for e in finals if e["id"] == message["data"]["event_id"])
                    assert message["data"]["turn_id"] == final["turn_id"]
            log = (await api.get(f"/v1/webhooks/{hook.json()['id']}/deliveries")).json()
            assert {d["status"] for d in log} == {"delivered"} and len(log) == len(expected)
            assert max(d["attempts"] for d in log) >= 2
            # The recording ends done, on one worker, and the API says so.
            deadline = loop.time() + 6 * TIMEOUT
            while (row := (await api.get(f"/v1/recordings/{recording['id']}")).json())[
                "status"
            ] == "recording":
                assert loop.time() < deadline, row
                await asyncio.sleep(0.2)
            assert row["status"] == "done" and row["claims"] == 1, row
    finally:
        for proc in processes:
            if proc.process.returncode is None:
                proc.process.kill()
                await proc.process.wait()
        for proc in processes:
            if proc.reader is not None:
                await proc.reader
    for path in tmp_path.glob("worker-*.err"):  # noqa: ASYNC240 - after the run
        assert "Traceback" not in path.read_text(), path.read_text()
