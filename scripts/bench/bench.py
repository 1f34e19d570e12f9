"""Benchmark the service as it is deployed: real server, real databases, load from wrk.

For each database (SQLite, PostgreSQL): create and migrate a fresh one, seed it in bulk, start
``negotiation serve`` with production settings, run every scenario with wrk from a separate
process, then check the recorded rounds. Prints a summary table and writes the figures as JSON
under ``bench-results/``. ``--scaling`` runs the table-size study instead (see scaling.py).

Run it as ``scripts/bench/run [options]`` (``--help`` lists them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import dataset
import loadgen
import pyspy
import server
from scenarios import DEFAULT_SCENARIOS, SCENARIOS
from sqlalchemy.engine import make_url

from negotiation.settings import default_workers

ROOT = dataset.ROOT
RESULTS = ROOT / "bench-results"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/negotiation_bench"
#: Exit status when wrk is missing and cannot be installed (the smoke test tells it apart).
EXIT_NO_WRK = 3
TARGETS = {"record_rps": 1500, "session_rps": 4000, "p99_ms": 50, "rss_mb": 150}


def machine_info(pg_url: str | None, wrk: str) -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if "model name" in line), cpu)
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "wrk": loadgen.wrk_version(wrk),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "packages": {
            name: metadata.version(name)
            for name in ("litestar", "uvicorn", "uvloop", "httptools", "sqlalchemy", "asyncpg")
        },
    }
    git = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    )
    info["commit"] = git.stdout.strip()
    if pg_url:
        info["postgresql"] = dataset.run_on(
            dataset.admin_url(pg_url),
            lambda c: c.exec_driver_sql("SHOW server_version").scalar_one(),
        )
    return info


def measure(
    srv: server.Server,
    kind: str,
    name: str,
    data: dataset.Dataset,
    duration: float,
    args: argparse.Namespace,
    wrk: str,
    workdir: Path,
    profiled: bool = False,
) -> dict[str, Any]:
    """One wrk run of scenario ``name`` against ``srv``: wrk's figures, CPU per request, RSS."""
    scenario = SCENARIOS[name]
    wrk_args = scenario.wrk_args(data, duration=duration, threads=args.threads, workdir=workdir)
    spy = None
    if profiled:
        raw = RESULTS / f"profile-{kind}-{name}-{time.strftime('%Y%m%d-%H%M%S')}.txt"
        spy = pyspy.start(srv.process.pid, duration, raw)
        time.sleep(0.5)  # let py-spy attach before the load starts
    t0, cpu0 = time.monotonic(), srv.sampler.cpu_seconds()
    machine0, pg0 = server.machine_cpu_seconds(), server.postgres_cpu_seconds()
    result = loadgen.run_wrk(
        wrk,
        srv.base_url,
        scenario.script,
        wrk_args,
        api_key=srv.api_key,
        connections=args.connections,
        duration=duration,
        threads=args.threads,
    )
    cpu = srv.sampler.cpu_seconds() - cpu0
    machine = server.machine_cpu_seconds() - machine0
    pg1 = server.postgres_cpu_seconds()
    pg = None if kind != "postgresql" or pg0 is None or pg1 is None else pg1 - pg0
    rss_worker, rss_total = srv.sampler.peak_mb(t0, time.monotonic())
    if spy is not None:
        spy.communicate()
        print(f"[{kind}] profile of {name} ({raw}):\n{pyspy.summarize(raw)}", flush=True)
    per_request = 1000 / max(result.requests, 1)
    return result.as_dict() | {
        # Server CPU per request: steadier than req/s when the machine is shared.
        "cpu_ms_per_request": round(cpu * per_request, 3),
        # Every core's busy time (server, database, wrk, kernel) and PostgreSQL's own
        # processes' (when it runs here): where the rest of the machine went.
        "machine_cpu_ms_per_request": round(machine * per_request, 3),
        "db_cpu_ms_per_request": None if pg is None else round(pg * per_request, 3),
        "rss_mb": round(rss_worker, 1),
        "rss_total_mb": round(rss_total, 1),
    }


