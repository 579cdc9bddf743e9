"""The async emulator's keys, projects, accounts and regions, over real HTTP on loopback.

Spec: /work/shared/specs/assemblyai-async-transcription.md, section 11 items 1, 2, 4, 10.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import date
from typing import Any

from recorder.emulator.batch import Account, BatchBehaviour, BatchEmulator, KeyScope
from recorder.emulator.server import serve_emulators
from tests.support.timing import TIMEOUT
from tests.test_repair_async_api import flac, speech

FOREIGN_UPLOAD = {"error": "Cannot access uploaded file"}
NOT_FOUND = {"error": "Not found"}
NEGATIVE = {
    "error": "Your current account balance is negative. Please top up to continue using the API."
}


@dataclass(frozen=True)
class Api:
    """Plain HTTP to one emulator as one key (and one region prefix, "" or "/eu")."""

    url: str
    key: str
    prefix: str = ""
    host: str | None = None

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await asyncio.to_thread(self._call, method, path, body)

    def _call(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else None
        if body is not None and data is None:
            data = json.dumps(body).encode()
        request = urllib.request.Request(self.url + self.prefix + path, data=data, method=method)
        request.add_header("Authorization", self.key)
        if self.host:
            request.add_header("Host", self.host)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                raw, status = response.read(), response.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw or b"{}")
        except ValueError:
            return status, raw.decode()

    async def upload(self, audio: bytes) -> str:
        status, body = await self.call("POST", "/v2/upload", audio)
        assert status == 200, body
        return str(body["upload_url"])

    async def create(self, params: dict[str, Any]) -> dict[str, Any]:
        status, body = await self.call("POST", "/v2/transcript", params)
        assert status == 200, body
        return dict(body)

    async def until(self, transcript_id: str, **wanted: Any) -> dict[str, Any]:
        """Poll the transcript until its fields have the wanted values."""
        async with asyncio.timeout(TIMEOUT * 2):
            while True:
                status, body = await self.call("GET", f"/v2/transcript/{transcript_id}")
                assert status == 200, body
                if all(body.get(name) == value for name, value in wanted.items()):
                    return dict(body)
                if body["status"] == "error" and wanted.get("status") != "error":
                    raise AssertionError(body)
                await asyncio.sleep(0.01)

    async def transcribe(self, text: str, **params: Any) -> dict[str, Any]:
        """Upload tone-code speech of ``text``, create, and wait for the job to end."""
        pcm, _ = speech(text)
        created = await self.create({"audio_url": await self.upload(flac(pcm)), **params})
        return await self.until(created["id"], status="completed")


SCOPES = {
    "k1": KeyScope("acme", "p1"),
    "k1b": KeyScope("acme", "p1"),
    "k2": KeyScope("acme", "p2"),
    "k3": KeyScope("other", "p1"),
}


async def test_uploads_and_transcripts_belong_to_the_project_of_the_key() -> None:
    emulator = BatchEmulator(key_scopes=SCOPES)
    async with emulator.serve() as server:
        p1, p1_other_key, p2 = Api(server.url, "k1"), Api(server.url, "k1b"), Api(server.url, "k2")
        pcm, _ = speech("Hello there.")
        upload = await p1.upload(flac(pcm))
        assert await p2.call("POST", "/v2/transcript", {"audio_url": upload}) == (
            403,
            FOREIGN_UPLOAD,
        )
        created = await p1.create({"audio_url": upload})
        done = await p1_other_key.until(created["id"], status="completed")
        assert done["text"] == "Hello there."
        path = f"/v2/transcript/{created['id']}"
        assert await p2.call("GET", path) == (404, NOT_FOUND)
        assert await p2.call("GET", path + "/sentences") == (404, NOT_FOUND)
        assert await p2.call("DELETE", path) == (404, NOT_FOUND)
        _, listing = await p2.call("GET", "/v2/transcript")
        assert listing["transcripts"] == []
        _, listing = await p1.call("GET", "/v2/transcript")
        assert [t["id"] for t in listing["transcripts"]] == [created["id"]]
        # A key the map does not know is no key at all.
        status, body = await Api(server.url, "k9").call("GET", "/v2/transcript")
    assert (status, body) == (401, {"error": "Authentication error, API token missing/invalid"})


async def test_another_projects_upload_can_fail_the_job_instead() -> None:
    emulator = BatchEmulator(key_scopes=SCOPES, behaviour=BatchBehaviour(foreign_upload="fail_job"))
    async with emulator.serve() as server:
        p1, p2 = Api(server.url, "k1"), Api(server.url, "k2")
        upload = await p1.upload(flac(speech("Hello.")[0]))
        created = await p2.create({"audio_url": upload})
        failed = await p2.until(created["id"], status="error")
    assert failed["error"] == FOREIGN_UPLOAD["error"]


async def test_without_a_key_map_every_key_shares_one_project() -> None:
    async with BatchEmulator().serve() as server:
        done = await Api(server.url, "any").transcribe("Hi.")
        status, body = await Api(server.url, "another").call("GET", f"/v2/transcript/{done['id']}")
    assert status == 200 and body["text"] == "Hi."


async def test_the_request_budget_is_the_accounts_not_the_projects() -> None:
    behaviour = BatchBehaviour(requests_per_window=3, window_s=3600)
    async with BatchEmulator(key_scopes=SCOPES, behaviour=behaviour).serve() as server:
        p1, p2, other = (Api(server.url, key) for key in ("k1", "k2", "k3"))
        statuses = [
            (await p1.call("GET", "/v2/transcript"))[0],
            (await p1.call("GET", "/v2/transcript"))[0],
            (await p2.call("GET", "/v2/transcript"))[0],
            (await p2.call("GET", "/v2/transcript"))[0],
            (await other.call("GET", "/v2/transcript"))[0],
        ]
    assert statuses == [200, 200, 200, 429, 200]


async def test_the_concurrency_limit_is_the_accounts_not_the_projects() -> None:
    behaviour = BatchBehaviour(concurrency=1, processing_s=TIMEOUT * 10)
    async with BatchEmulator(key_scopes=SCOPES, behaviour=behaviour).serve() as server:
        p1, p2, other = (Api(server.url, key) for key in ("k1", "k2", "k3"))
        audio = flac(speech("Hi.")[0])
        first = await p1.create({"audio_url": await p1.upload(audio)})
        await p1.until(first["id"], status="processing")
        second = await p2.create({"audio_url": await p2.upload(audio)})
        waiting = await p2.until(second["id"], throttled=True)
        third = await other.create({"audio_url": await other.upload(audio)})
        running = await other.until(third["id"], status="processing")
    assert waiting["status"] == "queued"
    assert running["throttled"] is False


async def test_a_negative_balance_refuses_new_transcripts_until_topped_up() -> None:
    accounts = {"acme": Account(balance_negative=True, created=date(2026, 3, 1))}
    emulator = BatchEmulator(key_scopes=SCOPES, accounts=accounts)
    async with emulator.serve() as server:
        p1, other = Api(server.url, "k1"), Api(server.url, "k3")
        upload = await p1.upload(flac(speech("Hi.")[0]))
        refused = await p1.call("POST", "/v2/transcript", {"audio_url": upload})
        assert (await other.transcribe("Fine."))["text"] == "Fine."
        emulator.set_balance_negative("acme", False)
        created = await p1.create({"audio_url": upload})
        emulator.set_balance_negative("acme")
        refused_again = await p1.call("POST", "/v2/transcript", {"audio_url": upload})
        # Reading what exists still works.
        assert (await p1.until(created["id"], status="completed"))["text"] == "Hi."
    assert refused == (400, NEGATIVE) and refused_again == (400, NEGATIVE)


async def test_us_and_eu_hosts_keep_separate_stores() -> None:
    async with BatchEmulator().serve() as server:
        us, eu = Api(server.url, "k"), Api(server.url, "k", prefix="/eu")
        eu_by_host = Api(server.url, "k", host="api.eu.assemblyai.com")
        done = await eu.transcribe("Bonjour.")
        path = f"/v2/transcript/{done['id']}"
        assert await us.call("GET", path) == (404, NOT_FOUND)
        assert (await eu_by_host.call("GET", path))[1]["text"] == "Bonjour."
        _, us_list = await us.call("GET", "/v2/transcript")
        _, eu_list = await eu.call("GET", "/v2/transcript")
        # An upload in one region is not there in the other: the job cannot download it.
        eu_upload = await eu.upload(flac(speech("Hi.")[0]))
        in_us = await us.create({"audio_url": eu_upload})
        failed = await us.until(in_us["id"], status="error")
    assert us_list["transcripts"] == []
    assert [t["id"] for t in eu_list["transcripts"]] == [done["id"]]
    assert eu_list["transcripts"][0]["resource_url"] == f"{server.url}/eu{path}"
    assert failed["error"].startswith("Download error, unable to download")


async def test_the_shared_emulator_port_serves_the_eu_prefix_too() -> None:
    async with serve_emulators() as server:
        eu = Api(server.urls["async"], "k", prefix="/eu")
        done = await eu.transcribe("Guten Tag.")
        assert server.batch is not None
        assert done["id"] in server.batch.stores["eu"].jobs
        assert done["id"] not in server.batch.jobs


async def test_a_negative_balance_runs_queued_transcripts_one_at_a_time() -> None:
    # Each job runs long enough that the checks below fall inside it on a loaded machine.
    behaviour = BatchBehaviour(concurrency=2, processing_s=TIMEOUT / 2)
    emulator = BatchEmulator(key_scopes=SCOPES, behaviour=behaviour)
    async with emulator.serve() as server:
        api = Api(server.url, "k1")
        upload = await api.upload(flac(speech("Hi.")[0]))
        jobs = [(await api.create({"audio_url": upload}))["id"] for _ in range(4)]
        await api.until(jobs[3], throttled=True)
        emulator.set_balance_negative("acme")
        await api.until(jobs[2], status="processing")
        still_waiting = await api.until(jobs[3])
        emulator.set_balance_negative("acme", False)  # topped up: the slot is free again
        await api.until(jobs[3], status="processing")
        running_beside = await api.until(jobs[2])
    assert still_waiting["status"] == "queued" and still_waiting["throttled"] is True
    assert running_beside["status"] == "processing"
