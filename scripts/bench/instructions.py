"""Two checkouts compared by instructions per request, which a noisy machine does not change.

    .venv/bin/python scripts/bench/instructions.py --before ../start --after . \\
        --postgres-url postgresql://postgres@127.0.0.1:5432/test

Requests per second and even CPU time per request swing by 15-50 % between runs on a shared
2-core guest, more than the differences an A/B looks for. Instructions executed do not: each
side's ``scripts/bench/inprocess.py`` (its own code and ``.venv``) runs under valgrind's
callgrind, once with ``--small`` and once with ``--large`` requests per run, and the
difference of the two totals over the difference of requests is the instructions one request
costs the application (Litestar, the service, SQLAlchemy, the driver; startup, seeding and
migrations cancel out, and PostgreSQL's own work is in its server, not counted; the databases
made are dropped at the end). Runs go in
parallel, one per CPU: the counts do not depend on the load. Prints, per database and
scenario, each side's instructions per request and the ratio after/before, and marks a ratio
above ``1 + --slower``; exit status 1 if any. Each run under callgrind takes 1-3 minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dataset

SCENARIOS = ("session", "call", "record")
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def _instructions(side: Path, db_url: str, scenario: str, requests: int, out: Path) -> int:
    """Instructions executed by one in-process run of ``side`` (valgrind's ``I refs``)."""
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        str(side / ".venv/bin/python"),
        "-m",
        "scripts.bench.inprocess",
        f"--scenario={scenario}",
        f"--requests={requests}",
        "--runs=1",
        "--rounds=3000",
        f"--db-url={db_url}",
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts in every run
    done = subprocess.run(command, cwd=side, env=env, capture_output=True, text=True)
    found = _REFS.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{side} {scenario}: exit {done.returncode}\n{done.stderr[-2000:]}")
    out.unlink(missing_ok=True)
    return int(found.group(1).replace(",", ""))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--before", type=Path, required=True, help="checkout measured first")
    p.add_argument("--after", type=Path, required=True, help="checkout compared with it")
    p.add_argument("--postgres-url", help="also PostgreSQL: a server whose databases may be made")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="of session, call, record")
    p.add_argument("--small", type=int, default=100, help="requests per run, first count")
    p.add_argument("--large", type=int, default=500, help="requests per run, second count")
    p.add_argument("--slower", type=float, default=0.05, help="increase marked (fraction)")
    args = p.parse_args()
    sides = {"before": args.before.resolve(), "after": args.after.resolve()}
    databases = ["sqlite"] + (["postgresql"] if args.postgres_url else [])
    jobs = {}
    made: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="instructions-") as tmp,
        ThreadPoolExecutor(os.cpu_count() or 1) as pool,
    ):
        work = Path(tmp)
        for db in databases:
            for scenario in args.scenarios.split(","):
                for name, side in sides.items():
                    for count in (args.small, args.large):
                        tag = f"{name}_{scenario}_{count}"
                        url = (
                            f"sqlite:///{work / tag}.db"
                            if db == "sqlite"
                            else args.postgres_url.rsplit("/", 1)[0] + f"/instr_{tag}"
                        )
                        made += [] if db == "sqlite" else [url]
                        out = work / f"{db}-{tag}.callgrind"
                        jobs[db, scenario, name, count] = pool.submit(
                            _instructions, side, url, scenario, count, out
                        )
    for url in made:  # every run has ended (the pool waited for them)
        dataset.drop_database(url)
    # inprocess.py sends a warm-up run and then --runs runs: twice the count in all.
    measured = 2 * (args.large - args.small)
    print(f"\n{'database':<11}{'scenario':<10}{'before':>12}{'after':>12}{'ratio':>8}")
    slower = False
    for db in databases:
        for scenario in args.scenarios.split(","):
            per = {
                name: (
                    jobs[db, scenario, name, args.large].result()
                    - jobs[db, scenario, name, args.small].result()
                )
                / measured
                for name in sides
            }
            ratio = per["after"] / per["before"]
            mark = "  slower" if ratio > 1 + args.slower else ""
            slower = slower or bool(mark)
            print(
                f"{db:<11}{scenario:<10}{per['before']:>12,.0f}{per['after']:>12,.0f}"
                f"{ratio:>8.3f}{mark}"
            )
    print("\ninstructions per request of the application (in-process), from callgrind")
    return 1 if slower else 0


if __name__ == "__main__":
    sys.exit(main())
