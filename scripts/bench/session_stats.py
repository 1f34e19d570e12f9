"""How session stats and the session list scale with the number of rounds.

    .venv/bin/python -m scripts.bench.session_stats [--rounds 100000]

Builds a throwaway database of each kind (SQLite in a temp dir; PostgreSQL when
NEGOTIATION_TEST_POSTGRES_URL is set), with one session holding ``--rounds`` rounds, one with
3, and 2,000 small ones, then times the units behind GET /api/sessions/{id} and GET /api/sessions.
The time for the big session should stay close to the small one's: stats are an aggregate on
an index plus rows fetched by primary key, never a scan of every round.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, text

from negotiation.db import Database
from negotiation.queries import calls, loads, rounds, sessions
from negotiation.session_pages import sessions_page
from negotiation.sessions import session_detail
from negotiation.settings import Settings
from tests import dbutil

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
CALLS = 50


def populate(conn: Connection, big: int) -> None:
    conn.execute(
        insert(loads).values(
            load_id="LD1",
            origin="A",
            destination="B",
            pickup_datetime=NOW,
            delivery_datetime=NOW,
            equipment_type="Van",
            loadboard_rate=Decimal(2000),
        )
    )
    conn.execute(insert(calls), [{"id": i, "load_id": "LD1"} for i in range(1, CALLS + 1)])
    for sid in ["big", "small", *(f"s{i:05d}" for i in range(2000))]:
        conn.execute(
            insert(sessions).values(
                session_id=sid,
                status="active",
                ttl_seconds=3600,
                created_at=NOW,
                last_activity=NOW,
                expires_at=NOW + dt.timedelta(hours=1),
            )
        )

    def row(sid: str, i: int) -> dict[str, Any]:
        return {
            "call_id": i % CALLS + 1,
            "session_id": sid,
            "round_number": i // CALLS + 1,
            "carrier_offer": Decimal(2500),
            "decision": "counter",
            "counter_offer": Decimal(2100),
            "timestamp": NOW,
        }

    for start in range(0, big, 10_000):
        conn.execute(
            insert(rounds), [row("big", i) for i in range(start, min(big, start + 10_000))]
        )
    conn.execute(insert(rounds), [row("small", i) for i in range(3)])


async def timed(db: Database, fn: Any, *args: Any, **kwargs: Any) -> float:
    """Median milliseconds of 30 runs."""
    samples = []
    for _ in range(30):
        started = time.perf_counter()
        await db.read(fn, *args, **kwargs)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def bench(url: str, big: int) -> None:
    db = Database(Settings(database_url=url))
    try:
        await db.write(populate, big)
        detail = await db.read(session_detail, "big", default_ttl=3600, now=NOW)
        assert detail is not None and detail["stats"]["round_count"] == big
        small = await timed(db, session_detail, "small", default_ttl=3600, now=NOW)
        large = await timed(db, session_detail, "big", default_ttl=3600, now=NOW)
        page = await timed(
            db, sessions_page, status=None, client_id=None, after=None, limit=100, now=NOW
        )
        print(
            f"{db.dialect:10} stats(3 rounds) {small:6.2f} ms | stats({big} rounds) "
            f"{large:6.2f} ms | list 100 of 2002 sessions {page:6.2f} ms"
        )
        explain = "EXPLAIN QUERY PLAN " if db.is_sqlite else "EXPLAIN "
        plan = await db.read(
            lambda conn: conn.execute(
                text(
                    f"{explain}SELECT call_id, count(*) FROM negotiations "
                    "WHERE session_id = 'big' GROUP BY call_id"
                )
            ).all()
        )
        print("  aggregate plan:", " / ".join(str(r[-1]).strip() for r in plan))
    finally:
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        dbutil.run_alembic(url)
        asyncio.run(bench(url, args.rounds))
    server = dbutil.postgres_server_url()
    if server:
        name = "negotiation_bench_session_stats"
        url = dbutil.create_postgres_database(server, name)
        try:
            dbutil.run_alembic(url)
            asyncio.run(bench(url, args.rounds))
        finally:
            dbutil.drop_postgres_database(server, name)


if __name__ == "__main__":
    main()
