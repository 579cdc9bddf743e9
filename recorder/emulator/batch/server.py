"""An emulator of AssemblyAI's pre-recorded (async) API v2, for tests and the demo.

It follows the emulator checklist of the async API spec (section 11 of
/work/shared/specs/assemblyai-async-transcription.md; docs/providers.md, "Pre-recorded
(async) API"): uploads (``POST /v2/upload``), transcripts (create, get, list, delete),
polling through ``queued`` → ``processing`` → ``completed``/``error``, webhooks with
retries, subtitles (``/srt``, ``/vtt`` with ``chars_per_caption``), ``/sentences``,
``/paragraphs``, ``/word-search``, ``/redacted-audio``, ``401`` for an unknown key,
``404`` for an unknown id, request validation (:mod:`.validate`), an account-wide request
budget answered with ``429`` and ``Retry-After``, an account-wide concurrency limit (jobs
wait, ``throttled``), and injected failures. It hears tone-code speech exactly as the
streaming emulator does.

Keys and projects: a key maps to an (account, project) (``key_scopes``; without a map
every accepted key is one default account and project). Uploads and transcripts belong
to the project: another project's transcript id is ``404``, another project's upload URL
in ``audio_url`` is ``403 {"error": "Cannot access uploaded file"}``. The request
budget and the concurrency limit are the account's.

Regions: the US host (``api.assemblyai.com``) is the emulator's root, the EU host
(``api.eu.assemblyai.com``) is the path prefix ``/eu`` (``http://HOST:PORT/eu/v2/...``),
or a request whose ``Host`` header names the EU host. Each region keeps its own uploads
and transcripts, as the spec asks (reading across regions is UNCONFIRMED).

It is an :class:`~recorder.emulator.http.HttpApp`: ``recorder emulate`` mounts it
beside the other emulators on one port; :meth:`BatchEmulator.serve` puts it on a port
of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from recorder.emulator.batch.accounts import DEFAULT_SCOPE, Account, AccountState, KeyScope
from recorder.emulator.batch.behaviour import FAULTS, BatchBehaviour
from recorder.emulator.batch.jobs import Job
from recorder.emulator.batch.recognize import MIN_DURATION_MS, NotAudio, recognize
from recorder.emulator.batch.results import shape_words
from recorder.emulator.batch.validate import (
    check_create,
    model_used,
    models_by_default,
)
from recorder.emulator.batch.views import (
    paragraphs,
    search_terms,
    sentences,
    subtitles,
    word_search,
)
from recorder.emulator.batch.webhooks import deliver
from recorder.emulator.http import HttpRequest, HttpResponse, json_reply, serve_http
from recorder.emulator.router import Router

__all__ = [
    "BATCH_PATH",
    "EU_HOST",
    "EU_PREFIX",
    "FAULTS",
    "Account",
    "BatchBehaviour",
    "BatchEmulator",
    "BatchServer",
    "KeyScope",
    "RegionStore",
]

log = logging.getLogger("recorder.emulator.batch")

BATCH_PATH = "/v2"
#: The path prefix standing in for the EU host.
EU_PREFIX = "/eu"
#: The EU host's name: a request with this ``Host`` header is the EU's too.
EU_HOST = "api.eu.assemblyai.com"
_AUTH_ERROR = "Authentication error, API token missing/invalid"
_FOREIGN_UPLOAD = "Cannot access uploaded file"
_NEGATIVE_BALANCE = (
    "Your current account balance is negative. Please top up to continue using the API."
)
_REDACTED_AUDIO_HOST = {"us": "https://cdn.assemblyai.com", "eu": "https://cdn.eu.assemblyai.com"}


@dataclass(slots=True)
class RegionStore:
    """One region's data: uploads (bytes and owning project) and transcripts."""

    uploads: dict[str, bytes] = field(default_factory=dict)
    upload_projects: dict[str, str] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Caller:
    scope: KeyScope
    region: str


# Who is asking, for the route handlers (set around each routed request).
_caller: contextvars.ContextVar[_Caller] = contextvars.ContextVar("batch_caller")


_NO_ROUTE = json_reply(404, {"error": "Not found"})


def _too_many(retry_after_s: float) -> HttpResponse:
    after = max(1, int(retry_after_s) + 1)
    return json_reply(429, {"error": "Too Many Requests"}, {"Retry-After": str(after)})


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat()


def _bad(message: str) -> HttpResponse:
    return json_reply(400, {"error": message})


def _region_of(request: HttpRequest) -> tuple[str, str]:
    """``(region, path without the region prefix)``."""
    if request.path == EU_PREFIX or request.path.startswith(EU_PREFIX + "/"):
        return "eu", request.path[len(EU_PREFIX) :] or "/"
    host = request.headers.get("host", "").split(":", 1)[0].lower()
    return ("eu" if host == EU_HOST else "us"), request.path


