"""LLM Gateway client: chat completions with JSON-schema answers, usage and retries."""

from __future__ import annotations

from recorder.llm.client import Completion, LlmClient, RetryPolicy, Usage
from recorder.llm.pricing import DEFAULT_MODEL, estimate_price_usd

__all__ = [
    "DEFAULT_MODEL",
    "Completion",
    "LlmClient",
    "RetryPolicy",
    "Usage",
    "estimate_price_usd",
]
