from __future__ import annotations

import asyncio

import pytest

from recorder.limiter import SessionBudget


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_budget_grants_a_minutes_worth_then_waits_for_the_window() -> None:
    clock = FakeClock()
    budget = SessionBudget(5, clock=clock)
    for _ in range(5):
        await asyncio.wait_for(budget.acquire(), 0.1)
    assert budget.available == 0
    assert not budget.can_afford_close()
    assert budget.is_scarce
    clock.now += 30  # a token bucket would have refilled 2.5 by now: the window has not
    assert budget.available == 0
    clock.now += 35  # the first five left the window
    assert budget.available == 5
    assert budget.can_afford_close()
    assert not budget.is_scarce
    await asyncio.wait_for(budget.acquire(), 0.1)
    assert budget.granted == 6


async def test_never_more_than_per_minute_in_any_minute() -> None:
    # 50x faster than real time on its own clock, so the test takes about a second.
    loop = asyncio.get_running_loop()
    origin = loop.time()
    speed = 50.0

    def clock() -> float:
        return (loop.time() - origin) * speed

    budget = SessionBudget(20, clock=clock, speed=speed)
    times = []
    for _ in range(45):
        await budget.acquire()
        times.append(clock())
    for i in range(len(times) - 20):
        assert times[i + 20] - times[i] >= 60  # any 21 grants span more than a minute
    assert times[19] - times[0] < 5  # a minute's worth at once


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
    assert budget.available == 0  # the window is full: wait before trying again
    assert not budget.can_afford_close()
    clock.now += 61.5  # the five opens left the window ...
    assert budget.available == 4  # ... the refused attempt not yet


async def test_refusals_at_the_rate_lower_it_by_a_fifth() -> None:
    clock = FakeClock()
    budget = SessionBudget(5, clock=clock)
    for _ in range(5):
        await asyncio.wait_for(budget.acquire(), 0.1)
        budget.opened()
    budget.refused()  # five opened and the sixth was refused: another key user takes some
    assert budget.per_minute == 4.0
    budget.refused()  # refused again at once (a second stream): the same figure
    assert budget.per_minute == 4.0
    clock.now += 30
    budget.refused()  # refused later still: lower again
    assert budget.per_minute == pytest.approx(3.2)
    assert budget.refusals == 3


async def test_a_refusal_with_no_recent_opens_drops_to_one_a_minute() -> None:
    clock = FakeClock()
    budget = SessionBudget(5, clock=clock)
    budget.refused()
    assert budget.per_minute == 1.0
    clock.now += 30
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


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        SessionBudget(0)
    with pytest.raises(ValueError):
        SessionBudget(5, speed=0)