def bench_database(args: argparse.Namespace, kind: str, url: str, wrk: str) -> dict[str, Any]:
    """Seed one database, serve it, run every scenario ``--repeat`` times (interleaved)."""
    started = time.monotonic()
    dataset.create_database(url)
    dataset.migrate(url)
    data = dataset.seed(url, args.rounds)
    seed_seconds = round(time.monotonic() - started, 1)
    print(f"[{kind}] seeded {args.rounds:,} rounds in {seed_seconds} s", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.scenarios}
    rounds_before = dataset.round_count(url)
    env = dict(e.split("=", 1) for e in args.env)
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as work,
        server.serve(url, workers=args.workers, extra_env=env) as srv,
    ):

        def load(name: str, duration: float, *, profiled: bool = False) -> dict[str, Any]:
            return measure(srv, kind, name, data, duration, args, wrk, Path(work), profiled)

        if args.warmup > 0:
            load("mix", args.warmup)
        for rep in range(args.repeat):
            for name in args.scenarios:
                run = load(name, args.duration, profiled=args.profile)
                runs[name].append(run)
                print(
                    f"[{kind}] {name:<8} run {rep + 1}/{args.repeat}: {run['rps']:>8.0f} req/s"
                    f"  p50 {run['p50_ms']:.1f} ms  p99 {run['p99_ms']:.1f} ms"
                    f"  errors {run['errors']}  RSS {run['rss_mb']:.0f} MB"
                    f"  server CPU {run['cpu_ms_per_request']:.2f} ms/req"
                    f"  machine {run['machine_cpu_ms_per_request']:.2f}",
                    flush=True,
                )
        high_water = round(srv.sampler.high_water_mb(), 1)
    checks = {
        "duplicated_round_numbers": dataset.duplicated_rounds(url),
        "rounds_past_limit": dataset.rounds_beyond_limit(url),
        "rounds_recorded": dataset.round_count(url) - rounds_before,
    }
    return {
        "database": kind,
        "seed_seconds": seed_seconds,
        "runs": runs,
        "median": {name: _median(r) for name, r in runs.items()},
        "rss_high_water_mb": high_water,
        "checks": checks,
    }


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("rps", "p50_ms", "p99_ms", "cpu_ms_per_request", "machine_cpu_ms_per_request")
    out: dict[str, Any] = {k: round(statistics.median(r[k] for r in runs), 2) for k in keys}
    db_cpu = [r["db_cpu_ms_per_request"] for r in runs if r["db_cpu_ms_per_request"] is not None]
    out["db_cpu_ms_per_request"] = round(statistics.median(db_cpu), 2) if db_cpu else None
    out["errors"] = sum(r["errors"] for r in runs)
    out["requests"] = sum(r["requests"] for r in runs)
    out["rss_mb"] = max(r["rss_mb"] for r in runs)
    return out


def print_summary(report: dict[str, Any]) -> None:
    a = report["settings"]
    m = report["machine"]
    print()
    print(
        f"Benchmark {m['date']} on {m['nproc']} CPU ({m['cpu']}), commit {m['commit']}; "
        f"{a['connections']} connections, {a['duration']:.0f} s per run, median of "
        f"{a['repeat']} run(s), {a['workers']} worker(s), {a['rounds']:,} seeded rounds"
    )
    header = f"{'database':<11}{'scenario':<10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
    print(header + f"{'errors':>8}{'RSS MB':>8}{'CPU ms/req':>12}{'machine':>9}{'db':>7}")
    for db in report["databases"]:
        for name, med in db["median"].items():
            db_cpu = med["db_cpu_ms_per_request"]
            print(
                f"{db['database']:<11}{name:<10}{med['rps']:>9.0f}{med['p50_ms']:>9.1f}"
                f"{med['p99_ms']:>9.1f}{med['errors']:>8}{med['rss_mb']:>8.0f}"
                f"{med['cpu_ms_per_request']:>12.2f}{med['machine_cpu_ms_per_request']:>9.2f}"
                + (f"{db_cpu:>7.2f}" if db_cpu is not None else f"{'-':>7}")
            )
    for db in report["databases"]:
        c = db["checks"]
        print(
            f"{db['database']}: {c['rounds_recorded']:,} rounds recorded, "
            f"{c['duplicated_round_numbers']} duplicated round numbers, "
            f"{c['rounds_past_limit']} rounds past the limit; "
            f"peak RSS of any server process {db['rss_high_water_mb']:.0f} MB"
        )
    print("Targets (issue 7): " + "; ".join(target_lines(report)))


