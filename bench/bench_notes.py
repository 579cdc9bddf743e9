"""Notes for 1-hour and 3-hour meetings against the LLM Gateway emulator.

Prints, per meeting: turns, parts the transcript was split into, gateway calls,
input and output tokens, wall time, and the estimated price at the gateway's
published rates for a few models (tokens are counted by the emulator at about four
characters a token, as AssemblyAI's docs estimate; a real model's answer is longer
than the extractive emulator's, so output tokens are a floor).

    python bench/bench_notes.py [--hours 1 3] [--part-tokens 30000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recorder.emulator.llm import LlmBehaviour, LlmGatewayEmulator  # noqa: E402
from recorder.emulator.server import serve_emulators  # noqa: E402
from recorder.llm.client import LlmClient  # noqa: E402
from recorder.llm.pricing import DEFAULT_MODEL, estimate_price_usd  # noqa: E402
from recorder.notes.generate import NotesRequest, generate_notes  # noqa: E402
from recorder.notes.transcript import DEFAULT_PART_TOKENS  # noqa: E402
from tests.support.notes_meetings import long_script, meeting_from_script  # noqa: E402

PRICED = ("claude-haiku-4-5-20251001", "claude-sonnet-4-6", "gpt-5-mini", "gemini-2.5-flash")


async def bench(hours: list[float], part_tokens: int) -> None:
    llm = LlmGatewayEmulator(behaviour=LlmBehaviour(rate_limit=1_000_000))
    async with serve_emulators(llm=llm) as server, LlmClient(server.urls["llm"], "bench") as client:
        print(
            f"{'meeting':>8} {'turns':>6} {'parts':>5} {'calls':>5} {'in tok':>8} "
            f"{'out tok':>8} {'wall s':>7}  items (actions/decisions/questions)"
        )
        rows = []
        for length in hours:
            meeting = meeting_from_script(long_script(length))
            started = len(llm.requests)
            clock = time.perf_counter()
            content, usage = await generate_notes(
                client, meeting.turns, NotesRequest(model=DEFAULT_MODEL, part_tokens=part_tokens)
            )
            wall = time.perf_counter() - clock
            parts = sum(1 for r in llm.requests[started:] if r.schema_name == "meeting_notes")
            rows.append((length, usage))
            print(
                f"{length:>7.0f}h {len(meeting.turns):>6} {parts:>5} {usage.calls:>5} "
                f"{usage.input_tokens:>8} {usage.output_tokens:>8} {wall:>7.2f}  "
                f"{len(content.action_items)}/{len(content.decisions)}/"
                f"{len(content.open_questions)}"
            )
        print("\nestimated price (USD, published list rates + 10% in-region):")
        print(f"{'model':>28} " + " ".join(f"{h:>7.0f}h" for h, _ in rows))
        for model in PRICED:
            prices = [estimate_price_usd(model, u.input_tokens, u.output_tokens) for _, u in rows]
            print(f"{model:>28} " + " ".join(f"{p or 0:>8.4f}" for p in prices))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1.0, 3.0])
    parser.add_argument("--part-tokens", type=int, default=DEFAULT_PART_TOKENS)
    args = parser.parse_args()
    asyncio.run(bench(args.hours, args.part_tokens))


if __name__ == "__main__":
    main()
