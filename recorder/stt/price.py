"""What streaming costs: the list price per hour of each speech model, and an estimate.

Streaming is billed per hour of socket-open time (docs/providers.md, "Streaming: limits
and billing"). The list prices below are AssemblyAI's published pay-as-you-go streaming
rates as seen on https://www.assemblyai.com/pricing in May 2026 (Universal-3 Pro
streaming $0.45/h) and in the Universal-Streaming launch post
(https://www.assemblyai.com/blog/introducing-universal-streaming, June 2025, $0.15/h).
Prices change: ``--price-per-hour`` or ``RECORDER_PRICE_PER_HOUR`` override them.
"""

from __future__ import annotations

__all__ = ["LIST_PRICE_PER_HOUR", "estimate_cost", "list_price_per_hour"]

#: USD per hour of socket-open time, by ``speech_model`` (list prices, May 2026).
LIST_PRICE_PER_HOUR: dict[str, float] = {
    "u3-rt-pro": 0.45,
    "u3-pro": 0.45,
    "universal-3-5-pro": 0.45,
    "universal-3-6-pro": 0.45,
    "universal-streaming-english": 0.15,
    "universal-streaming-multilingual": 0.15,
}
_PRO_PRICE = 0.45


def list_price_per_hour(speech_model: str) -> float:
    """The list price of ``speech_model``; an unknown model is priced as Universal-3 Pro."""
    return LIST_PRICE_PER_HOUR.get(speech_model, _PRO_PRICE)


def estimate_cost(billed_ms: float, price_per_hour: float) -> float:
    """USD for ``billed_ms`` of socket-open time at ``price_per_hour``."""
    return billed_ms / 3_600_000 * price_per_hour
