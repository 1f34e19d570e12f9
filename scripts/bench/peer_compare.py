"""The service against its peer, in one sitting (``scripts/bench/run --peer``).

The service runs as ``./scripts/serve`` starts it (``negotiation serve``, default workers, SQLite);
the peer (``peer/app.py``) is the same two operations built the way the original system was:
FastAPI, plain ``def`` endpoints, a synchronous SQLAlchemy ORM session per request, a SQLite file
with the original's defaults, round numbers counted in Python. Each gets a fresh database seeded
with the same rows (``dataset.seed``), both servers stay up, and every scenario runs against
the service, then the peer, ``--repeat`` times (interleaved, so a noisy neighbour hits both
alike), with the same wrk scripts and connections. ``overlap`` sends a call's three offers back
to back on different connections. After each write run the database is asked how many rounds
were stored and how many repeat another's (call, session, round number): the service's unique
constraint forbids that; the peer has none, so its count is what overlapping offers cost it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import bench
import dataset
import server
from peer import models
from scenarios import SCENARIOS

SIDES = ("service", "peer")
#: Issue 22's targets for ./scripts/serve defaults against the peer.
TARGETS = {"ratio": 12.0, "p99_ms": 50.0}


def _prepare(args: argparse.Namespace) -> dict[str, dataset.Dataset]:
    """Fresh, seeded databases: the service's migrated, the peer's made by its own models."""
    service_url = bench.database_url(args, "sqlite")
    peer_url = bench.database_url(args, "sqlite", suffix="_peer")
    started = time.monotonic()
    dataset.create_database(service_url)
    dataset.migrate(service_url)
    models.create(peer_url)
    data = {
        "service": dataset.seed(service_url, args.rounds),
        "peer": dataset.seed(peer_url, args.rounds),
    }
    models.default_journal(peer_url)
    print(f"seeded {args.rounds:,} rounds twice in {time.monotonic() - started:.1f} s", flush=True)
    return data


def run(args: argparse.Namespace, machine: dict[str, Any], wrk: str) -> dict[str, Any]:
    """Seed both databases, serve both, run every scenario on each side in turn."""
    started = time.monotonic()
    data = _prepare(args)
    env = dict(e.split("=", 1) for e in args.env)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        side: {name: [] for name in args.scenarios} for side in SIDES
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-peer-") as work,
        server.serve(data["service"].url, workers=args.workers, extra_env=env) as service,
        server.serve_peer(data["peer"].url) as peer,
    ):
        servers = {"service": service, "peer": peer}

        def load(side: str, name: str, duration: float) -> dict[str, Any]:
            url, writes = data[side].url, SCENARIOS[name].writes > 0
            rounds0 = dataset.round_count(url) if writes else 0
            dup0 = dataset.duplicated_rounds(url) if writes else 0
            result = bench.measure(
                servers[side], "sqlite", name, data[side], duration, args, wrk, Path(work)
            )
            stored = dataset.round_count(url) - rounds0 if writes else 0
            result["rounds_stored"] = stored
            result["rounds_per_s"] = round(stored / result["seconds"], 1) if writes else None
            result["duplicated_rounds"] = dataset.duplicated_rounds(url) - dup0 if writes else 0
            return result

        if args.warmup > 0:
            for side in SIDES:
                load(side, "session", args.warmup)
        for rep in range(args.repeat):
            for name in args.scenarios:
                for side in SIDES:
                    result = load(side, name, args.duration)
                    runs[side][name].append(result)
                    _print_run(side, name, rep, args.repeat, result)
        rss = {side: round(servers[side].sampler.high_water_mb(), 1) for side in SIDES}
    checks = {
        side: {
            "duplicated_round_numbers": dataset.duplicated_rounds(data[side].url),
            "rounds_past_limit": dataset.rounds_beyond_limit(data[side].url),
        }
        for side in SIDES
    }
    medians = {side: {n: _median(r) for n, r in runs[side].items()} for side in SIDES}
    service = checks["service"]
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return {
        "kind": "peer",
        "machine": machine,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "sqlite_path")},
        "runs": runs,
        "median": medians,
        "ratios": _ratios(medians),
        "rss_high_water_mb": rss,
        "checks": checks,
        "elapsed_seconds": round(time.monotonic() - started, 1),
        # The service must never store a duplicated round; the peer is only counted.
        "failed": ["service"]
        if service["duplicated_round_numbers"] or service["rounds_past_limit"]
        else [],
    }


def _print_run(side: str, name: str, rep: int, repeat: int, r: dict[str, Any]) -> None:
    writes = f"  {r['rounds_per_s']:>7.0f} rounds/s" if r["rounds_per_s"] is not None else ""
    print(
        f"[{side:<7}] {name:<8} run {rep + 1}/{repeat}: {r['rps']:>7.0f} req/s{writes}"
        f"  p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms  errors {r['errors']}"
        f"  duplicated {r['duplicated_rounds']}  server CPU {r['cpu_ms_per_request']:.2f} ms/req",
        flush=True,
    )


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("rps", "p50_ms", "p99_ms", "cpu_ms_per_request")
    out: dict[str, Any] = {k: round(statistics.median(r[k] for r in runs), 2) for k in keys}
    rates = [r["rounds_per_s"] for r in runs if r["rounds_per_s"] is not None]
    out["rounds_per_s"] = round(statistics.median(rates), 1) if rates else None
    out["worst_p99_ms"] = max(r["p99_ms"] for r in runs)
    for key in ("errors", "requests", "duplicated_rounds", "rounds_stored"):
        out[key] = sum(r[key] for r in runs)
    return out


def _ratios(medians: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, float | None]]:
    """service / peer for each scenario: throughput (rounds/s for writes) and p99 (peer/service,
    so that above 1 is the service's advantage too)."""
    out: dict[str, dict[str, float | None]] = {}
    for name, s in medians["service"].items():
        p = medians["peer"][name]
        key = "rounds_per_s" if s["rounds_per_s"] is not None else "rps"
        out[name] = {
            "throughput": round(s[key] / p[key], 2) if p[key] else None,
            "p99": round(p["p99_ms"] / s["p99_ms"], 2) if s["p99_ms"] else None,
        }
    return out


def print_summary(report: dict[str, Any]) -> None:
    a, m = report["settings"], report["machine"]
    print(
        f"\nService ({a['workers']} worker(s), SQLite) against the FastAPI peer, {m['date']}, "
        f"commit {m['commit']}, {m['nproc']} CPU; {a['connections']} connections, "
        f"{a['duration']:.0f} s per run, median of {a['repeat']} run(s), {a['rounds']:,} rounds"
    )
    print(
        f"{'scenario':<10}{'service/s':>10}{'peer/s':>9}{'ratio':>8}{'p99 ms (s/p)':>16}"
        f"{'errors (s/p)':>14}{'duplicated (s/p)':>18}{'CPU ms/req (s/p)':>18}"
    )
    for name, s in report["median"]["service"].items():
        p = report["median"]["peer"][name]
        key = "rounds_per_s" if s["rounds_per_s"] is not None else "rps"
        ratio = report["ratios"][name]["throughput"]
        print(
            f"{name:<10}{s[key]:>10.0f}{p[key]:>9.0f}{_x(ratio):>8}"
            f"{s['p99_ms']:>8.1f} /{p['p99_ms']:>6.1f}{s['errors']:>7} /{p['errors']:>5}"
            f"{s['duplicated_rounds']:>9} /{p['duplicated_rounds']:>7}"
            f"{s['cpu_ms_per_request']:>9.2f} /{p['cpu_ms_per_request']:>6.2f}"
        )
    print("(writes: rounds stored per second; session: reads per second)")
    c = report["checks"]
    for side in SIDES:
        print(
            f"{side}: {c[side]['duplicated_round_numbers']} duplicated round numbers in the "
            f"database, {c[side]['rounds_past_limit']} past the round limit; peak RSS "
            f"{report['rss_high_water_mb'][side]:.0f} MB"
        )
    print("Targets (issue 22): " + "; ".join(target_lines(report)))


def target_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for name, ratio in report["ratios"].items():
        lines.append(f"{name} {_x(ratio['throughput'])}/{TARGETS['ratio']:.0f}x the peer")
    worst = max(s["worst_p99_ms"] for s in report["median"]["service"].values())
    lines.append(f"service worst p99 {worst:.1f}/{TARGETS['p99_ms']:.0f} ms")
    errors = sum(s["errors"] for s in report["median"]["service"].values())
    dups = report["checks"]["service"]["duplicated_round_numbers"]
    lines.append(f"service {errors} errors, {dups} duplicated rounds (0)")
    return lines


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1f}x"
