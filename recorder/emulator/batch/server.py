"""An emulator of AssemblyAI's pre-recorded (async) API v2, for tests and the demo.

It follows the emulator checklist of docs/providers.md, "Pre-recorded (async)
API": uploads (``POST /v2/upload``), transcripts (create, get, list, delete),
polling through ``queued`` → ``processing`` → ``completed``/``error``, webhooks
with retries, ``401`` for an unknown key, ``404`` for an unknown id, request
validation, an account-wide request budget answered with ``429`` and
``Retry-After``, a concurrency limit (jobs wait, ``throttled``), and injected
failures. It hears tone-code speech exactly as the streaming emulator does.

It is an :class:`~recorder.emulator.http.HttpApp`: ``recorder emulate`` mounts it
beside the other emulators on one port; :meth:`BatchEmulator.serve` puts it on a port
of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from recorder.emulator.batch.recognize import MIN_DURATION_MS, NotAudio, recognize
from recorder.emulator.http import HttpRequest, HttpResponse, json_reply, serve_http
from recorder.emulator.router import Router

__all__ = ["BATCH_PATH", "FAULTS", "BatchBehaviour", "BatchEmulator", "BatchServer"]

log = logging.getLogger("recorder.emulator.batch")

BATCH_PATH = "/v2"
_AUTH_ERROR = "Authentication error, API token missing/invalid"
#: Injectable faults (``fail_next``, ``BatchBehaviour.fault``, ``recorder emulate
#: --async-fault``): an HTTP status, or 0 to drop the connection without an answer.
FAULTS = (0, 429, 500, 503, 504)
_MODELS = frozenset({"universal-3-pro", "universal-2", "universal-3-5-pro", "assemblyai-stt-3-7"})
# Create parameters the emulator knows (others are refused: the spec sets
# additionalProperties false).
_PARAMS = {
    "audio_url": str,
    "speech_models": list,
    "language_code": str,
    "language_detection": bool,
    "punctuate": bool,
    "format_text": bool,
    "disfluencies": bool,
    "filter_profanity": bool,
    "speaker_labels": bool,
    "keyterms_prompt": list,
    "prompt": str,
    "webhook_url": str,
    "webhook_auth_header_name": str,
    "webhook_auth_header_value": str,
    "audio_start_from": int,
    "audio_end_at": int,
}


@dataclass(frozen=True, slots=True)
class BatchBehaviour:
    """What the emulated service does.

    Attributes:
        processing_s: how long a job takes once it runs.
        concurrency: jobs processed at once (5 on a free account).
        requests_per_window: the account's request budget per ``window_s``.
        window_s: the budget's window (the real one: 20,000 per five minutes).
        webhook_retry_s: pause between webhook attempts (the real one: 10 s).
        webhook_attempts: webhook attempts at most.
        max_upload_bytes: the largest upload accepted.
        fault: a fault for every request (one of :data:`FAULTS`), or None.
    """

    processing_s: float = 0.0
    concurrency: int = 5
    requests_per_window: int = 20_000
    window_s: float = 300.0
    webhook_retry_s: float = 10.0
    webhook_attempts: int = 10
    max_upload_bytes: int = 2_200_000_000
    fault: int | None = None

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; one of {FAULTS}")


@dataclass(slots=True)
class _Job:
    id: str
    params: dict[str, Any]
    created: str
    status: str = "queued"
    throttled: bool = False
    words: list[dict[str, Any]] | None = None
    duration_s: int | None = None
    error: str | None = None
    completed: str | None = None
    webhook_status_code: int | None = None
    is_deleted: bool = False

    def body(self) -> dict[str, Any]:
        params = self.params
        done = self.status == "completed" and not self.is_deleted
        words = self.words if done else None
        models = params.get("speech_models") or ["universal-3-pro", "universal-2"]
        body: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "audio_url": "http://deleted_by_user" if self.is_deleted else params["audio_url"],
            "text": (
                "Deleted by user."
                if self.is_deleted
                else " ".join(w["text"] for w in words)
                if words is not None
                else None
            ),
            "words": words,
            "utterances": None,
            "confidence": (0.99 if words else None) if done else None,
            "audio_duration": self.duration_s,
            "speech_models": params.get("speech_models"),
            "speech_model_used": models[0] if done else None,
            "speech_model": None,
            "language_code": params.get("language_code") or "en_us",
            "language_confidence": None,
            "language_confidence_threshold": None,
            "language_model": "assemblyai_default",
            "acoustic_model": "assemblyai_default",
            "punctuate": params.get("punctuate", True),
            "format_text": params.get("format_text", True),
            "keyterms_prompt": params.get("keyterms_prompt"),
            "webhook_url": (
                "http://deleted_by_user" if self.is_deleted else params.get("webhook_url")
            ),
            "webhook_auth": "webhook_auth_header_name" in params,
            "webhook_auth_header_name": params.get("webhook_auth_header_name"),
            "webhook_status_code": self.webhook_status_code,
            "throttled": self.throttled,
            "auto_highlights": False,
            "redact_pii": False,
            "summarization": False,
        }
        if self.status == "error":
            body["error"] = self.error
        return body


_NOT_FOUND = json_reply(404, {"error": "Not found"})


def _too_many(retry_after_s: float) -> HttpResponse:
    after = max(1, int(retry_after_s) + 1)
    return json_reply(429, {"error": "Too Many Requests"}, {"Retry-After": str(after)})


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat()


@dataclass
class BatchEmulator:
    """The emulated service: its state, and :meth:`serve` to put it on a port.

    Args:
        api_keys: keys accepted; empty means any non-empty key.
        behaviour: timings and limits.

    Attributes:
        base_url: where it is served (``http://HOST:PORT``), for the URLs in its answers.
        uploads: uploaded bytes by upload URL.
        jobs: transcripts by id.
        requests: ``(method, path)`` of every request, in order.
        webhooks: ``(url, payload, status)`` of every webhook attempt.
    """

    api_keys: Iterable[str] = frozenset()
    behaviour: BatchBehaviour = field(default_factory=BatchBehaviour)

    def __post_init__(self) -> None:
        self._keys = frozenset(self.api_keys)
        self.uploads: dict[str, bytes] = {}
        self.jobs: dict[str, _Job] = {}
        self.requests: list[tuple[str, str]] = []
        self.webhooks: list[tuple[str, dict[str, Any], int | None]] = []
        self._faults: deque[int] = deque()
        self._recent: deque[float] = deque()
        self._slots = asyncio.Semaphore(self.behaviour.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self.base_url = ""
        self._router = Router(
            BATCH_PATH,
            # The retired v2 streaming socket is the streaming emulator's to refuse (410).
            exclude=("/v2/realtime",),
            not_found=_NOT_FOUND,
            max_body_bytes=self.behaviour.max_upload_bytes,
        )
        add = self._router.add
        add("POST", "/v2/upload", self._upload)
        add("POST", "/v2/transcript", self._create)
        add("GET", "/v2/transcript", self._list)
        add("GET", "/v2/transcript/{id}", self._get)
        add("DELETE", "/v2/transcript/{id}", self._delete)
        add("GET", "/v2/transcript/{id}/{kind}", self._subtitles)

    # -- controls for tests ----------------------------------------------------

    def fail_next(self, status: int, count: int = 1) -> None:
        """Answer the next ``count`` requests with ``status`` (one of :data:`FAULTS`)."""
        if status not in FAULTS:
            raise ValueError(f"unknown fault {status!r}; one of {FAULTS}")
        self._faults.extend([status] * count)

    # -- serving ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[BatchServer]:
        """Serve on ``host:port`` (0: a free port) until the block exits."""
        async with serve_http(self, host, port) as server:
            bound_host, bound_port = server.sockets[0].getsockname()[:2]
            self.base_url = f"http://{bound_host}:{bound_port}"
            try:
                yield BatchServer(self.base_url, self)
            finally:
                await self.aclose()

    async def aclose(self) -> None:
        """Stop the jobs still running and their webhook deliveries."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def claims(self, method: str, path: str) -> bool:
        """Whether a request is for this API (everything under ``/v2``)."""
        return self._router.claims(method, path)

    def body_limit(self, method: str, path: str) -> int:
        """The largest body accepted: an upload's limit."""
        return self.behaviour.max_upload_bytes

    async def __call__(self, request: HttpRequest) -> HttpResponse | None:
        """Answer one request (the :class:`~recorder.emulator.http.HttpApp` interface)."""
        return await self.handle(request)

    async def handle(self, request: HttpRequest) -> HttpResponse | None:
        """Answer one request: faults, then the key, then the budget, then the route."""
        self.requests.append((request.method, request.path))
        fault = self._faults.popleft() if self._faults else self.behaviour.fault
        if fault is not None:
            return self._fault(fault)
        key = request.headers.get("authorization", "")
        if key.lower().startswith("bearer "):
            key = key[7:]
        if not key or (self._keys and key not in self._keys):
            return json_reply(401, {"error": _AUTH_ERROR})
        limited = self._rate_limited()
        if limited is not None:
            return limited
        return await self._router(request)

    def _fault(self, status: int) -> HttpResponse | None:
        if status == 0:
            return None
        if status == 429:
            return _too_many(0)  # retry at once: the fault, not a budget, refused it
        if status in (503, 504):  # the real service answers these with an empty body
            return HttpResponse(status)
        return json_reply(status, {"error": "Internal Server Error"})

    def _rate_limited(self) -> HttpResponse | None:
        now = time.monotonic()
        window = self.behaviour.window_s
        while self._recent and now - self._recent[0] >= window:
            self._recent.popleft()
        if len(self._recent) >= self.behaviour.requests_per_window:
            return _too_many(window - (now - self._recent[0]))
        self._recent.append(now)
        return None

    async def _upload(self, request: HttpRequest) -> HttpResponse:
        if not request.body:
            return json_reply(400, {"error": "Upload failed: the file is empty"})
        url = f"https://cdn.assemblyai.com/upload/{uuid.uuid4()}"
        self.uploads[url] = request.body
        return json_reply(200, {"upload_url": url})

    async def _get(self, request: HttpRequest) -> HttpResponse:
        job = self.jobs.get(request.params["id"])
        return _NOT_FOUND if job is None else json_reply(200, job.body())

    async def _delete(self, request: HttpRequest) -> HttpResponse:
        job = self.jobs.get(request.params["id"])
        if job is None:
            return _NOT_FOUND
        job.is_deleted = True
        job.words = None
        self.uploads.pop(job.params["audio_url"], None)
        return json_reply(200, job.body())

    async def _create(self, request: HttpRequest) -> HttpResponse:
        try:
            params = json.loads(request.body or b"")
        except ValueError:
            return json_reply(400, {"error": "Invalid JSON body"})
        if not isinstance(params, dict):
            return json_reply(400, {"error": "Invalid JSON body"})
        if "speech_model" in params:
            return json_reply(
                400,
                {
                    "error": 'speech_model is deprecated. Use "speech_models" instead. See '
                    "documentation: https://www.assemblyai.com/docs/pre-recorded-audio/"
                    "select-the-speech-model"
                },
            )
        for name, value in params.items():
            kind = _PARAMS.get(name)
            if kind is None:
                return json_reply(400, {"error": f"{name} is not a valid parameter"})
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                shown = {bool: "a Boolean", str: "a string", list: "a list", int: "an integer"}
                return json_reply(400, {"error": f"{name} must be {shown[kind]}"})
        if "audio_url" not in params:
            return json_reply(400, {"error": "audio_url is required"})
        models = params.get("speech_models")
        if models is not None and (not models or not set(models) <= _MODELS):
            return json_reply(
                400,
                {
                    "error": '"speech_models" must be a non-empty list containing one or more '
                    "of: " + ", ".join(f'"{m}"' for m in sorted(_MODELS))
                },
            )
        if "prompt" in params and "keyterms_prompt" in params:
            return json_reply(400, {"error": "prompt and keyterms_prompt cannot be used together"})
        if len(params.get("keyterms_prompt") or ()) > 1000:
            return json_reply(400, {"error": "keyterms_prompt has more than 1000 terms"})
        job = _Job(str(uuid.uuid4()), params, _now())
        self.jobs[job.id] = job
        task = asyncio.create_task(self._process(job), name=f"batch-job-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return json_reply(200, job.body())

    async def _list(self, request: HttpRequest) -> HttpResponse:
        try:
            limit = min(200, max(1, int(request.query.get("limit", "10"))))
        except ValueError:
            return json_reply(400, {"error": "limit must be an integer"})
        status = request.query.get("status")
        jobs = [j for j in reversed(self.jobs.values()) if status is None or j.status == status]
        page = jobs[:limit]
        return json_reply(
            200,
            {
                "page_details": {
                    "limit": limit,
                    "result_count": len(page),
                    "current_url": f"{self.base_url}/v2/transcript?limit={limit}",
                    "prev_url": (
                        f"{self.base_url}/v2/transcript?limit={limit}&before_id={page[-1].id}"
                        if len(jobs) > limit
                        else None
                    ),
                    "next_url": None,
                },
                "transcripts": [
                    {
                        "id": j.id,
                        "resource_url": f"{self.base_url}/v2/transcript/{j.id}",
                        "status": j.status,
                        "created": j.created,
                        "completed": j.completed,
                        "audio_url": j.params["audio_url"],
                        "error": j.error,
                    }
                    for j in page
                ],
            },
        )

    async def _subtitles(self, request: HttpRequest) -> HttpResponse:
        job, kind = self.jobs.get(request.params["id"]), request.params["kind"]
        if job is None or kind not in ("srt", "vtt"):
            return _NOT_FOUND
        if job.status != "completed" or not job.words:
            return json_reply(400, {"error": "Transcript is not completed"})

        def stamp(ms: int) -> str:
            hours, rest = divmod(ms, 3_600_000)
            minutes, rest = divmod(rest, 60_000)
            seconds, millis = divmod(rest, 1000)
            sep = "," if kind == "srt" else "."
            return f"{hours:02d}:{minutes:02d}:{seconds:02d}{sep}{millis:03d}"

        cues = [job.words[i : i + 8] for i in range(0, len(job.words), 8)]
        lines = ["WEBVTT", ""] if kind == "vtt" else []
        for number, cue in enumerate(cues, 1):
            if kind == "srt":
                lines.append(str(number))
            lines.append(f"{stamp(cue[0]['start'])} --> {stamp(cue[-1]['end'])}")
            lines.append(" ".join(w["text"] for w in cue))
            lines.append("")
        return HttpResponse(200, "\n".join(lines).encode(), content_type="text/plain")

    # -- jobs --------------------------------------------------------------------

    async def _process(self, job: _Job) -> None:
        if self._slots.locked():
            job.throttled = True
        async with self._slots:
            job.throttled = False
            job.status = "processing"
            await asyncio.sleep(self.behaviour.processing_s)
            data = self.uploads.get(job.params["audio_url"])
            if data is None:
                job.status, job.error = "error", _download_error(job.params["audio_url"])
            else:
                try:
                    words, duration_ms = await asyncio.to_thread(recognize, data)
                except NotAudio:
                    job.status = "error"
                    job.error = "File does not appear to contain audio."
                else:
                    if duration_ms < MIN_DURATION_MS:
                        job.status, job.error = "error", "Audio duration is too short."
                    else:
                        job.words, job.duration_s = words, round(duration_ms / 1000)
                        job.status = "completed"
            job.completed = _now()
        log.info("= async transcript %s %s", job.id, job.status)
        if job.params.get("webhook_url"):
            await self._deliver(job)

    async def _deliver(self, job: _Job) -> None:
        url = str(job.params["webhook_url"])
        payload = {"transcript_id": job.id, "status": job.status}
        headers = {"Content-Type": "application/json"}
        if job.params.get("webhook_auth_header_name"):
            headers[job.params["webhook_auth_header_name"]] = str(
                job.params.get("webhook_auth_header_value", "")
            )
        for attempt in range(self.behaviour.webhook_attempts):
            status = await asyncio.to_thread(_post, url, payload, headers)
            self.webhooks.append((url, payload, status))
            job.webhook_status_code = status
            if status is not None and (200 <= status < 300 or 400 <= status < 500):
                return
            if attempt + 1 < self.behaviour.webhook_attempts:
                await asyncio.sleep(self.behaviour.webhook_retry_s)


def _download_error(url: str) -> str:
    return (
        f"Download error, unable to download {url}. Please make sure the file exists "
        "and is accessible from the internet."
    )


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


@dataclass(frozen=True, slots=True)
class BatchServer:
    """A running async emulator: its base URL (``http://HOST:PORT``) and state."""

    url: str
    emulator: BatchEmulator
