"""Scaling: the same reads on tables of growing size, with each query's EXPLAIN plan.

For each database and size: seed a fresh database in bulk, time the read query functions of
``negotiation.queries`` in-process, capture the SQL they send and EXPLAIN it, then serve the
database and measure per-request latency of each read scenario with wrk over one connection
(no queueing, so the latency is the request's own).
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import dataset
import loadgen
import server
from scenarios import QUERY_LIMIT, SCENARIOS
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url

from negotiation import queries, recording
from negotiation.db.statements import DriverConnection

READS = ("session", "call", "query")
#: In-process timings per query and size.
SAMPLES = 300


def _query_units(data: dataset.Dataset) -> dict[str, Callable[[Connection, random.Random], Any]]:
    """Each scenario's database work, as the service does it, with random arguments."""

    def session(conn: Connection, rng: random.Random) -> Any:
        sid = dataset.session_name(rng.randrange(data.sessions))
        return queries.rounds_by_session(conn, sid, after_id=None, limit=1000)

    def call(conn: Connection, rng: random.Random) -> Any:
        call_id = rng.randint(1, data.calls)
        sid = dataset.session_name((call_id - 1) // dataset.CALLS_PER_SESSION)
        queries.call_exists(conn, call_id)
        return queries.rounds_by_call(conn, call_id, sid, after_id=None, limit=1000)

    def query(conn: Connection, rng: random.Random) -> Any:
        filters = queries.RoundFilters(decision="counter", after_id=rng.randrange(data.rounds))
        return queries.rounds_filtered(conn, filters, limit=QUERY_LIMIT)

    return {"session": session, "call": call, "query": query}


def _record(conn: Connection, call_id: int, session_id: str, *, unlocked: bool) -> Any:
    """A round on ``call_id`` in a new session (the caller rolls it back): record_round as the
    service runs it on this ``conn`` (in a transaction: the locked path), or with ``unlocked``
    PostgreSQL's first try (the round's context read, then its guarded write), run here inside
    the caller's transaction."""
    cfg = recording.PolicySettings(3, Decimal("0.10"), 3600, False)
    request = {
        "call_id": call_id,
        "offer": Decimal("2500.00"),
        "session_id": session_id,
        "notes": None,
        "cfg": cfg,
        "now": dt.datetime.now(dt.UTC),
    }
    if unlocked:
        driver = DriverConnection(conn.connection, conn.engine)
        return recording._first_try(driver, recording.Offer(**request), tries=1)
    return recording.record_round(conn, **request)


def _captured(target: Any, fn: Callable[[], Any]) -> list[tuple[str, Any]]:
    """The statements (SQL and parameters) ``fn`` sends on ``target`` (a connection, or an
    engine for the statements of a ``DriverConnection``)."""
    seen: list[tuple[str, Any]] = []

    def before(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(target, "before_cursor_execute", before)
    try:
        fn()
    finally:
        event.remove(target, "before_cursor_execute", before)
    return seen


def _explain(
    conn: Connection, statement: str, parameters: Any, *, analyze: bool = True
) -> list[str]:
    """The plan; with ``analyze`` on PostgreSQL, as run (which executes the statement)."""
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
        depth = {0: -1}
        lines = []
        for node, parent, _unused, detail in rows:
            depth[node] = depth.get(parent, -1) + 1
            lines.append("  " * depth[node] + detail)
        return lines
    explain = (
        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY OFF) "
        if analyze
        else "EXPLAIN (COSTS OFF) "
    )
    return [r[0] for r in conn.exec_driver_sql(explain + statement, parameters).all()]


def study_queries(data: dataset.Dataset) -> dict[str, Any]:
    """In-process timings and EXPLAIN plans of each scenario's queries."""
    units = _query_units(data)

    def _run(conn: Connection) -> dict[str, Any]:
        out: dict[str, Any] = {}
        rng = random.Random(7)
        for name, unit in units.items():
            for _ in range(20):  # warm the caches and SQLAlchemy's statement cache
                unit(conn, rng)
            times = []
            for _ in range(SAMPLES):
                t0 = time.perf_counter()
                unit(conn, rng)
                times.append((time.perf_counter() - t0) * 1000)
            times.sort()
            statements = _captured(conn, lambda u=unit: u(conn, rng))  # type: ignore[misc]
            out[name] = {
                "in_process_p50_ms": round(statistics.median(times), 3),
                "in_process_p99_ms": round(times[int(len(times) * 0.99) - 1], 3),
                "plans": [
                    {"sql": sql, "plan": _explain(conn, sql, params)} for sql, params in statements
                ],
            }
        if conn.dialect.name == "postgresql":  # listings asked for together: one statement
            sids = [dataset.session_name(rng.randrange(data.sessions)) for _ in range(8)]
            call_ids = [rng.randint(1, data.calls) for _ in range(8)]
            shared = {
                "sessions_together": lambda: queries.session_pages(
                    conn, [(sid, None, 1000) for sid in sids]
                ),
                "calls_together": lambda: queries.call_pages(
                    conn,
                    [
                        (c, dataset.session_name((c - 1) // dataset.CALLS_PER_SESSION), None, 1000)
                        for c in call_ids
                    ],
                ),
            }
            for name, read in shared.items():
                out[name] = {
                    "plans": [
                        {"sql": q, "plan": _explain(conn, q, p)} for q, p in _captured(conn, read)
                    ]
                }
        nested = conn.begin_nested()
        # A call of its own: every seeded call has ended (its last round accepted or rejected).
        fresh = dataset.fresh_calls(conn, 1)
        statements = []
        if conn.dialect.name == "postgresql":  # a round's two statements when uncontended
            statements += _captured(
                conn.engine, lambda: _record(conn, fresh, "bench-explain-1", unlocked=True)
            )
        # The locked path: SQLite's only one; PostgreSQL's when another request got in.
        statements += _captured(conn, lambda: _record(conn, fresh, "bench-explain", unlocked=False))
        # Plans only: the writes (PostgreSQL's WITH … INSERT/UPDATE) are not run a second time.
        out["record"] = {
            "plans": [
                {"sql": sql, "plan": _explain(conn, sql, params, analyze=False)}
                for sql, params in statements
                if sql.lstrip().upper().startswith(("SELECT", "WITH"))
            ]
        }
        nested.rollback()
        return out

    return dataset.run_on(data.url, _run)


def _serve_reads(
    args: argparse.Namespace, data: dataset.Dataset, srv: server.Server, wrk: str, work: Path
) -> dict[str, dict[str, Any]]:
    """Each read over one connection, ``args.repeat`` times interleaved; medians per read."""
    scripts = {
        name: SCENARIOS[name].wrk_args(data, duration=0, threads=1, workdir=work) for name in READS
    }

    def one(name: str, duration: float) -> loadgen.LoadResult:
        return loadgen.run_wrk(
            wrk,
            srv.base_url,
            SCENARIOS[name].script,
            scripts[name],
            api_key=srv.api_key,
            connections=1,
            duration=duration,
            threads=1,
        )

    for name in READS:
        one(name, 1)  # warm-up
    runs: dict[str, list[loadgen.LoadResult]] = {name: [] for name in READS}
    for _ in range(args.repeat):
        for name in READS:
            runs[name].append(one(name, args.duration))
    return {
        name: {
            "p50_ms": round(statistics.median(r.p50_ms for r in results), 3),
            "p99_ms": round(statistics.median(r.p99_ms for r in results), 3),
            "rps": round(statistics.median(r.rps for r in results), 1),
            "errors": sum(r.errors for r in results),
            "runs": [r.as_dict() for r in results],
        }
        for name, results in runs.items()
    }


def run(
    args: argparse.Namespace, urls: dict[str, str], machine: dict[str, Any], wrk: str
) -> dict[str, Any]:
    """Seed, study and serve each database at each of ``args.sizes``; return the report."""
    results = []
    for kind, url in urls.items():
        for size in args.sizes:
            started = time.monotonic()
            dataset.create_database(url)
            dataset.migrate(url)
            data = dataset.seed(url, size)
            seed_seconds = round(time.monotonic() - started, 1)
            print(f"[{kind}] {size:,} rounds seeded in {seed_seconds} s", flush=True)
            entry: dict[str, Any] = {
                "database": kind,
                "rounds": size,
                "seed_seconds": seed_seconds,
                "queries": study_queries(data),
                "http": {},
            }
            with (
                tempfile.TemporaryDirectory(prefix="bench-") as work,
                server.serve(url, workers=1) as srv,
            ):
                runs = _serve_reads(args, data, srv, wrk, Path(work))
            for name, result in runs.items():
                entry["http"][name] = result
                q = entry["queries"][name]
                print(
                    f"[{kind}] {size:>10,} {name:<8} p50 {result['p50_ms']:.2f} ms"
                    f"  p99 {result['p99_ms']:.2f} ms  errors {result['errors']}"
                    f"  (queries alone p50 {q['in_process_p50_ms']:.3f} ms)",
                    flush=True,
                )
            results.append(entry)
        dataset.create_database(url)  # leave an empty database, not gigabytes
        if kind == "sqlite":
            Path(make_url(url).database or "").unlink(missing_ok=True)
    return {"kind": "scaling", "machine": machine, "settings": vars(args), "results": results}


def print_summary(report: dict[str, Any]) -> None:
    results = report["results"]
    print()
    print(
        f"Scaling {report['machine']['date']}: per-request latency over one connection "
        f"(median of {report['settings']['repeat']} runs of {report['settings']['duration']:.0f} s"
        "); 'queries' = the query functions alone, in-process"
    )
    print(
        f"{'database':<11}{'rounds':>12}  {'scenario':<9}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'x smallest':>11}{'queries ms':>12}{'x smallest':>11}"
    )
    smallest: dict[tuple[str, str], tuple[float, float]] = {}
    for entry in results:
        for name, http in entry["http"].items():
            q = entry["queries"][name]["in_process_p50_ms"]
            key = (entry["database"], name)
            base = smallest.setdefault(key, (http["p50_ms"], q))
            print(
                f"{entry['database']:<11}{entry['rounds']:>12,}  {name:<9}{http['p50_ms']:>8.2f}"
                f"{http['p99_ms']:>8.2f}{http['p50_ms'] / base[0]:>10.2f}x{q:>12.3f}"
                f"{q / base[1]:>10.2f}x"
            )
    largest = {e["database"]: e for e in results}
    for kind, entry in largest.items():
        print(f"\nEXPLAIN plans, {kind}, {entry['rounds']:,} rounds:")
        for name, q in entry["queries"].items():
            for plan in q["plans"]:
                print(f"-- {name}: {' '.join(plan['sql'].split())}")
                print("\n".join("   " + line for line in plan["plan"]))
