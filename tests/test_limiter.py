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


async def test_a_refusal_lowers_the_rate_to_what_the_last_minute_allowed() -> None:
    clock = FakeClock()
    budget = SessionBudget(100, clock=clock)
    for _ in range(5):  # the account really allows 5 a minute
        await asyncio.wait_for(budget.acquire(), 0.1)
        budget.opened()
        clock.now += 1
    await asyncio.wait_for(budget.acquire(), 0.1)
    budget.refused()
    assert budget.per_minute == 5.0
    assert budget.refusals == 1
    assert budget.available == 0.0  # wait a refill before trying again
    assert not budget.can_afford_close()
    clock.now += 12
    assert budget.available == pytest.approx(1.0)


async def test_a_refusal_with_no_recent_opens_drops_to_one_a_minute() -> None:
    clock = FakeClock()
    budget = SessionBudget(5, clock=clock)
    budget.refused()
    assert budget.per_minute == 1.0
    budget.refused()
    assert budget.per_minute == 1.0  # never below one a minute


async def test_the_rate_rises_ten_percent_a_minute_while_opens_are_clean() -> None:
    clock = FakeClock()
    budget = SessionBudget(10, clock=clock)
    budget.refused()  # nothing opened in the last minute: the floor
    assert budget.per_minute == 1.0
    budget.opened()
    assert budget.per_minute == 1.0  # not within the minute of the refusal
    rates = []
    for _ in range(40):
        clock.now += 60
        budget.opened()
        rates.append(budget.per_minute)
    assert rates[0] == pytest.approx(1.1)
    assert rates[1] == pytest.approx(1.21)
    assert rates == sorted(rates)
    assert rates[-1] == 10.0  # never above the configured rate


async def test_a_fast_replay_waits_on_the_meeting_clock() -> None:
    # At 50x, one token at 60/min is one meeting second: 20 ms of wall time.
    loop = asyncio.get_running_loop()
    start = loop.time()
    budget = SessionBudget(60, clock=lambda: (loop.time() - start) * 50, speed=50)
    for _ in range(60):
        await budget.acquire()
    await asyncio.wait_for(budget.acquire(), 1.0)  # 1 meeting second: far under 1 s of wall time
