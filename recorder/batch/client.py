"""An asyncio client of AssemblyAI's pre-recorded (async) API v2.

Upload the audio (``POST /v2/upload``), create a transcript
(``POST /v2/transcript``), poll ``GET /v2/transcript/{id}`` until it is
``completed`` or ``error``, and delete it when done (docs/providers.md,
"Pre-recorded (async) API"). HTTP runs on the standard library in a worker
thread (a few requests per repair do not justify another dependency).
Retryable answers (429 with ``Retry-After``, 500, 503, 504, connection
failures) are retried with backoff; 401 is the key, and is final.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from recorder.errors import SttConnectionError, SttError, SttRejected

__all__ = ["AsyncClient", "Transcript", "TranscriptWord"]

log = logging.getLogger(__name__)

_RETRYABLE = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class TranscriptWord:
    """One word of a finished transcript; times in ms from the start of the audio."""

    text: str
    start_ms: int
    end_ms: int
    confidence: float | None


@dataclass(frozen=True, slots=True)
class Transcript:
    """A finished transcript: its id, words, language and the model that ran."""

    id: str
    text: str
    words: tuple[TranscriptWord, ...]
    language_code: str | None
    speech_model_used: str | None


class AsyncClient:
    """Talks to one pre-recorded API base URL with one key.

    Args:
        base_url: e.g. ``https://api.assemblyai.com`` (or an emulator's).
        api_key: the AssemblyAI key (sent as the raw ``Authorization`` header).
        poll_interval_s: time between status polls (the SDKs use 3 s).
        timeout_s: bound on one HTTP request.
        max_wait_s: bound on waiting for one transcript.
        attempts: tries per request on a retryable failure.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        poll_interval_s: float = 3.0,
        timeout_s: float = 60.0,
        max_wait_s: float = 1800.0,
        attempts: int = 5,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._key = api_key
        self.poll_interval_s = poll_interval_s
        self._timeout_s = timeout_s
        self._max_wait_s = max_wait_s
        self._attempts = attempts

    def __repr__(self) -> str:
        return f"AsyncClient(base_url={self._base!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    # -- the API ----------------------------------------------------------------

    async def upload(self, audio: bytes) -> str:
        """Upload audio (any supported file format); returns its ``upload_url``."""
        body = await self._request("POST", "/v2/upload", audio, "application/octet-stream")
        url = body.get("upload_url")
        if not isinstance(url, str):
            raise SttError(f"the async API's upload answer has no upload_url: {body!r:.200}")
        return url

    async def create(
        self,
        audio_url: str,
        *,
        speech_models: tuple[str, ...] = (),
        keyterms: tuple[str, ...] = (),
        language_code: str | None = None,
    ) -> str:
        """Queue a transcript of ``audio_url``; returns its id."""
        params: dict[str, Any] = {"audio_url": audio_url, "punctuate": True, "format_text": True}
        if speech_models:
            params["speech_models"] = list(speech_models)
        if keyterms:
            params["keyterms_prompt"] = list(keyterms)
        if language_code:
            params["language_code"] = language_code
        body = await self._request(
            "POST", "/v2/transcript", json.dumps(params).encode(), "application/json"
        )
        transcript_id = body.get("id")
        if not isinstance(transcript_id, str):
            raise SttError(f"the async API's create answer has no id: {body!r:.200}")
        return transcript_id

    async def get(self, transcript_id: str) -> dict[str, Any]:
        """The transcript object as it is now."""
        return await self._request("GET", f"/v2/transcript/{transcript_id}")

    async def delete(self, transcript_id: str) -> None:
        """Delete the transcript and its uploaded audio from the service."""
        await self._request("DELETE", f"/v2/transcript/{transcript_id}")

    async def wait(self, transcript_id: str) -> Transcript:
        """Poll until the transcript is ``completed`` (or raise on ``error``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_wait_s
        while True:
            body = await self.get(transcript_id)
            status = body.get("status")
            if status == "completed":
                return _transcript(body)
            if status == "error":
                raise SttError(
                    f"the async API could not transcribe {transcript_id}: "
                    f"{body.get('error') or 'no reason given'}"
                )
            if loop.time() >= deadline:
                raise SttConnectionError(
                    f"transcript {transcript_id} was not done after {self._max_wait_s:.0f} s; "
                    "run 'recorder repair' again later"
                )
            await asyncio.sleep(self.poll_interval_s)

    async def transcribe(
        self,
        audio: bytes,
        *,
        speech_models: tuple[str, ...] = (),
        keyterms: tuple[str, ...] = (),
        language_code: str | None = None,
    ) -> Transcript:
        """Upload, create, wait, and delete the copy on the service; returns the transcript."""
        url = await self.upload(audio)
        transcript_id = await self.create(
            url, speech_models=speech_models, keyterms=keyterms, language_code=language_code
        )
        transcript = await self.wait(transcript_id)
        try:
            await self.delete(transcript_id)
        except SttError as exc:  # the words are ours already
            log.warning("! transcript %s not deleted from the service: %s", transcript_id, exc)
        return transcript

    # -- HTTP --------------------------------------------------------------------

    async def _request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> dict[str, Any]:
        delay = 0.5
        for attempt in range(1, self._attempts + 1):
            try:
                return await asyncio.to_thread(self._send, method, path, body, content_type)
            except _Retry as retry:
                if attempt == self._attempts:
                    raise SttConnectionError(
                        f"the async API at {self._base} kept failing ({retry.problem}); "
                        "run 'recorder repair' again later"
                    ) from None
                wait = retry.after_s if retry.after_s is not None else delay
                log.info("= async api %s %s: %s, retry in %.1f s", method, path, retry, wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self, method: str, path: str, body: bytes | None, content_type: str | None
    ) -> dict[str, Any]:
        headers = {"Authorization": self._key, "Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(
            self._base + path, data=body, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            message = _error_text(raw) or exc.reason
            if exc.code == 401:
                raise SttRejected(
                    f"the async API rejected the key: {message}",
                    code=401,
                    hint="check ASSEMBLYAI_API_KEY",
                ) from None
            if exc.code in _RETRYABLE:
                after = exc.headers.get("Retry-After") if exc.headers else None
                raise _Retry(f"HTTP {exc.code} {message}", _seconds(after)) from None
            raise SttError(
                f"the async API refused {method} {path}: HTTP {exc.code} {message}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Retry(f"cannot reach {self._base}: {reason}", None) from None
        try:
            parsed = json.loads(raw or b"{}")
        except ValueError:
            raise SttError(f"the async API sent something that is not JSON for {path}") from None
        if not isinstance(parsed, dict):
            raise SttError(f"the async API sent unexpected JSON for {path}")
        return parsed


class _Retry(Exception):
    def __init__(self, problem: str, after_s: float | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.after_s = after_s


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, min(float(value), 60.0)) if value else None
    except ValueError:
        return None


def _error_text(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return ""
    return str(body.get("error", "")) if isinstance(body, dict) else ""


def _transcript(body: dict[str, Any]) -> Transcript:
    words = tuple(
        TranscriptWord(
            text=str(word["text"]),
            start_ms=int(word["start"]),
            end_ms=int(word["end"]),
            confidence=word.get("confidence"),
        )
        for word in body.get("words") or ()
        if isinstance(word, dict) and "text" in word and "start" in word and "end" in word
    )
    return Transcript(
        id=str(body.get("id", "")),
        text=str(body.get("text") or ""),
        words=words,
        language_code=body.get("language_code"),
        speech_model_used=body.get("speech_model_used"),
    )
