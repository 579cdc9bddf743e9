"""An async client for the LLM Gateway's ``POST /v1/chat/completions``.

The gateway's wire details changed during 2026 and the sources disagree on some
(docs/providers.md, "LLM Gateway"), so the client reads answers tolerantly: usage as
``input_tokens``/``output_tokens`` or ``prompt_tokens``/``completion_tokens``, errors in
any of the three body shapes, ``finish_reason`` normalised (``length``/``max_tokens``)
or provider-native. A 429 waits for ``Retry-After`` or ``X-RateLimit-Reset`` when given,
a 5xx or timeout is retried a bounded number of times, and every other failure becomes
one :class:`~recorder.errors.LlmError` line. The API key is sent, never logged or shown.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from recorder.errors import LlmError, LlmRejected

if TYPE_CHECKING:
    import httpx

__all__ = ["Completion", "LlmClient", "RetryPolicy", "Usage", "error_message"]

log = logging.getLogger("recorder.llm")

_TRUNCATED = frozenset({"length", "max_tokens"})


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one or more completions used."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens
        )


@dataclass(frozen=True, slots=True)
class Completion:
    """One answer from the gateway.

    Attributes:
        content: the assistant message's text (a JSON string with a schema), or None.
        finish_reason: as sent (``stop``, ``end_turn``, ``length``, ...), or None.
        usage: tokens this request used.
        request_id: the gateway's id for the request, for support.
        model: the model asked for.
    """

    content: str | None
    finish_reason: str | None
    usage: Usage
    request_id: str | None
    model: str

    @property
    def is_truncated(self) -> bool:
        """Whether the answer stopped at ``max_tokens``."""
        return (self.finish_reason or "").lower() in _TRUNCATED


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try before reporting a failure.

    Attributes:
        attempts: requests at most, the first included, for 429, 5xx and timeouts.
        base_delay_s: first back-off after a 5xx or timeout; doubles each time.
        max_delay_s: the longest back-off after a 5xx or timeout.
        max_rate_wait_s: the longest wait a 429 may ask for (the gateway's window is 60 s);
            a longer one is reported at once.
    """

    attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_rate_wait_s: float = 60.0


def error_message(body: bytes | str) -> str:
    """The message in an error body, whichever of the gateway's shapes it has.

    Shapes: ``{"error": "..."}`` (auth), ``{"error": {"message": ...}}`` (until
    March 2026), ``{"message": ..., "metadata": {"errors": [...]}}`` (from June 2026),
    ``{"detail": [{"msg": ...}]}``, or plain text.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:200] or "no details"
    if not isinstance(data, dict):
        return " ".join(text.split())[:200]
    error: Any = data.get("error")
    message: Any = None
    details: list[str] = []
    if isinstance(error, str):
        message = error
    elif isinstance(error, dict):
        message = error.get("message")
        errors = (error.get("metadata") or {}).get("errors")
        details = [str(e) for e in errors] if isinstance(errors, list) else []
    if message is None:
        message = data.get("message")
        metadata = data.get("metadata")
        errors = metadata.get("errors") if isinstance(metadata, dict) else None
        details = [str(e) for e in errors] if isinstance(errors, list) else details
    if message is None and isinstance(data.get("detail"), list):
        details = [str(d.get("msg", d)) for d in data["detail"] if isinstance(d, dict)]
        message = "invalid request"
    text = str(message or "no details")
    extra = [d for d in details if d and d not in text]
    return (text + (": " + "; ".join(extra) if extra else ""))[:300]


def _retry_after_s(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds a 429 asks us to wait: ``Retry-After`` (seconds or date), else the reset."""
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - now)
            except (TypeError, ValueError):
                pass
    reset = headers.get("x-ratelimit-reset")
    if reset:
        try:
            return max(0.0, float(reset))
        except ValueError:
            return None
    return None


def _parse_usage(data: Any) -> Usage:
    if not isinstance(data, dict):
        return Usage()

    def number(*names: str) -> int:
        for name in names:
            value = data.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return int(value)
        return 0

    return Usage(
        input_tokens=number("input_tokens", "prompt_tokens"),
        output_tokens=number("output_tokens", "completion_tokens"),
    )


def _parse_completion(payload: Any, model: str) -> Completion:
    if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list):
        raise LlmError("the LLM Gateway sent an answer without choices; check --llm-url")
    content: str | None = None
    finish: str | None = None
    # An answer may be split across choices (text in one, tool calls in another).
    for choice in payload["choices"]:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if isinstance(text, list):  # content parts
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        if isinstance(text, str) and content is None:
            content = text
            finish = choice.get("finish_reason")
        elif finish is None:
            finish = choice.get("finish_reason")
    request_id = payload.get("request_id") or payload.get("id")
    return Completion(
        content=content,
        finish_reason=str(finish) if finish is not None else None,
        usage=_parse_usage(payload.get("usage")),
        request_id=str(request_id) if request_id else None,
        model=model,
    )


@dataclass(slots=True)
class _Totals:
    calls: int = 0
    usage: Usage = field(default_factory=Usage)