def target_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for db in report["databases"]:
        med = db["median"]
        name = db["database"]
        for scenario, target in (("record", "record_rps"), ("session", "session_rps")):
            if scenario in med:
                rps = med[scenario]["rps"]
                lines.append(f"{name} {scenario} {rps:.0f}/{TARGETS[target]} req/s")
        worst = max((m["p99_ms"] for m in med.values()), default=0)
        lines.append(f"{name} worst p99 {worst:.1f}/{TARGETS['p99_ms']} ms")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", default="sqlite,postgresql", help="databases, comma-separated")
    p.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_PG))
    p.add_argument("--sqlite-path", type=Path, default=RESULTS / "db" / "bench.db")
    p.add_argument("--rounds", type=int, default=100_000, help="rounds seeded before the runs")
    p.add_argument(
        "--scenarios",
        help=f"comma-separated, of {', '.join(SCENARIOS)} (default: all but overlap; "
        "--peer: record, overlap, session)",
    )
    p.add_argument("--duration", type=float, default=10, help="seconds per run")
    p.add_argument("--warmup", type=float, default=3, help="seconds of mixed load before runs")
    p.add_argument("--repeat", type=int, default=3, help="runs per scenario (median reported)")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument(
        "--workers",
        type=int,
        help="server worker processes (default: negotiation serve's, one per CPU up to 4)",
    )
    p.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="extra server setting"
    )
    p.add_argument("--json", type=Path, help="where to write the JSON report")
    p.add_argument(
        "--profile", action="store_true", help="sample the server with py-spy (figures not valid)"
    )
    p.add_argument(
        "--markdown", nargs="+", type=Path, metavar="JSON", help="print reports as markdown tables"
    )
    p.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    p.add_argument("--scaling", action="store_true", help="run the table-size study instead")
    p.add_argument(
        "--peer",
        action="store_true",
        help="the service as ./scripts/serve starts it (SQLite) against the FastAPI peer, "
        "interleaved (peer_compare.py)",
    )
    p.add_argument(
        "--pgbench",
        action="store_true",
        help="PostgreSQL recording against pgbench running its statements (pgbench_compare.py)",
    )
    p.add_argument(
        "--sizes", default="10000,1000000,10000000", help="scaling: rounds per table size"
    )
    args = p.parse_args(argv)
    args.db = [d.strip() for d in args.db.split(",") if d.strip()]
    default = ("record", "overlap", "session") if args.peer else DEFAULT_SCENARIOS
    args.scenarios = [s.strip() for s in (args.scenarios or ",".join(default)).split(",")]
    args.scenarios = [s for s in args.scenarios if s]
    if args.workers is None:
        args.workers = default_workers()
    unknown = [s for s in args.scenarios if s not in SCENARIOS] + [
        d for d in args.db if d not in ("sqlite", "postgresql")
    ]
    if unknown:
        p.error(f"unknown scenario or database: {', '.join(unknown)}")
    args.sizes = [int(s) for s in args.sizes.split(",")]
    return args


def database_url(args: argparse.Namespace, kind: str, suffix: str = "") -> str:
    if kind == "sqlite":
        path = args.sqlite_path.resolve()
        return f"sqlite:///{path.with_stem(path.stem + suffix)}"
    url = make_url(args.postgres_url)
    return url.set(database=(url.database or "negotiation_bench") + suffix).render_as_string(
        hide_password=False
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.markdown:
        import markdown

        try:
            print(markdown.render(args.markdown))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    try:
        wrk = loadgen.ensure_wrk(install=not args.no_install)
    except loadgen.WrkMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_WRK
    use_pg = args.pgbench or ("postgresql" in args.db and not args.peer)
    pg = database_url(args, "postgresql") if use_pg else None
    machine = machine_info(pg, wrk)
    if args.scaling:
        import scaling

        urls = {k: database_url(args, k, suffix="_scale") for k in args.db}
        report = scaling.run(args, urls, machine, wrk)
        scaling.print_summary(report)
    elif args.peer:
        import peer_compare

        report = peer_compare.run(args, machine, wrk)
        peer_compare.print_summary(report)
    elif args.pgbench:
        import pgbench_compare

        url = database_url(args, "postgresql", suffix="_pgbench")
        report = pgbench_compare.run(args, url, machine, wrk)
        pgbench_compare.print_summary(report)
    else:
        started = time.monotonic()
        report = {
            "kind": "bench",
            "machine": machine,
            "settings": {k: v for k, v in vars(args).items() if k not in ("json", "sqlite_path")}
            | {"postgres_url": pg},
            "databases": [bench_database(args, k, database_url(args, k), wrk) for k in args.db],
        }
        report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        report["elapsed_seconds"] = round(time.monotonic() - started, 1)
        print_summary(report)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.json or RESULTS / f"{report['kind']}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"JSON report: {out}")
    failed = [
        db["database"]
        for db in report.get("databases", [])
        if db["checks"]["duplicated_round_numbers"] or db["checks"]["rounds_past_limit"]
    ] + report.get("failed", [])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
