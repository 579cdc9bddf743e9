"""The LLM Gateway emulator: chat completions answered by a deterministic extractive model."""

from __future__ import annotations

from recorder.emulator.llm.gateway import (
    FAULTS,
    LlmBehaviour,
    LlmGatewayEmulator,
    LlmRequestRecord,
)

__all__ = ["FAULTS", "LlmBehaviour", "LlmGatewayEmulator", "LlmRequestRecord"]
