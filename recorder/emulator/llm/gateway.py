"""An LLM Gateway emulator: ``POST /v1/chat/completions`` and ``GET /v1/models``.

It checks what the real gateway checks (auth, model, body, ``response_format``,
``max_tokens``, context length, a per-key per-model rate limit with ``X-RateLimit-*``
headers) and answers with :mod:`recorder.emulator.llm.model`'s extractive "model".
Where AssemblyAI's sources disagree or changed during 2026 (docs/providers.md,
"LLM Gateway"), :class:`LlmBehaviour` switches between the versions; faults (429,
5xx, malformed or truncated answers) are injected per request with :meth:`inject` or
for every request with ``LlmBehaviour.fault``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from recorder.emulator.http import HttpRequest, HttpResponse, json_reply, text_reply
from recorder.emulator.llm import model as extractive
from recorder.emulator.router import Router

__all__ = [
    "CHAT_PATH",
    "FAULTS",
    "LLM_BASE_PATH",
    "MODELS",
    "MODELS_PATH",
    "LlmBehaviour",
    "LlmGatewayEmulator",
    "LlmRequestRecord",
]

log = logging.getLogger("recorder.emulator.llm")

LLM_BASE_PATH = "/v1"
CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
FAULTS = ("429", "500", "503", "malformed", "truncated")
Fault = Literal["429", "500", "503", "malformed", "truncated"]


@dataclass(frozen=True, slots=True)
class _Model:
    context_length: int
    prompt_usd: float  # per token
    completion_usd: float
    structured: bool = True


# The late-2026 catalogue (docs/providers.md, "LLM Gateway: models"), with the
# providers' list prices per token; structured outputs are not offered by gpt-oss
# models or claude-sonnet-5 at launch.
MODELS: dict[str, _Model] = {
    "claude-haiku-4-5-20251001": _Model(200_000, 1e-6, 5e-6),
    "claude-sonnet-4-5-20250929": _Model(200_000, 3e-6, 15e-6),
    "claude-sonnet-4-6": _Model(200_000, 3e-6, 15e-6),
    "claude-opus-4-5-20251101": _Model(200_000, 5e-6, 25e-6),
    "claude-opus-4-6": _Model(200_000, 5e-6, 25e-6),
    "claude-opus-4-7": _Model(200_000, 5e-6, 25e-6),
    "claude-sonnet-5": _Model(200_000, 3e-6, 15e-6, structured=False),
    "gpt-4.1": _Model(1_000_000, 2e-6, 8e-6),
    "gpt-5": _Model(400_000, 1.25e-6, 10e-6),
    "gpt-5.1": _Model(400_000, 1.25e-6, 10e-6),
    "gpt-5.2": _Model(400_000, 1.25e-6, 10e-6),
    "gpt-5-mini": _Model(400_000, 0.25e-6, 2e-6),
    "gpt-5-nano": _Model(400_000, 0.05e-6, 0.4e-6),
    "gpt-oss-120b": _Model(128_000, 0.15e-6, 0.6e-6, structured=False),
    "gpt-oss-20b": _Model(128_000, 0.05e-6, 0.2e-6, structured=False),
    "gemini-2.5-pro": _Model(1_000_000, 1.25e-6, 10e-6),
    "gemini-2.5-flash": _Model(1_000_000, 0.3e-6, 2.5e-6),
    "gemini-2.5-flash-lite": _Model(1_000_000, 0.1e-6, 0.4e-6),
    # Small context, so tests can reach the context limit cheaply.
    "emulator-tiny": _Model(4_000, 1e-6, 5e-6),
}


@dataclass(frozen=True, slots=True)
class LlmBehaviour:
    """Switches for behaviours the sources disagree on, and fault injection.

    Attributes:
        unknown_model_status: 400 ``model x is not supported`` (late 2026) or 404 (March 2026).
        error_shape: ``flat`` ``{message, request_id, metadata}`` (June 2026) or ``nested``
            ``{"error": {code, message}}`` (until March 2026).
        finish_reason: ``native`` (``end_turn``/``max_tokens`` for Claude) or ``normalized``
            (``stop``/``length``).
        usage_names: ``input`` (``input_tokens``/``output_tokens``), ``prompt``
            (``prompt_tokens``/``completion_tokens``) or ``both``.
        accept_bearer: accept ``Authorization: Bearer KEY`` as well as the raw key.
        retry_after: send ``Retry-After`` on 429 (undocumented for the gateway).
        rate_limit: requests per key and model per 60 s window.
        region: ``us``, or ``eu`` (OpenAI models refused).
        fault: a fault for every request (``recorder emulate --llm-fault``), or None.
    """

    unknown_model_status: int = 400
    error_shape: Literal["flat", "nested"] = "flat"
    finish_reason: Literal["native", "normalized"] = "native"
    usage_names: Literal["input", "prompt", "both"] = "input"
    accept_bearer: bool = True
    retry_after: bool = False
    rate_limit: int = 30
    region: Literal["us", "eu"] = "us"
    fault: Fault | None = None


@dataclass(frozen=True, slots=True)
class LlmRequestRecord:
    """One request the emulator answered."""

    status: int
    model: str | None
    schema_name: str | None
    input_tokens: int = 0
    output_tokens: int = 0
    fault: str | None = None


def _tokens(text: str) -> int:
    # About four characters a token for English text (docs/providers.md, "LLM Gateway: pricing").
    return max(1, (len(text) + 3) // 4)


@dataclass(slots=True)
class _Window:
    started: float
    count: int = 0


class LlmGatewayEmulator:
    """The emulated gateway; mount :attr:`router` in an HTTP server.

    Args:
        api_keys: accepted keys; empty accepts any non-empty key.
        behaviour: switches and faults.
        clock: seconds, monotonic (tests pass their own).
        no_access_keys: valid keys of accounts without the gateway (free plans): 403.
    """

    def __init__(
        self,
        *,
        api_keys: Iterable[str] = (),
        behaviour: LlmBehaviour | None = None,
        clock: Any = time.monotonic,
        no_access_keys: Iterable[str] = (),
    ) -> None:
        self.api_keys = frozenset(api_keys)
        self.no_access_keys = frozenset(no_access_keys)
        self.behaviour = behaviour or LlmBehaviour()
        self.requests: list[LlmRequestRecord] = []
        self._faults: deque[Fault] = deque()
        self._windows: dict[tuple[str, str], _Window] = {}
        self._clock = clock
        # Everything under /v1 but the Voice Agent's sockets is the gateway's.
        self.router = Router(
            LLM_BASE_PATH,
            exclude=("/v1/ws", "/v1/token"),
            method_not_allowed=text_reply(405, "Method Not Allowed"),
        )
        self.router.add("GET", MODELS_PATH, self._models)
        self.router.add("POST", CHAT_PATH, self._chat_completions)

    def __repr__(self) -> str:
        return f"<LlmGatewayEmulator {len(self.requests)} requests>"

    def inject(self, *faults: Fault) -> None:
        """Answer the next requests with these faults, one each, in order."""
        for fault in faults:
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
            self._faults.append(fault)

    # -- responses ---------------------------------------------------------------------

    def _error(
        self, status: int, message: str, *, errors: list[str] | None = None, headers: Any = None
    ) -> HttpResponse:
        request_id = str(uuid.uuid4())
        body: dict[str, Any]
        if status in (401, 403):
            body = {"error": message, "status": "error", "request_id": request_id}
        elif self.behaviour.error_shape == "nested":
            body = {"error": {"code": status, "message": message, "metadata": {}}}
            if errors:
                body["error"]["metadata"]["errors"] = errors
        else:
            body = {"code": status, "message": message, "request_id": request_id}
            body["metadata"] = {"errors": errors or []}
        return json_reply(status, body, headers)

    def _rate_headers(self, key: str, model: str) -> tuple[dict[str, str], bool]:
        now = self._clock()
        window = self._windows.get((key, model))
        if window is None or now - window.started >= 60.0:
            window = self._windows[(key, model)] = _Window(now)
        window.count += 1
        limit = self.behaviour.rate_limit
        reset = max(1, round(60.0 - (now - window.started)))
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - window.count)),
            "X-RateLimit-Reset": str(reset),
            "X-RateLimit-Model": model,
            "X-RateLimit-Service": "llm-gateway",
        }
        return headers, window.count > limit

    def _authorised(self, request: HttpRequest) -> str | None:
        value = request.headers.get("authorization", "").strip()
        if value.lower().startswith("bearer "):
            if not self.behaviour.accept_bearer:
                return None
            value = value[7:].strip()
        if not value or (
            self.api_keys and value not in self.api_keys and value not in self.no_access_keys
        ):
            return None
        return value

    async def handle(self, request: HttpRequest) -> HttpResponse | None:
        """Answer one HTTP request under ``/v1``."""
        return await self.router(request)

    async def _chat_completions(self, request: HttpRequest) -> HttpResponse:
        response, record = self._chat(request)
        self.requests.append(record)
        log.info(
            "llm %s %s: %d, %d in, %d out%s",
            record.model,
            record.schema_name or "text",
            record.status,
            record.input_tokens,
            record.output_tokens,
            f", fault {record.fault}" if record.fault else "",
        )
        return response

    async def _models(self, request: HttpRequest) -> HttpResponse:
        data = [
            {
                "id": name,
                "name": name,
                "context_length": spec.context_length,
                "supported_parameters": ["temperature", "tools"]
                + (["response_format"] if spec.structured else []),
                "pricing": {
                    "global": {"prompt": spec.prompt_usd, "completions": spec.completion_usd},
                    "regional_increase_percent": 10,
                },
                "available_regions": ["us"] if name.startswith("gpt") else ["us", "eu"],
            }
            for name, spec in MODELS.items()
        ]
        return json_reply(200, {"data": data})

    def _chat(self, request: HttpRequest) -> tuple[HttpResponse, LlmRequestRecord]:
        key = self._authorised(request)
        if key is None:
            message = "Authentication error, API token missing/invalid"
            return self._error(401, message), LlmRequestRecord(401, None, None)
        if key in self.no_access_keys:
            # The wording AssemblyAI's CLI expects (docs/providers.md, "LLM Gateway").
            message = "Your account has no access to the LLM Gateway."
            return self._error(403, message), LlmRequestRecord(403, None, None)
        try:
            body = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            return (
                self._error(400, "invalid request body", errors=["body is not valid JSON"]),
                LlmRequestRecord(400, None, None),
            )
        problem, errors = _validate(body)
        if problem:
            return self._error(400, problem, errors=errors), LlmRequestRecord(400, None, None)
        model = body["model"]
        spec = MODELS.get(model)
        if spec is None or (self.behaviour.region == "eu" and model.startswith("gpt")):
            status = self.behaviour.unknown_model_status if spec is None else 400
            return (
                self._error(status, f"model {model} is not supported"),
                LlmRequestRecord(status, model, None),
            )
        response_format = body.get("response_format")
        schema_name: str | None = None
        schema: Any = None
        if response_format is not None:
            problem = _response_format_problem(response_format, spec)
            if problem:
                return (
                    self._error(400, f"response_format is invalid: {problem}"),
                    LlmRequestRecord(400, model, None),
                )
            schema_name = response_format["json_schema"]["name"]
            schema = response_format["json_schema"]["schema"]
        messages = body.get("messages") or [{"role": "user", "content": body.get("prompt", "")}]
        input_text = "".join(str(m.get("content") or "") for m in messages)
        input_tokens = _tokens(input_text)
        if input_tokens >= spec.context_length:
            return (
                self._error(400, "model context limit exceeded"),
                LlmRequestRecord(400, model, schema_name, input_tokens),
            )
        headers, over = self._rate_headers(key, model)
        fault = self._faults.popleft() if self._faults else self.behaviour.fault
        if over or fault == "429":
            if self.behaviour.retry_after:
                headers["Retry-After"] = headers["X-RateLimit-Reset"] if over else "1"
            if fault == "429" and not over:
                headers["X-RateLimit-Remaining"] = "0"
                headers["X-RateLimit-Reset"] = "1"
            return (
                self._error(429, "rate limit exceeded", headers=headers),
                LlmRequestRecord(429, model, schema_name, fault="429" if fault == "429" else None),
            )
        if fault in ("500", "503"):
            status = int(fault)
            return (
                self._error(status, "upstream provider error", headers=headers),
                LlmRequestRecord(status, model, schema_name, fault=fault),
            )
        started = time.perf_counter_ns()
        value = extractive.complete(messages, schema_name, schema)
        content = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        truncated = False
        max_tokens = int(body.get("max_tokens", 1000))
        if fault == "malformed":
            content = content.replace('"', "", 3) + ",}"
        if fault == "truncated" or _tokens(content) > max_tokens:
            content = content[: max(1, min(len(content) // 2, max_tokens * 4))]
            truncated = True
        output_tokens = _tokens(content)
        record = LlmRequestRecord(200, model, schema_name, input_tokens, output_tokens, fault)
        payload = {
            "request_id": str(uuid.uuid4()),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": self._finish(model, truncated),
                }
            ],
            "request": {k: v for k, v in body.items() if k not in ("messages", "prompt")},
            "usage": self._usage(input_tokens, output_tokens),
            "http_status_code": 200,
            "response_time": time.perf_counter_ns() - started,
            "llm_status_code": 200,
        }
        return json_reply(200, payload, headers), record

    def _finish(self, model: str, truncated: bool) -> str:
        if self.behaviour.finish_reason == "native" and model.startswith("claude"):
            return "max_tokens" if truncated else "end_turn"
        return "length" if truncated else "stop"

    def _usage(self, input_tokens: int, output_tokens: int) -> dict[str, int]:
        usage = {"total_tokens": input_tokens + output_tokens}
        if self.behaviour.usage_names in ("input", "both"):
            usage.update(input_tokens=input_tokens, output_tokens=output_tokens)
        if self.behaviour.usage_names in ("prompt", "both"):
            usage.update(prompt_tokens=input_tokens, completion_tokens=output_tokens)
        return usage


def _validate(body: Any) -> tuple[str | None, list[str]]:
    if not isinstance(body, dict):
        return "invalid request body", ["body must be a JSON object"]
    errors: list[str] = []
    if not isinstance(body.get("model"), str) or not body.get("model"):
        errors.append("'model' is required")
    if "messages" not in body and "prompt" not in body:
        errors.append("one of messages or prompt required")
    messages = body.get("messages")
    if messages is not None and (
        not isinstance(messages, list)
        or not all(isinstance(m, dict) and m.get("role") for m in messages)
    ):
        errors.append("'messages' must be a list of messages with a role")
    max_tokens = body.get("max_tokens", 1000)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        errors.append("'max_tokens' must be an integer of at least 1")
    temperature = body.get("temperature", 0)
    if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        errors.append("'temperature' must be a number from 0 to 2")
    fallback_config = body.get("fallback_config")
    if isinstance(fallback_config, dict) and int(fallback_config.get("depth", 0) or 0) > 2:
        return "fallback_config depth cannot be greater than 2", []
    region = body.get("model_region")
    if region is not None and region != "global":
        return "model_region can only be set to global", []
    return ("invalid request body", errors) if errors else (None, [])


def _response_format_problem(response_format: Any, spec: _Model) -> str | None:
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return "type must be json_schema"
    inner = response_format.get("json_schema")
    if not isinstance(inner, dict) or not inner.get("name") or "schema" not in inner:
        return "json_schema needs a name and a schema"
    if not spec.structured:
        return "this model does not support structured outputs"
    return None
