"""PostgreSQL recording against pgbench running the same statements (``run --pgbench``).

On a fresh, seeded PostgreSQL database: the statements one round's recording sends are captured
from the service (``capture_round_sql.py``: three offers on one call, in-process) and written as
a pgbench script (``bench-results/pgbench-round.sql``): the read that decides the round, its
result kept with ``\\gset`` (the session's row version the write is guarded by), then the write
of that round number, each statement as the service sends it, prepared (``-M prepared``, as
asyncpg does), outside a transaction (as the service's first try runs them). Each pgbench client
takes its share of fresh calls in a random order (``permute``) and offers three times to each,
one after the other, as the ``record`` scenario's paced offers do. Then, in the same sitting,
``record`` against the service (``negotiation serve``, ``--workers``) and pgbench, interleaved,
at the same concurrency (``--connections`` wrk connections and pgbench clients), each run
counting the rounds actually stored.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench
import dataset
import server
from scenarios import RATE_CEILING
from sqlalchemy.engine import make_url

SCRIPT = bench.RESULTS / "pgbench-round.sql"
TARGET = 0.5  # issue 22: the service records at least half of pgbench's rate
HEADER = """\
-- One round of POST /api/calls/{id}/negotiate on PostgreSQL, as the service sends it (captured
-- by scripts/bench/capture_round_sql.py; written by pgbench_compare.py). -D sets first, per,
-- total, k=0 and the constants. Client c offers three times (rounds 1, 2, 3) to each call of
-- its share first + permute(c * per .. c * per + per - 1, total); the session id is the call id.
\\set n :k
\\set k :k + 1
\\set call :first + permute(:client_id * :per + :n / 3, :total)
\\set r :n % 3 + 1
\\set sid :call
"""


def pgbench_script(captured: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The pgbench script for the captured rounds, and the constants it takes with ``-D``."""
    call, session = str(captured["call_id"]), captured["session_id"]
    defines: dict[str, str] = {}

    def render(statement: dict[str, Any], prefix: str) -> str:
        sql, params = statement["sql"], statement["params"]
        guard = {int(k) for k in re.findall(r"xmin::text = \$(\d+)", sql)}

        def variable(match: re.Match[str]) -> str:
            k = int(match.group(1))
            kind, value = params[k - 1]
            if k in guard:
                return ":ctx_version"  # the row version the read returned
            if kind == "none":
                return "NULL"
            if (kind, value) == ("int", call):
                return ":call"
            if (kind, value) == ("str", session):
                return ":sid"
            defines[f"{prefix}_{k}"] = value
            return f":{prefix}_{k}"

        return re.sub(r"\$(\d+)", variable, sql).strip()

    rounds = captured["rounds"]
    shapes = [len(r["statements"]) for r in rounds]
    if shapes != [2, 2, 2]:
        raise RuntimeError(f"expected two statements per round (read, write), got {shapes}")
    reads = {r["statements"][0]["sql"] for r in rounds}
    if len(reads) != 1:
        raise RuntimeError("the rounds' reads differ; the script assumes one read statement")
    lines = [HEADER, render(rounds[0]["statements"][0], "rd") + " \\gset ctx_"]
    for n, r in enumerate(rounds, 1):
        lines.append("\\if :r = 1" if n == 1 else "\\elif :r = 2" if n == 2 else "\\else")
        lines.append(render(r["statements"][1], f"w{n}") + ";")
    lines.append("\\endif\n")
    return "\n".join(lines), defines


