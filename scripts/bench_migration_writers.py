"""Benchmark (not a test): how long writers wait while the session-id revision runs (PostgreSQL).

Creates a throwaway database at the legacy schema holding ``--rows`` negotiation rounds, starts
``--writers`` connections inserting rounds in a loop (one transaction each), runs ``alembic
upgrade`` to revision ``8b2d4f6a9c02`` (ADD COLUMN, then two CREATE INDEX CONCURRENTLY), and
prints the migration's wall time, how many inserts started while it ran and their latency
(median, p99, max). The test (tests/test_migrations.py) proves the inserts go on inside each
index build; this prints how fast they go. Target: no insert waits 1 s or more.

    NEGOTIATION_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python scripts/bench_migration_writers.py [--rows 300000] [--writers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from negotiation.db import normalize_url  # noqa: E402
from tests import dbutil  # noqa: E402
from tests.test_migrations import INSERT, SECOND, alembic, legacy_postgres  # noqa: E402

TARGET_SECONDS = 1.0


async def measure(url: str, rows: int, writers: int) -> None:
    await legacy_postgres(url, rows)
    engine = create_async_engine(normalize_url(url, asynchronous=True), pool_size=writers)
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    stop = asyncio.Event()
    inserts: list[tuple[float, float]] = []  # (started, latency)

    async def write(call: int) -> None:
        async with autocommit.connect() as conn:
            while not stop.is_set():
                started = time.perf_counter()
                await conn.execute(INSERT, {"call": call})
                inserts.append((started, time.perf_counter() - started))

    tasks = [asyncio.create_task(write(n)) for n in range(1, writers + 1)]
    began = time.perf_counter()
    await alembic(url, "upgrade", SECOND)
    ended = time.perf_counter()
    stop.set()
    await asyncio.gather(*tasks)
    await engine.dispose()
    during = sorted(latency for started, latency in inserts if began <= started <= ended)
    if not during:
        raise SystemExit("no insert started while the migration ran: use more --rows")
    p99 = during[min(len(during) - 1, int(len(during) * 0.99))]
    print(f"rows {rows:,}, writers {writers}: migration {ended - began:.2f} s")
    print(
        f"inserts during it {len(during):,}: median {statistics.median(during) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {during[-1] * 1000:.1f} ms "
        f"(target: max < {TARGET_SECONDS * 1000:.0f} ms"
        f"{', met' if during[-1] < TARGET_SECONDS else ', MISSED'})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(dbutil.POSTGRES_URL_ENV),
        help=f"PostgreSQL server URL (default {dbutil.POSTGRES_URL_ENV})",
    )
    parser.add_argument("--database", default="bench_migration_writers")
    args = parser.parse_args()
    if not args.postgres:
        raise SystemExit(f"set {dbutil.POSTGRES_URL_ENV} or pass --postgres")
    url = dbutil.create_postgres_database(args.postgres, args.database)
    try:
        asyncio.run(measure(url, args.rows, args.writers))
    finally:
        dbutil.drop_postgres_database(args.postgres, args.database)


if __name__ == "__main__":
    main()
