"""Concurrent reads of one kind answered by one statement (PostgreSQL's round listings).

On PostgreSQL the cost of a round listing is mostly its round trip, not its rows: the
client's share alone (a send, a wake-up of the event loop, a receive, the driver's protocol
work) was about 100 µs of CPU for ``SELECT 1`` on this service's machines, more than the
six rounds of a session cost to decode, and the PostgreSQL backend pays its own share again.
Under load a worker has many listings waiting at once. A :class:`Coalescer` collects the ones
asked for while the event loop runs its current batch of callbacks and runs them as one unit
of work (one statement over all of them), at most ``slots`` such units at a time; listings
that arrive while every slot is taken wait for the next free one and go together.

A lone request goes out at once (the next turn of the loop), so an idle service answers as
fast as before. Each listing still sees every write acknowledged before it was asked for: the
shared statement starts after all of them were asked for, and under READ COMMITTED it reads
everything committed by then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

I = TypeVar("I")  # noqa: E741
R = TypeVar("R")


class Coalescer(Generic[I, R]):
    """Runs ``run(items)`` for the items asked for together; ``run`` answers one result each.

    An exception raised by ``run`` is raised to every caller of that batch. A caller that is
    cancelled while waiting leaves the batch it joined; one still waiting for a slot is
    dropped from the next.
    """

    def __init__(
        self,
        run: Callable[[list[I]], Awaitable[list[R]]],
        *,
        slots: int,
        max_batch: int,
        tasks: set[asyncio.Task[Any]],
    ) -> None:
        self._run = run
        self._free = slots
        self._max_batch = max_batch
        #: Batches in flight, in the owner's set, so it can wait for them before closing.
        self._tasks = tasks
        self._waiting: list[tuple[I, asyncio.Future[R]]] = []
        self._flush_scheduled = False

    async def __call__(self, item: I) -> R:
        """``item``'s result, from a batch shared with the items asked for at the same time."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        self._schedule()
        return await future

    def _schedule(self) -> None:
        # call_soon: the flush runs after the callbacks already due in this turn of the loop,
        # i.e. after the other requests that became ready with this one have asked too.
        if self._waiting and self._free and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        taken = self._waiting[: self._max_batch]
        del self._waiting[: self._max_batch]
        batch = [(item, future) for item, future in taken if not future.done()]
        if batch:
            self._free -= 1
            task = asyncio.ensure_future(self._answer(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._schedule()

    async def _answer(self, batch: list[tuple[I, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for {len(batch)} items")
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._free += 1
            self._schedule()
