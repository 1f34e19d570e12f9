"""The Coalescer: items asked for together share one run, at most ``slots`` runs at a time,
each caller gets its own result (or the run's error), and a caller that gives up is dropped."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from negotiation.db.coalesce import Coalescer


class Runs:
    """A ``run`` function that records its batches and answers when a test releases it."""

    def __init__(self, *, hold: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.running = 0
        self.most_running = 0
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self.fail_with: Exception | None = None
        self.answers: int | None = None  # answer this many results instead of one per item

    async def __call__(self, items: list[int]) -> list[str]:
        self.batches.append(items)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.release.wait()
            if self.fail_with is not None:
                raise self.fail_with
            count = len(items) if self.answers is None else self.answers
            return [f"r{item}" for item in items][:count]
        finally:
            self.running -= 1


def _coalescer(runs: Runs, *, slots: int = 1, max_batch: int = 64) -> Coalescer[int, str]:
    tasks: set[asyncio.Task[Any]] = set()
    return Coalescer(runs, slots=slots, max_batch=max_batch, tasks=tasks)


async def test_items_asked_for_together_share_one_run_and_keep_their_own_results() -> None:
    runs = Runs()
    ask = _coalescer(runs)
    assert await asyncio.gather(*(ask(i) for i in range(5))) == ["r0", "r1", "r2", "r3", "r4"]
    assert runs.batches == [[0, 1, 2, 3, 4]]


async def test_a_lone_item_goes_out_at_once() -> None:
    runs = Runs(hold=True)
    ask = _coalescer(runs)
    waiting = asyncio.ensure_future(ask(7))
    for _ in range(3):  # the caller's step, the flush, the run's first step: no timer
        await asyncio.sleep(0)
    assert runs.batches == [[7]]
    runs.release.set()
    assert await waiting == "r7"
    assert await ask(8) == "r8"
    assert runs.batches == [[7], [8]]


async def test_items_that_find_every_slot_taken_wait_and_go_together() -> None:
    runs = Runs(hold=True)
    ask = _coalescer(runs, slots=2)
    first = [asyncio.ensure_future(ask(i)) for i in (1, 2)]
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(ask(3))
    await asyncio.sleep(0.01)
    third = asyncio.ensure_future(ask(4))
    await asyncio.sleep(0.01)
    later = [asyncio.ensure_future(ask(i)) for i in (5, 6, 7)]
    await asyncio.sleep(0.01)
    # Two runs hold the two slots; the rest wait, none is answered yet.
    assert runs.batches == [[1, 2], [3]]
    assert not any(f.done() for f in [*first, second, third, *later])
    runs.release.set()
    assert await asyncio.gather(*first, second, third, *later) == [
        "r1",
        "r2",
        "r3",
        "r4",
        "r5",
        "r6",
        "r7",
    ]
    assert runs.batches[2:] == [[4, 5, 6, 7]]
    assert runs.most_running == 2


async def test_a_batch_holds_at_most_max_batch_items() -> None:
    runs = Runs()
    ask = _coalescer(runs, slots=1, max_batch=3)
    assert await asyncio.gather(*(ask(i) for i in range(7))) == [f"r{i}" for i in range(7)]
    assert runs.batches == [[0, 1, 2], [3, 4, 5], [6]]


async def test_a_failed_run_fails_each_of_its_callers_and_the_next_run_goes_ahead() -> None:
    runs = Runs()
    runs.fail_with = RuntimeError("database gone")
    ask = _coalescer(runs)
    results = await asyncio.gather(ask(1), ask(2), return_exceptions=True)
    assert [str(r) for r in results] == ["database gone", "database gone"]
    runs.fail_with = None
    assert await ask(3) == "r3"


async def test_a_run_answering_the_wrong_number_of_results_fails_its_callers() -> None:
    runs = Runs()
    runs.answers = 1
    ask = _coalescer(runs)
    results = await asyncio.wait_for(asyncio.gather(ask(1), ask(2), return_exceptions=True), 1)
    assert all(isinstance(r, RuntimeError) for r in results), results


async def test_a_caller_that_gives_up_is_dropped_and_the_others_are_answered() -> None:
    runs = Runs(hold=True)
    ask = _coalescer(runs)
    running = [asyncio.ensure_future(ask(i)) for i in (1, 2)]
    await asyncio.sleep(0.01)
    waiting = [asyncio.ensure_future(ask(i)) for i in (3, 4, 5)]
    await asyncio.sleep(0.01)
    running[0].cancel()  # in the running batch
    waiting[1].cancel()  # still waiting for a slot
    await asyncio.sleep(0.01)
    runs.release.set()
    assert await running[1] == "r2"
    assert list(await asyncio.gather(waiting[0], waiting[2])) == ["r3", "r5"]
    assert runs.batches == [[1, 2], [3, 5]]
    for cancelled in (running[0], waiting[1]):
        with pytest.raises(asyncio.CancelledError):
            await cancelled


async def test_the_owner_can_wait_for_runs_in_flight() -> None:
    runs = Runs(hold=True)
    tasks: set[asyncio.Task[Any]] = set()
    ask = Coalescer(runs, slots=1, max_batch=8, tasks=tasks)
    caller = asyncio.ensure_future(ask(1))
    await asyncio.sleep(0.01)
    caller.cancel()  # the caller went away; its run is still in flight
    assert len(tasks) == 1
    runs.release.set()
    await asyncio.wait(set(tasks))
    assert not tasks