class LlmClient:
    """Chat completions against one gateway base URL with one API key.

    Use as ``async with LlmClient(url, key) as client``. ``calls`` and ``usage``
    add up every request made through it (retries included).

    Args:
        base_url: the gateway base, e.g. ``https://llm-gateway.assemblyai.com/v1``.
        api_key: the AssemblyAI key, sent as the raw ``Authorization`` value.
        timeout_s: per-request timeout.
        retry: how many times to retry 429, 5xx and timeouts.
        transport: an httpx transport (tests).
        sleep: the sleep used between retries (tests pass a recording one).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._totals = _Totals()
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            transport=transport,
            headers={"Authorization": api_key, "Content-Type": "application/json"},
        )

    def __repr__(self) -> str:
        return f"<LlmClient {self.base_url} calls={self._totals.calls}>"

    @property
    def calls(self) -> int:
        """Requests answered with a completion."""
        return self._totals.calls

    @property
    def usage(self) -> Usage:
        """Tokens used by every completion so far."""
        return self._totals.usage

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> LlmClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def complete(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        model: str,
        max_tokens: int = 1000,
        temperature: float | None = 0.0,
        json_schema: Mapping[str, Any] | None = None,
        schema_name: str = "answer",
    ) -> Completion:
        """One chat completion, retried on 429, 5xx and timeouts.

        Args:
            messages: ``{"role": ..., "content": ...}`` dicts, in order.
            model: the gateway model id.
            max_tokens: the answer's token budget.
            temperature: sampling temperature (None: the model's default).
            json_schema: with it, ask for a JSON answer matching this schema.
            schema_name: the schema's name in the request.

        Raises:
            LlmRejected: the gateway refused the request for good (key, model, body).
            LlmError: unreachable, or still failing after the retries.
        """
        body: dict[str, Any] = {
            "model": model,
            "messages": [dict(m) for m in messages],
            "max_tokens": max_tokens,
        }
        if temperature is not None:
            body["temperature"] = temperature
        if json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "schema": dict(json_schema)},
            }
        response = await self._post_with_retries("/chat/completions", body, model)
        try:
            payload = response.json()
        except ValueError:
            raise LlmError(
                f"the LLM Gateway at {self.base_url} sent a response that is not JSON; "
                "check --llm-url"
            ) from None
        completion = _parse_completion(payload, model)
        self._totals.calls += 1
        self._totals.usage = self._totals.usage + completion.usage
        log.debug(
            "< completion %s: %d in, %d out, finish %s",
            completion.request_id,
            completion.usage.input_tokens,
            completion.usage.output_tokens,
            completion.finish_reason,
        )
        return completion

    async def _post_with_retries(
        self, path: str, body: dict[str, Any], model: str
    ) -> httpx.Response:
        import httpx

        url = self.base_url + path
        delay = self._retry.base_delay_s
        last = ""
        for attempt in range(1, self._retry.attempts + 1):
            log.debug("> POST %s model %s (attempt %d)", url, model, attempt)
            try:
                response = await self._http.post(url, content=json.dumps(body).encode("utf-8"))
            except httpx.TimeoutException:
                last = "timed out"
                wait = delay
            except httpx.HTTPError as exc:
                raise LlmError(
                    f"cannot reach the LLM Gateway at {self.base_url} ({_reason(exc)}); "
                    "check your network, or --llm-url / RECORDER_LLM_URL"
                ) from None
            else:
                status = response.status_code
                if status < 300:
                    return response
                message = error_message(response.content)
                if status == 429:
                    asked = _retry_after_s(response.headers, time.time())
                    last = f"rate limited (HTTP 429: {message})"
                    wait = delay if asked is None else asked
                    if wait > self._retry.max_rate_wait_s:
                        raise LlmError(
                            f"the LLM Gateway is rate limiting model {model} for another "
                            f"{wait:.0f} s; try again later"
                        )
                elif status >= 500:
                    last = f"HTTP {status}: {message}"
                    wait = delay
                else:
                    raise _rejection(status, message, model, self.base_url)
            if attempt == self._retry.attempts:
                break
            log.info("! llm gateway %s; retrying in %.1f s", last, wait)
            await self._sleep(wait)
            delay = min(delay * 2, self._retry.max_delay_s)
        raise LlmError(
            f"the LLM Gateway failed {self._retry.attempts} times for model {model} ({last}); "
            "try again later"
        )


def _reason(exc: Exception) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        cause = cause.__cause__ or cause.__context__
    return exc.__class__.__name__


def _rejection(status: int, message: str, model: str, base_url: str) -> LlmRejected:
    if status in (401, 403):
        return LlmRejected(
            f"the LLM Gateway rejected the API key (HTTP {status}: {message}); check "
            "ASSEMBLYAI_API_KEY (the gateway needs a paid AssemblyAI account)"
        )
    if status == 404:
        return LlmRejected(
            f"the LLM Gateway at {base_url} has no such model or endpoint (HTTP 404: "
            f"{message}); check --model {model} and --llm-url"
        )
    hint = "; pick another with --model" if "model" in message.lower() else ""
    return LlmRejected(f"the LLM Gateway refused the request (HTTP {status}: {message}){hint}")
