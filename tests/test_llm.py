"""The LLM Gateway client and emulator: real HTTP on loopback, each switchable behaviour."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from recorder.config import load_config
from recorder.emulator.llm import LlmBehaviour, LlmGatewayEmulator
from recorder.emulator.server import EmulatorServer, serve_emulators
from recorder.errors import ConfigError, LlmError, LlmRejected
from recorder.llm.client import LlmClient, RetryPolicy, error_message
from recorder.llm.pricing import DEFAULT_MODEL, estimate_price_usd
from tests.support.timing import TIMEOUT

KEY = "sk-very-secret-key"
MESSAGES = [{"role": "user", "content": "hello"}]


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
async def server() -> AsyncIterator[EmulatorServer]:
    async with serve_emulators(api_keys={KEY}, llm=LlmGatewayEmulator(api_keys={KEY})) as running:
        yield running


def _llm(server: EmulatorServer) -> LlmGatewayEmulator:
    assert server.llm is not None
    return server.llm


async def _raw(server: EmulatorServer, body: Any, *, auth: str | None = KEY) -> httpx.Response:
    headers = {"Authorization": auth} if auth is not None else {}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        return await http.post(
            server.urls["llm"] + "/chat/completions", content=content, headers=headers
        )


# -- the emulator, as any client sees it -----------------------------------------------


async def test_success_has_the_documented_shape_and_rate_headers(server: EmulatorServer) -> None:
    response = await _raw(server, {"model": DEFAULT_MODEL, "messages": MESSAGES})
    assert response.status_code == 200
    body = response.json()
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["finish_reason"] == "end_turn"  # provider-native for Claude
    usage = body["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert "messages" not in body["request"] and body["request"]["model"] == DEFAULT_MODEL
    assert response.headers["X-RateLimit-Limit"] == "30"
    assert response.headers["X-RateLimit-Remaining"] == "29"
    assert response.headers["X-RateLimit-Model"] == DEFAULT_MODEL


async def test_prompt_becomes_a_user_message(server: EmulatorServer) -> None:
    response = await _raw(server, {"model": "gpt-5", "prompt": "Write a haiku"})
    assert response.json()["choices"][0]["message"]["content"].endswith("Write a haiku")
    assert response.json()["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("auth", "status"), [(None, 401), ("wrong", 401), (KEY, 200), (f"Bearer {KEY}", 200)]
)
async def test_auth(server: EmulatorServer, auth: str | None, status: int) -> None:
    response = await _raw(server, {"model": DEFAULT_MODEL, "messages": MESSAGES}, auth=auth)
    assert response.status_code == status
    if status == 401:
        assert response.json()["error"] == "Authentication error, API token missing/invalid"


async def test_account_without_the_gateway_is_403_and_says_so() -> None:
    llm = LlmGatewayEmulator(no_access_keys={"free-key"})
    async with (
        serve_emulators(llm=llm) as server,
        LlmClient(server.urls["llm"], "free-key") as client,
    ):
        with pytest.raises(LlmRejected) as caught:
            await client.complete(MESSAGES, model=DEFAULT_MODEL)
    assert "HTTP 403" in str(caught.value) and "no access" in str(caught.value)
    assert "paid AssemblyAI account" in str(caught.value)


async def test_bearer_can_be_switched_off(server: EmulatorServer) -> None:
    _llm(server).behaviour = LlmBehaviour(accept_bearer=False)
    response = await _raw(
        server, {"model": DEFAULT_MODEL, "messages": MESSAGES}, auth=f"Bearer {KEY}"
    )
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "body is not valid JSON"),
        ({"messages": MESSAGES}, "'model' is required"),
        ({"model": DEFAULT_MODEL}, "one of messages or prompt required"),
        ({"model": DEFAULT_MODEL, "messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
        ({"model": DEFAULT_MODEL, "messages": MESSAGES, "temperature": 3}, "temperature"),
        (
            {"model": DEFAULT_MODEL, "messages": MESSAGES, "model_region": "us"},
            "model_region can only be set to global",
        ),
        (
            {"model": DEFAULT_MODEL, "messages": MESSAGES, "fallback_config": {"depth": 3}},
            "fallback_config depth cannot be greater than 2",
        ),
    ],
)
async def test_bad_bodies_are_400_with_the_field(
    server: EmulatorServer, body: Any, needle: str
) -> None:
    response = await _raw(server, body)
    assert response.status_code == 400
    assert needle in error_message(response.content)


@pytest.mark.parametrize(("status", "shape"), [(400, "flat"), (404, "nested")])
async def test_unknown_model_both_generations(
    server: EmulatorServer, status: int, shape: Any
) -> None:
    _llm(server).behaviour = LlmBehaviour(unknown_model_status=status, error_shape=shape)
    response = await _raw(server, {"model": "gpt-99", "messages": MESSAGES})
    assert response.status_code == status
    body = response.json()
    assert ("error" in body) == (shape == "nested")
    assert error_message(response.content) == "model gpt-99 is not supported"


async def test_eu_refuses_openai_models(server: EmulatorServer) -> None:
    _llm(server).behaviour = LlmBehaviour(region="eu")
    assert (await _raw(server, {"model": "gpt-5", "messages": MESSAGES})).status_code == 400
    assert (await _raw(server, {"model": DEFAULT_MODEL, "messages": MESSAGES})).status_code == 200


async def test_json_schema_answers_validate_and_unsupported_models_refuse(
    server: EmulatorServer,
) -> None:
    schema = {
        "type": "object",
        "properties": {"steps": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
        "required": ["steps"],
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "math", "schema": schema}}
    ok = await _raw(
        server,
        {
            "model": "gemini-2.5-flash-lite",
            "messages": MESSAGES,
            "response_format": response_format,
        },
    )
    assert json.loads(ok.json()["choices"][0]["message"]["content"]) == {"steps": ["emulated"]}
    refused = await _raw(
        server, {"model": "gpt-oss-20b", "messages": MESSAGES, "response_format": response_format}
    )
    assert refused.status_code == 400
    assert error_message(refused.content).startswith("response_format is invalid")


async def test_context_limit_and_max_tokens(server: EmulatorServer) -> None:
    long = [{"role": "user", "content": "word " * 4000}]
    too_long = await _raw(server, {"model": "emulator-tiny", "messages": long})
    assert error_message(too_long.content) == "model context limit exceeded"
    cut = await _raw(
        server,
        {"model": "gpt-5", "messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 2},
    )
    assert cut.json()["choices"][0]["finish_reason"] == "length"
    assert cut.json()["usage"]["output_tokens"] <= 2


async def test_rate_limit_window_and_retry_after_switch(server: EmulatorServer) -> None:
    _llm(server).behaviour = LlmBehaviour(rate_limit=2, retry_after=True)
    body = {"model": DEFAULT_MODEL, "messages": MESSAGES}
    statuses = [(await _raw(server, body)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = await _raw(server, body)
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    # Per model: another model has its own window.
    assert (await _raw(server, {**body, "model": "gpt-5"})).status_code == 200


async def test_models_endpoint_lists_prices(server: EmulatorServer) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        data = (await http.get(server.urls["llm"] + "/models")).json()["data"]
    haiku = next(m for m in data if m["id"] == DEFAULT_MODEL)
    assert haiku["pricing"]["global"] == {"prompt": 1e-6, "completions": 5e-6}


async def test_unknown_path_is_a_bare_404(server: EmulatorServer) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        response = await http.post(server.urls["llm"] + "/lemur/v3/generate/task", content=b"{}")
    assert (response.status_code, response.text) == (404, "Not found")


async def test_websockets_still_share_the_port(server: EmulatorServer) -> None:
    # The same port answers HTTP for the gateway and WebSocket handshakes for streaming.
    await _raw(server, {"model": DEFAULT_MODEL, "messages": MESSAGES})
    url = server.urls["streaming"] + "?sample_rate=16000&speech_model=u3-rt-pro"
    async with connect(url, additional_headers={"Authorization": KEY}, open_timeout=TIMEOUT) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert first["type"] == "Begin"


# -- the client ------------------------------------------------------------------------


@pytest.mark.parametrize("names", ["input", "prompt", "both"])
async def test_client_reads_either_usage_naming(server: EmulatorServer, names: Any) -> None:
    _llm(server).behaviour = LlmBehaviour(usage_names=names)
    async with LlmClient(server.urls["llm"], KEY) as client:
        answer = await client.complete(MESSAGES, model=DEFAULT_MODEL)
    assert answer.usage.input_tokens > 0 and answer.usage.output_tokens > 0
    assert client.usage == answer.usage and client.calls == 1


@pytest.mark.parametrize("finish", ["native", "normalized"])
async def test_client_sees_truncation_either_way(server: EmulatorServer, finish: Any) -> None:
    _llm(server).behaviour = LlmBehaviour(finish_reason=finish)
    async with LlmClient(server.urls["llm"], KEY) as client:
        answer = await client.complete(
            [{"role": "user", "content": "x" * 400}], model=DEFAULT_MODEL, max_tokens=2
        )
    assert answer.is_truncated


async def test_client_retries_5xx_a_bounded_number_of_times(server: EmulatorServer) -> None:
    sleeps = Sleeps()
    _llm(server).inject("500", "503")
    async with LlmClient(server.urls["llm"], KEY, sleep=sleeps) as client:
        await client.complete(MESSAGES, model=DEFAULT_MODEL)
        assert sleeps.waits == [0.5, 1.0]
        _llm(server).behaviour = LlmBehaviour(fault="503")
        with pytest.raises(LlmError) as caught:
            await client.complete(MESSAGES, model=DEFAULT_MODEL)
    assert "failed 4 times" in str(caught.value) and "HTTP 503" in str(caught.value)
    assert len(sleeps.waits) == 2 + 3


async def test_client_waits_retry_after_then_gives_up(server: EmulatorServer) -> None:
    sleeps = Sleeps()
    _llm(server).behaviour = LlmBehaviour(rate_limit=1, retry_after=True)
    policy = RetryPolicy(attempts=3)
    async with LlmClient(server.urls["llm"], KEY, sleep=sleeps, retry=policy) as client:
        await client.complete(MESSAGES, model=DEFAULT_MODEL)
        with pytest.raises(LlmError) as caught:
            await client.complete(MESSAGES, model=DEFAULT_MODEL)
    assert len(sleeps.waits) == 2 and all(0 < w <= 60 for w in sleeps.waits)
    assert "rate limited" in str(caught.value)


async def test_client_does_not_wait_longer_than_it_may(server: EmulatorServer) -> None:
    _llm(server).behaviour = LlmBehaviour(rate_limit=1, retry_after=True)
    async with LlmClient(
        server.urls["llm"], KEY, sleep=Sleeps(), retry=RetryPolicy(max_rate_wait_s=5)
    ) as client:
        await client.complete(MESSAGES, model=DEFAULT_MODEL)
        with pytest.raises(LlmError, match="rate limiting model"):
            await client.complete(MESSAGES, model=DEFAULT_MODEL)


async def test_client_errors_are_one_line_without_the_key(server: EmulatorServer) -> None:
    async with LlmClient(server.urls["llm"], "wrong-" + KEY) as client:
        with pytest.raises(LlmRejected) as caught:
            await client.complete(MESSAGES, model=DEFAULT_MODEL)
        assert KEY not in repr(client)
    message = str(caught.value)
    assert "HTTP 401" in message and "ASSEMBLYAI_API_KEY" in message
    assert KEY not in message and "\n" not in message
    async with LlmClient(server.urls["llm"], KEY) as client:
        with pytest.raises(LlmRejected, match="--model"):
            await client.complete(MESSAGES, model="no-such-model")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error": "Authentication error"}', "Authentication error"),
        (b'{"error": {"code": 400, "message": "bad field"}}', "bad field"),
        (
            b'{"message": "invalid request body", "metadata": {"errors": ["x is required"]}}',
            "invalid request body: x is required",
        ),
        (b'{"detail": [{"msg": "field required"}]}', "invalid request: field required"),
        (b"Not found", "Not found"),
    ],
)
def test_error_message_reads_every_shape(body: bytes, expected: str) -> None:
    assert error_message(body) == expected


def test_price_estimate() -> None:
    # 1M in + 1M out at $1/$5 per million, plus the 10% in-region increase.
    assert estimate_price_usd(DEFAULT_MODEL, 1_000_000, 1_000_000) == pytest.approx(6.6)
    assert estimate_price_usd("unknown-model", 10, 10) is None


# -- configuration ---------------------------------------------------------------------


def test_one_emulator_switch_points_every_endpoint() -> None:
    config = load_config({"RECORDER_EMULATOR": "http://127.0.0.1:8765"})
    assert config.streaming_url == "ws://127.0.0.1:8765/v3/ws"
    assert config.agent_url == "ws://127.0.0.1:8765/v1/ws"
    assert config.llm_base_url == "http://127.0.0.1:8765/v1"
    own = load_config(
        {"RECORDER_EMULATOR": "http://127.0.0.1:8765"}, llm_url="http://10.0.0.1:9/v1"
    )
    assert own.llm_base_url == "http://10.0.0.1:9/v1"
    assert own.streaming_url == "ws://127.0.0.1:8765/v3/ws"
    assert load_config({}).llm_base_url == "https://llm-gateway.assemblyai.com/v1"
    eu = load_config({"RECORDER_STT_REGION": "eu"})
    assert eu.llm_base_url == "https://llm-gateway.eu.assemblyai.com/v1"


@pytest.mark.parametrize(
    ("environ", "needle"),
    [
        ({"RECORDER_EMULATOR": "127.0.0.1:8765"}, "RECORDER_EMULATOR"),
        ({"RECORDER_LLM_URL": "ftp://x"}, "RECORDER_LLM_URL"),
    ],
)
def test_bad_urls_name_the_variable(environ: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config(environ)
