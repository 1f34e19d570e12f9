"""``negotiation export rounds`` streams: 200,000 rounds cost about as much memory as none."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from negotiation.db import is_sqlite, normalize_url
from tests.clirun import cli_env, run_cli

pytestmark = pytest.mark.slow

ROWS = 200_000
#: Holding 200,000 rows in memory costs ~180 MB more than an empty export; streaming ~5 MB.
MAX_GROWTH_KIB = 40 * 1024

FILL_SQLITE = """
WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < :rows)
INSERT INTO negotiations (call_id, session_id, round_number, carrier_offer, decision,
                          counter_offer, system_response, notes, timestamp)
SELECT 1, 'sess_bulk_' || x, 1 + x % 3, 2000 + (x % 500) + 0.25, NULL, NULL,
       'free text response number ' || x, NULL, datetime('2026-01-01', '+' || x || ' seconds')
FROM g
"""
FILL_POSTGRES = """
INSERT INTO negotiations (call_id, session_id, round_number, carrier_offer, decision,
                          counter_offer, system_response, notes, timestamp)
SELECT 1, 'sess_bulk_' || x, 1 + x % 3, 2000 + (x % 500) + 0.25, NULL, NULL,
       'free text response number ' || x, NULL, timestamp '2026-01-01' + x * interval '1 second'
FROM generate_series(1, :rows) AS x
"""


async def _fill(url: str) -> None:
    engine = create_async_engine(normalize_url(url, asynchronous=True))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO loads (load_id, origin, destination, pickup_datetime, "
                    "delivery_datetime, equipment_type, loadboard_rate) VALUES "
                    "('LD1', 'A', 'B', '2026-01-01', '2026-01-02', 'Van', 2000)"
                )
            )
            await conn.execute(text("INSERT INTO calls (id, load_id) VALUES (1, 'LD1')"))
            fill = FILL_SQLITE if is_sqlite(url) else FILL_POSTGRES
            await conn.execute(text(fill), {"rows": ROWS})
    finally:
        await engine.dispose()


def test_export_of_200k_rounds_runs_in_constant_memory(database_url: str, tmp_path: Path) -> None:
    asyncio.run(_fill(database_url))
    env = cli_env(database_url)

    empty = run_cli(
        "export", "rounds", "--since", "2100-01-01", "-o", str(tmp_path / "0.csv"), env=env
    )
    assert empty.code == 0, empty.stderr
    assert (tmp_path / "0.csv").read_text().count("\n") == 1  # the header only

    target = tmp_path / "all.csv"
    full = run_cli("export", "rounds", "-o", str(target), env=env)
    assert full.code == 0, full.stderr
    with target.open() as f:
        header = f.readline()
        count, last = 0, ""
        for line in f:
            count, last = count + 1, line
    assert header.startswith("id,call_id,session_id,round_number,carrier_offer")
    assert count == ROWS
    assert last.startswith(f"{ROWS},1,sess_bulk_{ROWS},3,2000.25,")
    growth = full.max_rss_kib - empty.max_rss_kib
    print(
        f"peak RSS: empty export {empty.max_rss_kib} KiB, {ROWS} rows {full.max_rss_kib} KiB "
        f"(+{growth} KiB)"
    )
    assert growth < MAX_GROWTH_KIB, f"export grew by {growth} KiB: rows are being held in memory"