def capture(url: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "scripts.bench.capture_round_sql", url]
    result = subprocess.run(command, cwd=dataset.ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"capturing a round's statements failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def run_pgbench(
    pgbench: str,
    conninfo: str,
    defines: dict[str, str],
    *,
    clients: int,
    threads: int,
    duration: float,
    workdir: Path,
    tag: str,
) -> dict[str, Any]:
    """One pgbench run of the script; its rate, latency percentiles (from ``--log``), failures."""
    command = [pgbench, "-n", "-M", "prepared", "-f", str(SCRIPT), "-c", str(clients)]
    command += ["-j", str(min(threads, clients)), "-T", str(max(1, round(duration)))]
    command += ["--log", f"--log-prefix={workdir / tag}"]
    for name, value in defines.items():
        command += ["-D", f"{name}={value}"]
    result = subprocess.run([*command, conninfo], capture_output=True, text=True, check=False)
    out = result.stdout + result.stderr

    def number(pattern: str) -> float:
        found = re.search(pattern, out)
        if found is None:
            raise RuntimeError(f"pgbench ({result.returncode}): no {pattern!r} in:\n{out[-2000:]}")
        return float(found.group(1))

    latencies = sorted(
        int(fields[2])
        for log in workdir.glob(f"{tag}.*")
        for fields in (line.split() for line in log.read_text().splitlines())
        if len(fields) > 2 and fields[2].isdigit()
    )
    if result.returncode != 0 or not latencies:
        raise RuntimeError(f"pgbench failed ({result.returncode}):\n{out[-2000:]}")
    return {
        "transactions": int(number(r"actually processed: (\d+)")),
        "failed": int(number(r"number of failed transactions: (\d+)")),
        "tps": number(r"tps = ([\d.]+) \(without initial connection time\)"),
        "p50_ms": round(latencies[len(latencies) // 2] / 1000, 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)] / 1000, 2),
    }


def run(args: argparse.Namespace, url: str, machine: dict[str, Any], wrk: str) -> dict[str, Any]:
    """Seed, capture, then ``record`` on the service and pgbench in turn, ``--repeat`` times."""
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        raise SystemExit("error: pgbench is not installed (it comes with PostgreSQL's packages)")
    started = time.monotonic()
    dataset.create_database(url)
    dataset.migrate(url)
    data = dataset.seed(url, args.rounds)
    captured = capture(url)
    script, defines = pgbench_script(captured)
    SCRIPT.parent.mkdir(parents=True, exist_ok=True)
    SCRIPT.write_text(script)
    print(f"seeded {args.rounds:,} rounds, captured a round's statements: {SCRIPT}", flush=True)
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    runs: dict[str, list[dict[str, Any]]] = {"service": [], "pgbench": []}
    env = dict(e.split("=", 1) for e in args.env)
    with (
        tempfile.TemporaryDirectory(prefix="bench-pgbench-") as work,
        server.serve(url, workers=args.workers, extra_env=env) as srv,
    ):

        def service(duration: float) -> dict[str, Any]:
            before = dataset.round_count(url)
            r = bench.measure(srv, "postgresql", "record", data, duration, args, wrk, Path(work))
            stored = dataset.round_count(url) - before
            return r | {"rounds_stored": stored, "rounds_per_s": round(stored / r["seconds"], 1)}

        def pgb(duration: float, tag: str) -> dict[str, Any]:
            clients = args.connections
            per = int(RATE_CEILING * duration / 3 / clients) + 1
            first = dataset.add_fresh_calls(url, per * clients)
            sizes = {"first": first, "per": per, "total": per * clients, "k": 0}
            # pgbench's own calls only: the service's last requests may still be committing.
            own = range(first, first + per * clients)
            before, machine0 = dataset.round_count(url, own), server.machine_cpu_seconds()
            r = run_pgbench(
                pgbench,
                conninfo,
                {k: str(v) for k, v in sizes.items()} | defines,
                clients=clients,
                threads=args.threads,
                duration=duration,
                workdir=Path(work),
                tag=tag,
            )
            machine = server.machine_cpu_seconds() - machine0
            stored = dataset.round_count(url, own) - before
            per_tx = 1000 / max(r["transactions"], 1)
            return r | {
                "rounds_stored": stored,
                "rounds_per_s": round(r["tps"] * stored / max(r["transactions"], 1), 1),
                # pgbench's backends exit with it, before their CPU time could be read.
                "db_cpu_ms_per_request": None,
                "machine_cpu_ms_per_request": round(machine * per_tx, 3),
            }

        if args.warmup > 0:
            service(args.warmup)
            pgb(args.warmup, "warmup")
        for rep in range(args.repeat):
            for side in ("service", "pgbench"):
                r = service(args.duration) if side == "service" else pgb(args.duration, f"r{rep}")
                runs[side].append(r)
                errors = r["errors"] if side == "service" else r["failed"]
                db = r["db_cpu_ms_per_request"]
                print(
                    f"[{side:<7}] record run {rep + 1}/{args.repeat}: "
                    f"{r['rounds_per_s']:>7.0f} rounds/s  p50 {r['p50_ms']:.1f} ms"
                    f"  p99 {r['p99_ms']:.1f} ms  errors {errors}"
                    f"  PostgreSQL CPU {'-' if db is None else f'{db:.2f}'} ms/round"
                    f"  machine {r['machine_cpu_ms_per_request']:.2f}",
                    flush=True,
                )
    medians = {side: _median(r) for side, r in runs.items()}
    ratio = medians["service"]["rounds_per_s"] / max(medians["pgbench"]["rounds_per_s"], 1e-9)
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return {
        "kind": "pgbench",
        "machine": machine,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "sqlite_path")},
        "script": script,
        "defines": defines,
        "runs": runs,
        "median": medians,
        "ratio": round(ratio, 3),
        "duplicated_round_numbers": dataset.duplicated_rounds(url),
        "elapsed_seconds": round(time.monotonic() - started, 1),
    }


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("rounds_per_s", "p50_ms", "p99_ms", "machine_cpu_ms_per_request")
    out: dict[str, Any] = {k: round(statistics.median(r[k] for r in runs), 2) for k in keys}
    db = [r["db_cpu_ms_per_request"] for r in runs if r["db_cpu_ms_per_request"] is not None]
    out["db_cpu_ms_per_request"] = round(statistics.median(db), 3) if db else None
    out["errors"] = sum(r.get("errors", r.get("failed", 0)) for r in runs)
    out["rounds_stored"] = sum(r["rounds_stored"] for r in runs)
    return out


def print_summary(report: dict[str, Any]) -> None:
    a, m = report["settings"], report["machine"]
    print(
        f"\nPostgreSQL recording against pgbench ({SCRIPT.name}), {m['date']}, commit "
        f"{m['commit']}, {m['nproc']} CPU, PostgreSQL {m.get('postgresql', '?')}; "
        f"{a['connections']} connections/clients, {a['workers']} worker(s), {a['duration']:.0f} s"
        f" per run, median of {a['repeat']} run(s), {a['rounds']:,} seeded rounds"
    )
    print(
        f"{'':<9}{'rounds/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'errors':>8}{'stored':>9}"
        f"{'PostgreSQL CPU ms/round':>25}{'machine':>9}"
    )
    for side, med in report["median"].items():
        db = med["db_cpu_ms_per_request"]
        print(
            f"{side:<9}{med['rounds_per_s']:>9.0f}{med['p50_ms']:>8.1f}{med['p99_ms']:>8.1f}"
            f"{med['errors']:>8}{med['rounds_stored']:>9,}"
            f"{'-' if db is None else f'{db:.2f}':>25}{med['machine_cpu_ms_per_request']:>9.2f}"
        )
    print(
        f"{report['duplicated_round_numbers']} duplicated round numbers in the database. "
        f"Target (issue 22): service / pgbench {report['ratio']:.0%} (>= {TARGET:.0%})"
    )
