"""Two checkouts of the service benchmarked in one sitting, interleaved: before, after, before…

    .venv/bin/python scripts/bench/ab.py --before ../start --after . --repeat 3 -- --duration 5

Each side runs its own ``scripts/bench/bench.py`` (its own server code and harness) with the
arguments after ``--``, from its own ``.venv``; the sides alternate ``--repeat`` times so that
the machine's drift falls on both. Prints, per database and scenario, the median request rate
and p99 of each side, the median of the paired ratios after/before (run n of each side, next to
each other in time, so the machine's slow drift cancels within a pair) for the request rate and
the server's CPU per request, and marks a scenario whose paired request-rate ratio is more than
``--slower`` (5 %) below 1. The reports are kept under ``bench-results/ab-<time>/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[2] / "bench-results"


def _run(side: Path, report: Path, bench_args: list[str]) -> dict[str, Any]:
    command = [str(side / ".venv/bin/python"), str(side / "scripts/bench/bench.py")]
    command += ["--no-install", "--json", str(report), *bench_args]
    subprocess.run(command, cwd=side, check=True, stdout=subprocess.DEVNULL)
    loaded: dict[str, Any] = json.loads(report.read_text())
    return loaded


Key = tuple[str, str]
FIGURES = ("rps", "p99_ms", "cpu_ms_per_request")


def _runs(reports: list[dict[str, Any]]) -> dict[Key, dict[str, list[float]]]:
    """Per (database, scenario): each report's req/s, p99 and server CPU per request."""
    runs: dict[Key, dict[str, list[float]]] = {}
    for report in reports:
        for db in report["databases"]:
            for scenario, med in db["median"].items():
                into = runs.setdefault((db["database"], scenario), {f: [] for f in FIGURES})
                for figure in FIGURES:
                    into[figure].append(med[figure])
    return runs


def _paired(after: list[float], before: list[float]) -> float:
    """The median of run n's ratio after/before."""
    return statistics.median(a / b for a, b in zip(after, before, strict=True))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--before", type=Path, required=True, help="checkout measured first")
    p.add_argument("--after", type=Path, required=True, help="checkout compared with it")
    p.add_argument("--repeat", type=int, default=3, help="alternations (each side this often)")
    p.add_argument("--slower", type=float, default=0.05, help="slowdown marked (fraction)")
    p.add_argument("bench_args", nargs="*", help="arguments for bench.py (after --)")
    args = p.parse_args()
    out = RESULTS / f"ab-{dt.datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True)
    sides = {"before": args.before.resolve(), "after": args.after.resolve()}
    reports: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for n in range(1, args.repeat + 1):
        for name, side in sides.items():
            report = _run(side, out / f"{name}-{n}.json", args.bench_args)
            reports[name].append(report)
            print(f"{name} {n}/{args.repeat}: commit {report['machine'].get('commit')}", flush=True)
    before, after = _runs(reports["before"]), _runs(reports["after"])
    print(
        f"\n{'database':<11}{'scenario':<10}{'before/s':>10}{'after/s':>10}{'ratio':>8}"
        f"{'CPU ratio':>11}{'p99 before':>12}{'p99 after':>11}"
    )
    slower = []
    for key in sorted(before.keys() & after.keys()):
        b, a = before[key], after[key]
        ratio = _paired(a["rps"], b["rps"])
        mark = "  slower" if ratio < 1 - args.slower else ""
        if mark:
            slower.append(key)
        print(
            f"{key[0]:<11}{key[1]:<10}{statistics.median(b['rps']):>10.0f}"
            f"{statistics.median(a['rps']):>10.0f}{ratio:>8.2f}"
            f"{_paired(a['cpu_ms_per_request'], b['cpu_ms_per_request']):>11.2f}"
            f"{statistics.median(b['p99_ms']):>12.1f}{statistics.median(a['p99_ms']):>11.1f}{mark}"
        )
    print(
        f"\nreq/s and p99: medians of {args.repeat} interleaved runs each; ratio and CPU ratio "
        f"(server CPU per request): medians of the {args.repeat} paired ratios after/before; "
        f"reports in {out}"
    )
    return 1 if slower else 0


if __name__ == "__main__":
    sys.exit(main())
