"""Two instances of the service on one PostgreSQL database book a load once.

The row lock that serialises bookings lives in PostgreSQL, not in a process: this test holds
the load's row lock from outside while thirty accepting offers arrive through two app
instances, and proves they overlapped by counting, in ``pg_stat_activity``, more requests
waiting for that lock than one instance has connections.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from negotiation.app import create_app
from negotiation.db import normalize_url
from negotiation.settings import Settings
from tests import dbutil
from tests.conftest import API_KEY, LOAD
from tests.helpers import concurrent_client
from tests.waiting import wait_until

pytestmark = pytest.mark.postgres

POOL = 4  # connections per instance
WAITING = text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


async def test_two_instances_on_one_postgresql_book_a_load_once(postgres_url: str) -> None:
    settings = Settings(
        database_url=postgres_url,
        api_keys=(API_KEY,),
        env="development",
        db_pool_size=POOL,
        # The requests wait as long as the test holds the lock (it lets go once it has seen
        # them waiting), on a loaded machine too: no lock timeout, no pool timeout meanwhile.
        lock_timeout_ms=0,
        db_pool_timeout_ms=600_000,
    )
    engine = create_async_engine(normalize_url(postgres_url, asynchronous=True))
    async with (
        concurrent_client(create_app(settings)) as (a, _),
        concurrent_client(create_app(settings)) as (b, _),
    ):
        assert (await a.post("/api/loads", json={**LOAD, "load_id": "LD-2X"})).status_code == 201
        calls = [(await a.post("/api/calls", json={"load_id": "LD-2X"})).json() for _ in range(30)]
        async with engine.connect() as holder, engine.connect() as observer:
            await holder.execute(text("SELECT 1 FROM loads WHERE load_id = 'LD-2X' FOR UPDATE"))
            tasks = [
                asyncio.create_task(
                    (a if n % 2 else b).post(
                        f"/api/calls/{x['id']}/negotiate", json={"carrier_offer": 1800}
                    )
                )
                for n, x in enumerate(calls)
            ]

            async def waiting() -> int | None:
                count = int((await observer.execute(WAITING)).scalar_one())
                await observer.rollback()
                return count if count > POOL else None

            peak = await wait_until(waiting, f"more than {POOL} requests wait for the load's lock")
            await holder.rollback()  # let them through
            responses: list[Any] = await asyncio.gather(*tasks)
    await engine.dispose()
    # More waiters on the load's lock than one instance has connections: both were waiting.
    assert peak > POOL, peak
    assert sorted(r.status_code for r in responses) == [201] + [409] * 29
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {"LOAD_BOOKED"}
    winner = next(r.json()["call_id"] for r in responses if r.status_code == 201)
    rows = await dbutil.execute(
        postgres_url, "SELECT status, booked_call_id FROM loads WHERE load_id = 'LD-2X'"
    )
    assert [tuple(r) for r in rows] == [("booked", winner)]
    counted = await dbutil.execute(postgres_url, "SELECT count(*) FROM negotiations")
    assert counted[0][0] == 1
