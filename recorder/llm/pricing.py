"""Default model and estimated prices for the LLM Gateway.

AssemblyAI bills the gateway by input and output tokens at the provider's list price,
plus 10% for in-region (US/EU) routing since July 2026; the exact per-model rates are on
the dashboard (docs/providers.md, "LLM Gateway: pricing"). The table below holds the
providers' published list prices, so every figure it gives is an estimate.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MODEL", "PRICES_PER_MTOK", "REGIONAL_INCREASE", "estimate_price_usd"]

# The model AssemblyAI's own CLI defaults to and its SDK's live tests use
# (docs/providers.md, "LLM Gateway: models"): fast, cheap, structured outputs supported.
DEFAULT_MODEL = "claude-haiku-4-5-20251001"

# USD per million tokens (input, output), providers' published list prices.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "claude-haiku-4-5-20251001": (1.00, 5.00),
    "claude-sonnet-4-5-20250929": (3.00, 15.00),
    "claude-sonnet-4-6": (3.00, 15.00),
    "claude-opus-4-5-20251101": (5.00, 25.00),
    "claude-opus-4-6": (5.00, 25.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-5": (1.25, 10.00),
    "gpt-5.1": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gemini-2.5-pro": (1.25, 10.00),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-flash-lite": (0.10, 0.40),
}
# In-region (US/EU) requests cost this much more than the provider's list price.
REGIONAL_INCREASE = 0.10


def estimate_price_usd(model: str, input_tokens: int, output_tokens: int) -> float | None:
    """The estimated price of this usage, or None when the model's rates are not known."""
    rates = PRICES_PER_MTOK.get(model)
    if rates is None:
        return None
    input_rate, output_rate = rates
    price = (input_tokens * input_rate + output_tokens * output_rate) / 1_000_000
    return round(price * (1 + REGIONAL_INCREASE), 6)
