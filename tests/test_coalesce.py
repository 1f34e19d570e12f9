"""The Coalescer: items asked for together share one run, at most ``slots`` runs at a time,
each caller gets its own result (or the run's error), and a caller that gives up is dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from negotiation.db.coalesce import Coalescer
from tests.waiting import DEADLINE


class Runs:
    """A ``run`` function that records its batches and answers when a test releases it."""

    def __init__(self, *, hold: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.running = 0
        self.most_running = 0
        self.hold = hold
        self.gates: list[asyncio.Event] = []  # one per batch, set when it may answer
        self.ended = 0
        #: For each batch, how many runs had ended when it started.
        self.ended_before: list[int] = []
        self.fail_with: Exception | None = None
        self.answers: int | None = None  # answer this many results instead of one per item

    async def __call__(self, items: list[int]) -> list[str]:
        gate = asyncio.Event()
        if not self.hold:
            gate.set()
        self.batches.append(items)
        self.gates.append(gate)
        self.ended_before.append(self.ended)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await gate.wait()
            if self.fail_with is not None:
                raise self.fail_with
            count = len(items) if self.answers is None else self.answers
            return [f"r{item}" for item in items][:count]
        finally:
            self.running -= 1
            self.ended += 1

    def release(self, batch: int | None = None) -> None:
        """Let batch number ``batch`` answer; None: every batch, and the later ones at once."""
        if batch is not None:
            self.gates[batch].set()
            return
        self.hold = False
        for gate in self.gates:
            gate.set()


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the event loop run until ``condition`` holds (everything here is in-process: no
    timer and no I/O, so a bounded number of turns of the loop is enough)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


async def settle() -> None:
    """Turn the event loop as often as an item asked for needs to reach ``run`` (the flush, the
    batch's task, the run's first step): a run that could start has started after this."""
    for _ in range(3):
        await asyncio.sleep(0)


def asking(ask: Coalescer[int, str], items: Iterable[int], asked: list[int]) -> list[Any]:
    """A task per item that asks ``ask`` for it; ``asked`` lists each once it has asked."""

    async def one(item: int) -> str:
        asked.append(item)
        return await ask(item)  # in the same turn: the item is queued or in a batch

    return [asyncio.ensure_future(one(item)) for item in items]


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
    await settle()  # a few turns of the loop, no timer
    assert runs.batches == [[7]]
    runs.release()
    assert await waiting == "r7"
    assert await ask(8) == "r8"
    assert runs.batches == [[7], [8]]


async def test_items_that_find_every_slot_taken_wait_and_go_together() -> None:
    runs = Runs(hold=True)
    ask = _coalescer(runs, slots=2)
    asked: list[int] = []
    first = asking(ask, (1, 2), asked)
    await until(lambda: runs.batches == [[1, 2]], "the first two items run together")
    second = asking(ask, (3,), asked)
    await until(lambda: runs.batches == [[1, 2], [3]], "item 3 runs in the second slot")
    later = asking(ask, (4, 5, 6, 7), asked)
    await until(lambda: asked == [1, 2, 3, 4, 5, 6, 7], "items 4-7 have been asked for")
    await settle()
    # Two runs hold the two slots; the rest wait, none is answered yet.
    assert runs.batches == [[1, 2], [3]]
    assert not any(f.done() for f in [*first, *second, *later])
    runs.release(1)  # item 3's run ends: its slot goes to everything that waited, as one batch
    assert await second[0] == "r3"
    await until(lambda: len(runs.batches) == 3, "the waiting items run")
    assert runs.batches[2] == [4, 5, 6, 7]
    assert runs.ended_before == [0, 0, 1]  # they went once a slot was free, not before
    assert not any(f.done() for f in [*first, *later])
    runs.release()
    assert await asyncio.gather(*first, *later) == ["r1", "r2", "r4", "r5", "r6", "r7"]
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
    asked = asyncio.gather(ask(1), ask(2), return_exceptions=True)
    results = await asyncio.wait_for(asked, DEADLINE)  # only so that a hang fails
    assert all(isinstance(r, RuntimeError) for r in results), results


async def test_a_caller_that_gives_up_is_dropped_and_the_others_are_answered() -> None:
    runs = Runs(hold=True)
    ask = _coalescer(runs)
    asked: list[int] = []
    running = asking(ask, (1, 2), asked)
    await until(lambda: runs.batches == [[1, 2]], "items 1 and 2 run")
    waiting = asking(ask, (3, 4, 5), asked)
    await until(lambda: asked == [1, 2, 3, 4, 5], "items 3-5 have been asked for")
    await settle()
    assert runs.batches == [[1, 2]]  # they wait for the slot
    running[0].cancel()  # in the running batch
    waiting[1].cancel()  # still waiting for a slot
    runs.release()
    assert await running[1] == "r2"
    assert list(await asyncio.gather(waiting[0], waiting[2])) == ["r3", "r5"]
    assert runs.batches == [[1, 2], [3, 5]]
    assert runs.ended_before == [0, 1]
    for cancelled in (running[0], waiting[1]):
        with pytest.raises(asyncio.CancelledError):
            await cancelled


async def test_the_owner_can_wait_for_runs_in_flight() -> None:
    runs = Runs(hold=True)
    tasks: set[asyncio.Task[Any]] = set()
    ask = Coalescer(runs, slots=1, max_batch=8, tasks=tasks)
    caller = asyncio.ensure_future(ask(1))
    await until(lambda: runs.batches == [[1]], "item 1 runs")
    caller.cancel()  # the caller went away; its run is still in flight
    assert len(tasks) == 1
    runs.release()
    await asyncio.wait(set(tasks))
    assert not tasks
