"""The async API client against the async API emulator over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import io
import json
import urllib.request
from typing import Any

import numpy as np
import pytest
import soundfile

from recorder.audio_store.repair import place_words
from recorder.batch import AsyncClient
from recorder.emulator.batch import BatchBehaviour, BatchEmulator
from recorder.emulator.server import serve_emulators
from recorder.errors import SttConnectionError, SttError, SttRejected
from recorder.tonecode import encode_words, silence
from storage.records import Word

KEY = "batch-key"


def flac(pcm: bytes) -> bytes:
    out = io.BytesIO()
    samples = np.frombuffer(pcm, dtype=np.int16)
    soundfile.write(out, samples, 16000, format="FLAC", subtype="PCM_16")
    return out.getvalue()


def speech(text: str) -> tuple[bytes, list[Any]]:
    pcm, words = encode_words(text, 16000)
    return silence(500) + pcm + silence(500), words


async def raw(*args: Any, **kwargs: Any) -> Any:
    """One plain HTTP request, off the loop (the emulator serves on it)."""
    return await asyncio.to_thread(_raw, *args, **kwargs)


def client(url: str, **kwargs: Any) -> AsyncClient:
    kwargs.setdefault("poll_interval_s", 0.01)
    return AsyncClient(url, KEY, **kwargs)


def _raw(url: str, method: str, path: str, body: Any = None, key: str | None = KEY) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method=method)
    if key is not None:
        request.add_header("Authorization", key)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers)


async def test_upload_transcribe_poll_delete_hears_tone_code_at_its_times() -> None:
    pcm, said = speech("Ship it on Friday, alpha bravo.")
    emulator = BatchEmulator(api_keys={KEY}, behaviour=BatchBehaviour(processing_s=0.05))
    async with emulator.serve() as server:
        transcript = await client(server.url).transcribe(flac(pcm))
        assert emulator.jobs[transcript.id].is_deleted
        assert not emulator.uploads
    assert [w.text for w in transcript.words] == [w.text for w in said]
    for heard, spoken in zip(transcript.words, said, strict=True):
        assert abs(heard.start_ms - (500 + spoken.start_ms)) <= 30
        assert abs(heard.end_ms - (500 + spoken.end_ms)) <= 30
    methods = [m for m, _ in emulator.requests]
    assert methods[:2] == ["POST", "POST"] and methods[-1] == "DELETE"


async def test_a_bad_key_is_rejected_for_good() -> None:
    async with BatchEmulator(api_keys={KEY}).serve() as server:
        with pytest.raises(SttRejected, match="check ASSEMBLYAI_API_KEY"):
            await AsyncClient(server.url, "wrong").upload(b"x")
        status, body, _ = await raw(server.url, "GET", "/v2/transcript", key=None)
    assert (status, body) == (401, {"error": "Authentication error, API token missing/invalid"})


async def test_server_errors_and_rate_limits_are_retried() -> None:
    pcm, _ = speech("Hello there.")
    emulator = BatchEmulator(behaviour=BatchBehaviour(requests_per_window=3, window_s=1.0))
    async with emulator.serve() as server:
        emulator.fail_next(503)
        emulator.fail_next(0)  # a dropped connection
        emulator.fail_next(500)
        transcript = await client(server.url).transcribe(flac(pcm))
        assert [w.text for w in transcript.words] == ["Hello", "there."]
        answers = [await raw(server.url, "GET", "/v2/transcript") for _ in range(4)]
        limited = [answer for answer in answers if answer[0] == 429]
        assert limited, [answer[0] for answer in answers]
        assert limited[0][1] == {"error": "Too Many Requests"}
        assert 1 <= int(limited[0][2]["Retry-After"]) <= 2


async def test_giving_up_after_repeated_failures_is_one_clear_error() -> None:
    emulator = BatchEmulator()
    async with emulator.serve() as server:
        emulator.fail_next(503, count=10)
        with pytest.raises(SttConnectionError, match="kept failing"):
            await client(server.url, attempts=3).upload(b"abc")


async def test_validation_and_job_errors() -> None:
    emulator = BatchEmulator()
    async with emulator.serve() as server:
        url = server.url
        assert (await raw(url, "POST", "/v2/transcript", {}))[0:2] == (
            400,
            {"error": "audio_url is required"},
        )
        status, body, _ = await raw(
            url, "POST", "/v2/transcript", {"audio_url": "x", "speech_model": "b"}
        )
        assert status == 400 and "speech_model is deprecated" in body["error"]
        status, body, _ = await raw(
            url, "POST", "/v2/transcript", {"audio_url": "x", "punctuate": 1}
        )
        assert (status, body["error"]) == (400, "punctuate must be a Boolean")
        status, body, _ = await raw(
            url, "POST", "/v2/transcript", {"audio_url": "x", "bogus": True}
        )
        assert status == 400
        both = {"audio_url": "x", "prompt": "p", "keyterms_prompt": ["k"]}
        assert (await raw(url, "POST", "/v2/transcript", both))[0] == 400
        assert (await raw(url, "GET", "/v2/transcript/nope"))[0:2] == (404, {"error": "Not found"})
        c = client(url)
        # Not an upload of ours: the job fails with the documented download error.
        job = await c.create("https://example.invalid/a.wav")
        with pytest.raises(SttError, match="Download error"):
            await c.wait(job)
        with pytest.raises(SttError, match="too short"):
            await c.transcribe(flac(bytes(1000)))
        with pytest.raises(SttError, match="does not appear to contain audio"):
            await c.transcribe(b"this is not audio at all")
        status, listing, _ = await raw(url, "GET", "/v2/transcript?limit=2")
    assert status == 200 and listing["page_details"]["result_count"] == 2
    assert [t["status"] for t in listing["transcripts"]] == ["error", "error"]


async def test_webhooks_are_delivered_and_retried() -> None:
    got: list[dict[str, Any]] = []
    answers = [500, 200]

    async def hook(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        got.append(json.loads(await reader.readexactly(length)))
        status = answers.pop(0)
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    hooks = await asyncio.start_server(hook, "127.0.0.1", 0)
    port = hooks.sockets[0].getsockname()[1]
    pcm, _ = speech("Done.")
    emulator = BatchEmulator(behaviour=BatchBehaviour(webhook_retry_s=0.01))
    async with hooks, emulator.serve() as server:
        status, body, _ = await raw(server.url, "POST", "/v2/upload")  # empty body
        assert status == 400
        upload = json.loads(
            await asyncio.to_thread(
                lambda: urllib.request.urlopen(
                    urllib.request.Request(
                        server.url + "/v2/upload",
                        data=flac(pcm),
                        method="POST",
                        headers={"Authorization": KEY},
                    )
                ).read()
            )
        )["upload_url"]
        params = {"audio_url": upload, "webhook_url": f"http://127.0.0.1:{port}/done?id=7"}
        _, created, _ = await raw(server.url, "POST", "/v2/transcript", params)
        transcript = await client(server.url).wait(created["id"])
        for _ in range(500):
            if len(emulator.webhooks) == 2:
                break
            await asyncio.sleep(0.01)  # the emulator's delivery task has no event to await
    assert [w.text for w in transcript.words] == ["Done."]
    assert got == [{"transcript_id": created["id"], "status": "completed"}] * 2
    assert [status for _, _, status in emulator.webhooks] == [500, 200]


async def test_the_one_emulator_port_serves_the_async_api_beside_streaming() -> None:
    pcm, said = speech("Alpha bravo charlie delta echo foxtrot golf hotel india.")
    batch = BatchEmulator(api_keys={KEY}, behaviour=BatchBehaviour(processing_s=0.05))
    async with serve_emulators(api_keys={KEY}, batch=batch) as server:
        url = server.urls["async"]
        assert server.batch is batch and url == server.urls["emulator"]
        c = client(url)
        job = await c.create(await c.upload(flac(pcm)))
        transcript = await c.wait(job)
        assert [w.text for w in transcript.words] == [w.text for w in said]
        status, listing, _ = await raw(url, "GET", "/v2/transcript")
        assert status == 200
        assert listing["transcripts"][0]["resource_url"] == f"{url}/v2/transcript/{job}"
        srt = await asyncio.to_thread(
            lambda: urllib.request.urlopen(
                urllib.request.Request(
                    f"{url}/v2/transcript/{job}/srt", headers={"Authorization": KEY}
                )
            ).read()
        )
        assert srt.decode().startswith("1\n00:00:00,5") and "india." in srt.decode()
        assert (await raw(url, "GET", f"/v2/transcript/{job}/pdf"))[0] == 404
        assert (await raw(url, "GET", "/v2/transcript", key="wrong"))[0] == 401
        assert (await raw(url, "DELETE", f"/v2/transcript/{job}"))[1]["text"] == "Deleted by user."
    assert server.streaming.sessions == []  # nothing of it reached the streaming side


async def test_a_fault_for_every_request() -> None:
    for fault, expected in [(429, 429), (504, 504), (0, None)]:
        emulator = BatchEmulator(behaviour=BatchBehaviour(fault=fault))
        async with emulator.serve() as server:
            if expected is None:
                with pytest.raises(ConnectionError):  # closed without an answer
                    await raw(server.url, "GET", "/v2/transcript")
                continue
            status, body, headers = await raw(server.url, "GET", "/v2/transcript")
            assert status == expected
            if fault == 429:
                assert body == {"error": "Too Many Requests"} and headers["Retry-After"] == "1"
            with pytest.raises(SttConnectionError, match="kept failing"):
                await client(server.url, attempts=2).upload(b"abc")
    with pytest.raises(ValueError, match="unknown fault"):
        BatchBehaviour(fault=418)
    with pytest.raises(ValueError, match="unknown fault"):
        BatchEmulator().fail_next(418)


def test_placed_words_never_repeat_a_word_already_stored() -> None:
    class W:
        def __init__(self, text: str, start: int, end: int) -> None:
            self.text, self.start_ms, self.end_ms, self.confidence = text, start, end, 0.9

    kept = [Word("one", 1000, 1300), Word("two", 1400, 1700)]
    heard = [W("one", 0, 300), W("two", 400, 700), W("three", 800, 1100)]
    placed = place_words(heard, 1000, kept)
    assert placed == [Word("three", 1800, 2100, 0.9)]
