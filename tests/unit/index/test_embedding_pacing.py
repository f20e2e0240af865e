"""The embedders' pacer: AIMD concurrency, holds for Retry-After, and the token budget's schedule."""

from __future__ import annotations

import asyncio
import time

from services.index.embeddings.pacing import Pacer
from tests.polling import poll


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_429_halves_the_limit_once_per_congestion_event() -> None:
    clock = Clock()
    pacer = Pacer(max_concurrency=16, clock=clock)
    sent_together = clock.now
    clock.now += 1
    pacer.backoff(sent_together)
    pacer.backoff(sent_together)  # another request of the same round: no second cut
    assert pacer.concurrency == 8
    clock.now += 1
    pacer.backoff(clock.now)  # a request sent after the cut: a new event
    assert pacer.concurrency == 4
    for _ in range(5):
        clock.now += 1
        pacer.backoff(clock.now)
    assert pacer.concurrency == 1


def test_successes_add_about_one_slot_per_round_up_to_the_ceiling() -> None:
    pacer = Pacer(max_concurrency=6)
    pacer.limit = 2.0
    for _ in range(3):
        pacer.succeeded()
    assert pacer.concurrency == 3
    for _ in range(100):
        pacer.succeeded()
    assert pacer.concurrency == 6


async def test_no_more_requests_than_the_limit_are_in_flight() -> None:
    pacer = Pacer(max_concurrency=2)
    release = asyncio.Event()
    entered: list[int] = []

    async def request(n: int) -> None:
        async with pacer.slot(1):
            entered.append(n)
            await release.wait()

    tasks = [asyncio.create_task(request(n)) for n in range(3)]
    await poll(lambda: len(entered) == 2)
    assert len(entered) == 2  # the third waits for a slot
    release.set()
    await asyncio.gather(*tasks)
    assert sorted(entered) == [0, 1, 2]


async def test_a_hold_delays_every_request_until_it_ends() -> None:
    pacer = Pacer(max_concurrency=4)
    pacer.hold(0.2)
    started = time.monotonic()
    async with pacer.slot(1) as sent_at:
        pass
    assert sent_at - started >= 0.2


async def test_the_budget_spaces_requests_by_their_tokens_without_a_burst() -> None:
    pacer = Pacer(max_concurrency=8, tokens_per_minute=6_000)  # 100 tokens a second
    sent: list[float] = []

    async def request() -> None:
        async with pacer.slot(10) as sent_at:
            sent.append(sent_at)

    await asyncio.gather(*(request() for _ in range(4)))
    sent.sort()
    # The nth request is due n * 10 / 100 s after the first (each may wake a little late).
    assert all(at - sent[0] >= n * 0.1 - 1e-3 for n, at in enumerate(sent))
