#!/usr/bin/env python
"""Benchmark the reports on a large database: summary (SQL aggregates), a session's history and
the streaming export, on SQLite and (with --postgres-url) PostgreSQL.

    .venv/bin/python scripts/bench_reports.py --rows 1000000 \
        --postgres-url postgresql://postgres@127.0.0.1:5432/test

Rows are generated inside the database (a recursive CTE on SQLite, generate_series on
PostgreSQL): 3 rounds per negotiation (counter, counter, accept or reject), one negotiation per
session, plus 5 % legacy rows without a decision. Results go to stdout and bench-results/.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from negotiation.db import Database, is_sqlite, normalize_url  # noqa: E402
from negotiation.queries import calls, loads  # noqa: E402
from negotiation.reports.history import session_report  # noqa: E402
from negotiation.reports.schemas import SummaryFilters  # noqa: E402
from negotiation.reports.summary import summary_report  # noqa: E402
from negotiation.settings import Settings  # noqa: E402
from tests import dbutil  # noqa: E402

LOADS, CALLS = 200, 50_000
ROUND_COLUMNS = (
    "call_id, session_id, round_number, carrier_offer, decision, counter_offer, "
    "system_response, timestamp"
)
# x counts rounds from 0; negotiation g = x / 3; round r = x % 3 + 1. Every 20th negotiation is
# legacy: no session, no decision, and a third of those rounds have no offer.
SELECT_ROUNDS = """
SELECT 1 + (x / 3) % {calls},
       CASE WHEN (x / 3) % 20 = 0 THEN NULL ELSE 'sess_b_' || (x / 3) END,
       x % 3 + 1,
       CASE WHEN (x / 3) % 20 = 0 AND x % 3 = 0 THEN NULL ELSE 2000 + (x % 997) END,
       CASE WHEN (x / 3) % 20 = 0 THEN NULL
            WHEN x % 3 < 2 THEN 'counter'
            WHEN (x / 3) % 3 = 0 THEN 'reject' ELSE 'accept' END,
       CASE WHEN (x / 3) % 20 <> 0 AND x % 3 < 2 THEN 1900 + (x % 3) * 50 ELSE NULL END,
       'We can do it.',
       {timestamp}
"""
SQLITE_FILL = (
    "WITH RECURSIVE g(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM g WHERE x < :n - 1) "
    f"INSERT INTO negotiations ({ROUND_COLUMNS}) "
    + SELECT_ROUNDS.format(calls=CALLS, timestamp="datetime('2026-01-01', '+' || x || ' seconds')")
    + " FROM g"
)
POSTGRES_FILL = (
    f"INSERT INTO negotiations ({ROUND_COLUMNS}) "
    + SELECT_ROUNDS.format(
        calls=CALLS, timestamp="timestamp '2026-01-01' + x * interval '1 second'"
    )
    + " FROM generate_series(0, :n - 1) AS x"
)


async def fill(url: str, rows: int) -> float:
    engine = create_async_engine(normalize_url(url, asynchronous=True))
    started = time.perf_counter()
    async with engine.begin() as conn:
        await conn.execute(
            insert(loads),
            [
                {
                    "load_id": f"LD{i}",
                    "origin": "A",
                    "destination": "B",
                    "pickup_datetime": dt.datetime(2026, 1, 1),
                    "delivery_datetime": dt.datetime(2026, 1, 1),
                    "equipment_type": "Van",
                    "loadboard_rate": Decimal(1800 + i),
                    "max_rate": Decimal(2100 + i) if i % 2 else None,
                }
                for i in range(LOADS)
            ],
        )
        await conn.execute(
            insert(calls),
            [
                {
                    "id": i,
                    "load_id": f"LD{i % LOADS}",
                    "carrier_mc_number": f"MC{i % 1000}",
                    "outcome": "negotiating",
                    "initial_rate_offered": Decimal(1800),
                }
                for i in range(1, CALLS + 1)
            ],
        )
        await conn.execute(text(SQLITE_FILL if is_sqlite(url) else POSTGRES_FILL), {"n": rows})
        if not is_sqlite(url):
            await conn.execute(text("ANALYZE"))
    await engine.dispose()
    return time.perf_counter() - started


async def timed(db: Database, fn: Any, *args: Any, runs: int = 3, **kwargs: Any) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await db.read(fn, *args, **kwargs)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def export(url: str) -> tuple[float, int]:
    """Seconds and peak RSS (KiB) of ``negotiation export rounds`` to a file."""
    env = {**os.environ, "NEGOTIATION_DATABASE_URL": url}
    cli = str(Path(sys.executable).with_name("negotiation"))
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os.execve(cli, [cli, "export", "rounds", "-o", f"{tmp}/all.csv"], env)
        _, status, usage = os.wait4(pid, 0)
        elapsed = time.perf_counter() - started
        assert os.waitstatus_to_exitcode(status) == 0
    return elapsed, usage.ru_maxrss


async def bench(url: str, rows: int) -> dict[str, Any]:
    result: dict[str, Any] = {"database": "sqlite" if is_sqlite(url) else "postgresql"}
    result["fill_s"] = round(await fill(url, rows), 1)
    db = Database(Settings(database_url=url))
    markup, now = Decimal("0.10"), dt.datetime.now(dt.UTC)
    try:
        for name, filters in (
            ("summary_all_s", SummaryFilters()),
            ("summary_last_day_s", SummaryFilters(since=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
                                                  + dt.timedelta(seconds=rows - 86_400))),
            ("summary_one_load_s", SummaryFilters(load_id="LD7")),
            ("summary_one_carrier_s", SummaryFilters(carrier_mc_number="MC42")),
        ):  # fmt: skip
            result[name] = round(
                await timed(db, summary_report, filters, max_markup=markup, now=now), 3
            )
        result["session_report_s"] = round(
            await timed(db, session_report, "sess_b_12345", max_markup=markup, now=now), 4
        )
    finally:
        await db.dispose()
    seconds, rss = export(url)
    result["export_s"], result["export_peak_rss_mib"] = round(seconds, 1), round(rss / 1024, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres-url", help="server URL; a scratch database is created on it")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        dbutil.run_alembic(url)
        results.append(asyncio.run(bench(url, args.rows)))
    if args.postgres_url:
        name = "negotiation_bench_reports"
        url = dbutil.create_postgres_database(args.postgres_url, name)
        try:
            dbutil.run_alembic(url)
            results.append(asyncio.run(bench(url, args.rows)))
        finally:
            dbutil.drop_postgres_database(args.postgres_url, name)
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    (out / f"reports-{stamp}.json").write_text(json.dumps({"rows": args.rows, "results": results}))
    for r in results:
        print(json.dumps({"rows": args.rows, **r}))


if __name__ == "__main__":
    main()
