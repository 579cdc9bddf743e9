from __future__ import annotations

import logging

import pytest
from websockets.asyncio.client import connect

from recorder.emulator.streaming.server import StreamingEmulator
from recorder.wirelog import redact_query_token, wire_logger

SECRET = "sk-wire-secret-0123456789"


def test_filter_rewrites_header_and_query() -> None:
    logger = wire_logger("recorder.test.wire")
    assert wire_logger("recorder.test.wire") is logger
    assert len(logger.filters) == 1  # attached once
    record = logging.LogRecord(
        "x", logging.DEBUG, "f", 1, "> %s: %s", ("Authorization", SECRET), None
    )
    assert logger.filters[0].filter(record)  # type: ignore[union-attr]
    assert SECRET not in record.getMessage()
    assert redact_query_token(f"/v3/ws?a=1&token={SECRET}&b=2") == "/v3/ws?a=1&token=[redacted]&b=2"


async def test_emulator_handshake_log_hides_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with StreamingEmulator(api_keys={SECRET}).serve() as server:
        url = f"{server.url}?speech_model=u3-rt-pro&sample_rate=16000&token={SECRET}"
        client_log = wire_logger("recorder.test.client")
        async with connect(
            url, additional_headers={"Authorization": SECRET}, logger=client_log
        ) as ws:
            await ws.recv()  # Begin
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "Authorization" in text  # the handshake was logged...
    assert SECRET not in text  # ...without the key
