"""Waiting for something to happen in a test: poll a real condition, never sleep for an order.

A test that needs another task, thread or process to reach a point first waits for evidence
that it did (a row, a lock wait in ``pg_stat_activity``, a file, a flag) with these helpers.
The deadline only turns a hang into a failure that says what never happened: nothing here
passes or fails because something was fast or slow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

#: How long a condition may take before the test fails; generous, so a loaded machine passes.
DEADLINE = 60.0
INTERVAL = 0.02


async def wait_until(
    condition: Callable[[], Awaitable[T | None]], what: str, *, within: float = DEADLINE
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that.

    Raise ``TimeoutError`` naming ``what`` (the awaited event, e.g. "a request waits for the
    lock") when ``within`` seconds pass first.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        found = await condition()
        if found:
            return found
        if loop.time() > deadline:
            raise TimeoutError(f"gave up after {within:.0f} s waiting until {what}")
        await asyncio.sleep(INTERVAL)


def wait_until_sync(condition: Callable[[], T | None], what: str, *, within: float = DEADLINE) -> T:
    """:func:`wait_until` for synchronous tests and conditions."""
    deadline = time.monotonic() + within
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {within:.0f} s waiting until {what}")
        time.sleep(INTERVAL)
