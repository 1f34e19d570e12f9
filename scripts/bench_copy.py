"""Benchmark (not a test): ``negotiation copy-database`` of 1,000,000 rounds, SQLite -> PostgreSQL.

Seeds a SQLite file migrated to head with ``--rounds`` rounds (and their calls and sessions, see
``scripts/bench/dataset.py``), creates an empty PostgreSQL database, then runs the installed
command as an operator would, ``--runs`` times (the target recreated empty before each), and
prints per run the wall time, the peak resident memory and the CPU time of the command (from
``wait4``; on a shared machine the CPU time is the steadier figure).
Targets on a 2-core machine: under 60 s, under 200 MB.

    NEGOTIATION_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python scripts/bench_copy.py [--rounds 1000000] [--runs 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(1, str(ROOT))

from bench import dataset  # noqa: E402

from tests.clirun import run_cli  # noqa: E402

TARGET_SECONDS = 60.0
TARGET_MB = 200.0


def copy(source: str, target: str) -> tuple[float, float, float, str]:
    """Run the command; its wall time (s), peak RSS (MB), CPU time (s) and output.

    Measured through ``tests.clirun``, which forks the command from a small interpreter: a
    child forked from this process, which seeding made large, would report this one's memory.
    """
    started = time.perf_counter()
    run = run_cli("copy-database", source, target, "--no-progress", env=dict(os.environ))
    wall = time.perf_counter() - started
    if run.code != 0:
        raise SystemExit(f"copy-database failed:\n{run.stdout}{run.stderr}")
    return wall, run.max_rss_kib / 1024, run.cpu_seconds, run.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("NEGOTIATION_TEST_POSTGRES_URL"),
        help="PostgreSQL server URL (default NEGOTIATION_TEST_POSTGRES_URL)",
    )
    parser.add_argument(
        "--target-db", default="negotiation_bench_copy", help="database to (re)create and fill"
    )
    args = parser.parse_args()
    if not args.postgres:
        raise SystemExit("set NEGOTIATION_TEST_POSTGRES_URL or pass --postgres URL")
    target = make_url(args.postgres).set(database=args.target_db)
    target_url = target.render_as_string(hide_password=False)
    with tempfile.TemporaryDirectory() as tmp:
        source = f"sqlite:///{Path(tmp) / 'loads.db'}"
        started = time.perf_counter()
        dataset.create_database(source)
        dataset.migrate(source)
        data = dataset.seed(source, args.rounds)
        size = (Path(tmp) / "loads.db").stat().st_size / 1e6
        print(
            f"seeded {data.rounds:,} rounds, {data.calls:,} calls, {data.sessions:,} sessions "
            f"({size:.0f} MB) in {time.perf_counter() - started:.1f} s"
        )
        for n in range(1, args.runs + 1):
            dataset.create_database(target_url)
            wall, peak, cpu, out = copy(source, target_url)
            if n == 1:
                print(out, end="")
            verdict = "ok" if wall < TARGET_SECONDS and peak < TARGET_MB else "MISSED"
            print(
                f"run {n}: {wall:.1f} s wall (target {TARGET_SECONDS:.0f} s), "
                f"peak {peak:.0f} MB (target {TARGET_MB:.0f} MB): {verdict}; "
                f"the command's own CPU time {cpu:.1f} s"
            )
        load = os.getloadavg()[0]
        print(f"load average at the end: {load:.1f} on {os.cpu_count()} CPUs")
    dataset.run_on(
        dataset.admin_url(target_url),
        lambda conn: conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{args.target_db}"'),
        autocommit=True,
    )


if __name__ == "__main__":
    main()
