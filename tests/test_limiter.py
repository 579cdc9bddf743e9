from __future__ import annotations

import asyncio

import pytest

from recorder.limiter import SessionBudget


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_budget_grants_capacity_then_refills() -> None:
    clock = FakeClock()
    budget = SessionBudget(5, clock=clock)
    for _ in range(5):
        await asyncio.wait_for(budget.acquire(), 0.1)
    assert budget.available < 1
    assert not budget.can_afford_close()
    clock.now += 12  # one token per 12 s at 5/min
    assert budget.available == pytest.approx(1.0)
    await asyncio.wait_for(budget.acquire(), 0.1)
    clock.now += 60
    assert budget.available == pytest.approx(5.0)  # capped at a minute's worth
    assert budget.can_afford_close()
    assert budget.granted == 6


async def test_never_more_than_per_minute_in_any_window() -> None:
    budget = SessionBudget(6000)  # 100/s with the real clock, to keep the test short
    loop = asyncio.get_running_loop()
    start = loop.time()
    times = []
    for _ in range(6050):
        await budget.acquire()
        times.append(loop.time() - start)
    # 6000 at once, then 100 a second: the 6050th cannot come before ~0.5 s.
    assert times[5999] < 0.4
    assert times[-1] >= 0.45


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        SessionBudget(0)