@dataclass
class BatchEmulator:
    """The emulated service: its state, and :meth:`serve` to put it on a port.

    Args:
        api_keys: keys accepted (besides those of ``key_scopes``); both empty means any
            non-empty key.
        behaviour: timings, limits and switches.
        key_scopes: the (account, project) of each key; a key without one is in the
            default account and project.
        accounts: account settings by name (concurrency, creation date, negative balance).

    Attributes:
        base_url: where it is served (``http://HOST:PORT``), for the URLs in its answers.
        stores: each region's uploads and transcripts (``"us"``, ``"eu"``).
        uploads: the US region's uploaded bytes by upload URL.
        jobs: the US region's transcripts by id.
        requests: ``(method, path)`` of every request, in order.
        webhooks: ``(url, payload, status)`` of every webhook attempt.
    """

    api_keys: Iterable[str] = frozenset()
    behaviour: BatchBehaviour = field(default_factory=BatchBehaviour)
    key_scopes: Mapping[str, KeyScope] = field(default_factory=dict)
    accounts: Mapping[str, Account] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._scopes = dict(self.key_scopes)
        self._keys = frozenset(self.api_keys) | frozenset(self._scopes)
        self.stores = {"us": RegionStore(), "eu": RegionStore()}
        self.uploads = self.stores["us"].uploads
        self.jobs = self.stores["us"].jobs
        self.requests: list[tuple[str, str]] = []
        self.webhooks: list[tuple[str, dict[str, Any], int | None]] = []
        self._faults: deque[int] = deque()
        self._accounts: dict[str, AccountState] = {}
        for name, account in self.accounts.items():
            self._account(name).account = account
        self._tasks: set[asyncio.Task[None]] = set()
        self.base_url = ""
        self._router = Router(
            BATCH_PATH,
            # The retired v2 streaming socket is the streaming emulator's to refuse (410).
            exclude=("/v2/realtime",),
            not_found=_NO_ROUTE,
            max_body_bytes=self.behaviour.max_upload_bytes,
        )
        add = self._router.add
        add("POST", "/v2/upload", self._upload)
        add("POST", "/v2/transcript", self._create)
        add("GET", "/v2/transcript", self._list)
        add("GET", "/v2/transcript/{id}", self._get)
        add("DELETE", "/v2/transcript/{id}", self._delete)
        # The named views before the subtitle pattern, which would match them too.
        add("GET", "/v2/transcript/{id}/sentences", self._sentences)
        add("GET", "/v2/transcript/{id}/paragraphs", self._paragraphs)
        add("GET", "/v2/transcript/{id}/word-search", self._word_search)
        add("GET", "/v2/transcript/{id}/redacted-audio", self._redacted_audio)
        add("GET", "/v2/transcript/{id}/{kind}", self._subtitles)

    # -- controls for tests ----------------------------------------------------

    def fail_next(self, status: int, count: int = 1) -> None:
        """Answer the next ``count`` requests with ``status`` (one of :data:`FAULTS`)."""
        if status not in FAULTS:
            raise ValueError(f"unknown fault {status!r}; one of {FAULTS}")
        self._faults.extend([status] * count)

    def set_balance_negative(self, account: str, negative: bool = True) -> None:
        """Make an account's balance negative (requests refused) or topped up again."""
        state = self._account(account)
        state.account = dataclasses.replace(state.account, balance_negative=negative)
        if not negative:  # its slots are back: let waiting jobs run
            while state.waiting and state.running < state.limit:
                state.running += 1
                turn = state.waiting.popleft()
                if not turn.done():
                    turn.set_result(None)
                else:
                    state.running -= 1

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
        """Whether a request is for this API (everything under ``/v2`` or ``/eu/v2``)."""
        if path.startswith(EU_PREFIX + "/"):
            path = path[len(EU_PREFIX) :]
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
        scope = self._scopes.get(key, DEFAULT_SCOPE)
        behaviour = self.behaviour
        wait_s = self._account(scope.account).over_budget(
            behaviour.requests_per_window, behaviour.window_s
        )
        if wait_s is not None:
            return _too_many(wait_s)
        region, path = _region_of(request)
        token = _caller.set(_Caller(scope, region))
        try:
            return await self._router(dataclasses.replace(request, path=path))
        finally:
            _caller.reset(token)

    def _account(self, name: str) -> AccountState:
        state = self._accounts.get(name)
        if state is None:
            account = self.accounts.get(name, Account())
            state = AccountState(account, account.concurrency or self.behaviour.concurrency)
            self._accounts[name] = state
        return state

    def _fault(self, status: int) -> HttpResponse | None:
        if status == 0:
            return None
        if status == 429:
            return _too_many(0)  # retry at once: the fault, not a budget, refused it
        if status in (503, 504):  # the real service answers these with an empty body
            return HttpResponse(status)
        return json_reply(status, {"error": "Internal Server Error"})

    def _not_found_reply(self) -> HttpResponse:
        if self.behaviour.unknown_id == "lookup_error":
            return _bad("Transcript lookup error, transcript id not found")
        return json_reply(404, {"error": "Not found"})

    # -- the caller's data -------------------------------------------------------

    @staticmethod
    def _caller() -> _Caller:
        return _caller.get()

    def _store(self) -> RegionStore:
        return self.stores[self._caller().region]

    def _region_base(self) -> str:
        return self.base_url + (EU_PREFIX if self._caller().region == "eu" else "")

    def _job(self, request: HttpRequest) -> Job | None:
        """The caller's project's transcript of the path's id; another project's is not found."""
        job = self._store().jobs.get(request.params["id"])
        if job is None or job.scope.project != self._caller().scope.project:
            return None
        return job

    def _today(self) -> date:
        return self.behaviour.today or datetime.now(UTC).date()

    # -- routes ------------------------------------------------------------------

    async def _upload(self, request: HttpRequest) -> HttpResponse:
        if not request.body:
            return _bad("Upload failed: the file is empty")
        url = f"https://cdn.assemblyai.com/upload/{uuid.uuid4()}"
        store = self._store()
        store.uploads[url] = request.body
        store.upload_projects[url] = self._caller().scope.project
        return json_reply(200, {"upload_url": url})

    async def _get(self, request: HttpRequest) -> HttpResponse:
        job = self._job(request)
        return self._not_found_reply() if job is None else json_reply(200, job.body())

    async def _delete(self, request: HttpRequest) -> HttpResponse:
        job = self._job(request)
        if job is None:
            return self._not_found_reply()
        job.is_deleted = True
        job.words = None
        store = self._store()
        store.uploads.pop(job.params["audio_url"], None)
        store.upload_projects.pop(job.params["audio_url"], None)
        return json_reply(200, job.body())

    async def _create(self, request: HttpRequest) -> HttpResponse:
        try:
            params = json.loads(request.body or b"")
        except ValueError:
            return _bad("Invalid JSON body")
        if not isinstance(params, dict):
            return _bad("Invalid JSON body")
        caller = self._caller()
        account = self._account(caller.scope.account)
        behaviour = self.behaviour
        checked = check_create(
            params,
            policy=behaviour.speech_models_policy,
            deprecated=behaviour.deprecated_models,
            default_models=models_by_default(
                behaviour.speech_models_policy, account.account.created, self._today()
            ),
            feature_languages=behaviour.feature_languages,
            reject_unknown=behaviour.unknown_params == "reject",
        )
        if isinstance(checked, str):
            return _bad(checked)
        if account.account.balance_negative:
            return _bad(_NEGATIVE_BALANCE)
        store = self._store()
        owner = store.upload_projects.get(params["audio_url"])
        foreign = owner is not None and owner != caller.scope.project
        if foreign and behaviour.foreign_upload == "refuse":
            return json_reply(403, {"error": _FOREIGN_UPLOAD})
        job = Job(str(uuid.uuid4()), checked.params, _now(), checked.models, caller.scope)
        store.jobs[job.id] = job
        task = asyncio.create_task(
            self._process(job, store, account, foreign), name=f"batch-job-{job.id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return json_reply(200, job.body())

    async def _list(self, request: HttpRequest) -> HttpResponse:
        try:
            limit = min(200, max(1, int(request.query.get("limit", "10"))))
        except ValueError:
            return _bad("limit must be an integer")
        status = request.query.get("status")
        project = self._caller().scope.project
        jobs = [
            j
            for j in reversed(self._store().jobs.values())
            if j.scope.project == project and (status is None or j.status == status)
        ]
        page = jobs[:limit]
        base = self._region_base()
        return json_reply(
            200,
            {
                "page_details": {
                    "limit": limit,
                    "result_count": len(page),
                    "current_url": f"{base}/v2/transcript?limit={limit}",
                    "prev_url": (
                        f"{base}/v2/transcript?limit={limit}&before_id={page[-1].id}"
                        if len(jobs) > limit
                        else None
                    ),
                    "next_url": None,
                },
                "transcripts": [
                    {
                        "id": j.id,
                        "resource_url": f"{base}/v2/transcript/{j.id}",
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

    def _completed(self, request: HttpRequest) -> Job | HttpResponse:
        """The transcript for a read view, or the answer that says why not."""
        job = self._job(request)
        if job is None:
            return self._not_found_reply()
        if not job.is_done:
            return _bad("Transcript is not completed")
        return job

    async def _subtitles(self, request: HttpRequest) -> HttpResponse:
        kind = request.params["kind"]
        if kind not in ("srt", "vtt"):
            return self._not_found_reply()
        job = self._completed(request)
        if isinstance(job, HttpResponse):
            return job
        chars = request.query.get("chars_per_caption")
        if chars is not None and (not chars.isdigit() or int(chars) < 1):
            return _bad("chars_per_caption must be a positive integer")
        assert job.words is not None
        text = subtitles(job.words, kind, int(chars) if chars is not None else None)
        return HttpResponse(200, text.encode(), content_type="text/plain")

    async def _sentences(self, request: HttpRequest) -> HttpResponse:
        job = self._completed(request)
        if isinstance(job, HttpResponse):
            return job
        body = job.body()
        found = sentences(body["words"])
        return json_reply(200, {**_view_head(body), "sentences": found})

    async def _paragraphs(self, request: HttpRequest) -> HttpResponse:
        job = self._completed(request)
        if isinstance(job, HttpResponse):
            return job
        body = job.body()
        return json_reply(200, {**_view_head(body), "paragraphs": paragraphs(body["words"])})

    async def _word_search(self, request: HttpRequest) -> HttpResponse:
        job = self._completed(request)
        if isinstance(job, HttpResponse):
            return job
        terms = search_terms(request.query)
        if isinstance(terms, str):
            return _bad(terms)
        assert job.words is not None
        total, matches = word_search(job.words, terms)
        return json_reply(200, {"id": job.id, "total_count": total, "matches": matches})

    async def _redacted_audio(self, request: HttpRequest) -> HttpResponse:
        job = self._job(request)
        if job is None:
            return self._not_found_reply()
        if not (job.params.get("redact_pii") and job.params.get("redact_pii_audio")):
            return _bad("Redacted audio is only available with redact_pii and redact_pii_audio")
        if job.status == "error" or job.is_deleted:
            return _bad("Redacted audio is not available for this transcript")
        age = None if job.completed_at is None else time.monotonic() - job.completed_at
        if age is None or age < self.behaviour.redacted_audio_delay_s:
            return json_reply(202, {"status": job.status})  # the SDK's "not ready yet"
        if age >= self.behaviour.redacted_audio_ttl_s:
            return _bad("Redacted audio is no longer available")  # the SDK's "expired"
        extension = job.params.get("redact_pii_audio_quality") or "mp3"
        host = _REDACTED_AUDIO_HOST[self._caller().region]
        return json_reply(
            200,
            {
                "status": "redacted_audio_ready",
                "redacted_audio_url": f"{host}/redacted-audio/{job.id}.{extension}",
            },
        )

    # -- jobs --------------------------------------------------------------------

    async def _process(
        self, job: Job, store: RegionStore, account: AccountState, foreign: bool
    ) -> None:
        turn = account.must_wait()
        if turn is not None:
            job.throttled = True
            await turn
        try:
            job.throttled = False
            job.status = "processing"
            await asyncio.sleep(self.behaviour.processing_s)
            await self._run(job, store, foreign)
            job.completed = _now()
            job.completed_at = time.monotonic()
        finally:
            account.release()
        log.info("= async transcript %s %s", job.id, job.status)
        if job.params.get("webhook_url"):
            behaviour = self.behaviour
            await deliver(
                job,
                attempts=behaviour.webhook_attempts,
                retry_s=behaviour.webhook_retry_s,
                record=lambda *attempt: self.webhooks.append(attempt),
            )

    async def _run(self, job: Job, store: RegionStore, foreign: bool) -> None:
        url = job.params["audio_url"]
        data = store.uploads.get(url)
        if foreign:
            job.status, job.error = "error", _FOREIGN_UPLOAD
            return
        if data is None:
            job.status, job.error = "error", _download_error(url)
            return
        try:
            words, duration_ms = await asyncio.to_thread(recognize, data)
        except NotAudio:
            job.status, job.error = "error", "File does not appear to contain audio."
            return
        if duration_ms < MIN_DURATION_MS:
            job.status, job.error = "error", "Audio duration is too short."
            return
        job.words, job.duration_s = shape_words(words, job.params), round(duration_ms / 1000)
        job.model_used = model_used(job.models, job.params.get("language_code") or "en")
        job.status = "completed"


def _view_head(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": body["id"],
        "confidence": body["confidence"],
        "audio_duration": body["audio_duration"],
    }


def _download_error(url: str) -> str:
    return (
        f"Download error, unable to download {url}. Please make sure the file exists "
        "and is accessible from the internet."
    )


@dataclass(frozen=True, slots=True)
class BatchServer:
    """A running async emulator: its base URL (``http://HOST:PORT``) and state."""

    url: str
    emulator: BatchEmulator
