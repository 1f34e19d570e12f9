#!/usr/bin/env python
"""Benchmark the booking race, and the record path against a base revision, in one run.

    .venv/bin/python scripts/bench_bookings.py --calls 200 --repeat 3 \
        --postgres-url postgresql://postgres@127.0.0.1:5432/test

* Booking race (this checkout): one load, ``--calls`` calls, one accepting offer on each, all
  sent at once over 32 connections. Prints the time from the first request to the one 201 (the
  single booking), and the median and p99 latency of the 409 ``LOAD_BOOKED`` refusals; checks
  exactly one offer was accepted.
* Record (the existing "record" scenario: fresh calls, three offers each above the ceiling:
  counter, counter, reject; a call's next offer after the answer to its last) on this
  checkout and on ``--base`` (default ``main``, exported with ``git archive``), each served by
  ``negotiation serve`` on its own fresh database, runs interleaved (ABBA order), so both see
  the same machine. Prints rounds per second and p99 per run, and the medians' ratio.

The load generator is Python (httpx, 32 connections), the same for both sides; the figures
are for comparing the two, on this noisy shared machine, not absolute capacity (that is
scripts/bench/run with wrk). Nothing is written to the repository.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts" / "bench"))

from server import Server, serve  # noqa: E402

from tests import dbutil  # noqa: E402
from tests.conftest import LOAD  # noqa: E402

CONNECTIONS = 32
RECORD_OFFERS = (2500, 2400, 2300)  # above the 2200 ceiling: counter, counter, reject


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def client(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.base_url,
        headers={"X-API-Key": server.api_key},
        limits=httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS),
        timeout=60,
    )


async def new_calls(c: httpx.AsyncClient, load_id: str, n: int) -> list[int]:
    r = await c.post("/api/loads", json={**LOAD, "load_id": load_id})
    r.raise_for_status()
    sem = asyncio.Semaphore(CONNECTIONS)

    async def one() -> int:
        async with sem:
            r = await c.post("/api/calls", json={"load_id": load_id})
            r.raise_for_status()
            return int(r.json()["id"])

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def booking_race(server: Server, tag: str, n: int) -> dict[str, float]:
    async with client(server) as c:
        calls = await new_calls(c, f"LD-RACE-{tag}", n)
        start = time.perf_counter()

        async def offer(call_id: int) -> tuple[int, float]:
            r = await c.post(f"/api/calls/{call_id}/negotiate", json={"carrier_offer": 1800})
            return r.status_code, time.perf_counter() - start

        results = await asyncio.gather(*(offer(x) for x in calls))
    booked = [t for status, t in results if status == 201]
    refused = [t for status, t in results if status == 409]
    if len(booked) != 1 or len(refused) != n - 1:
        raise SystemExit(f"booking race: {len(booked)} accepted, {len(refused)} refused of {n}")
    return {
        "to_booking_ms": booked[0] * 1000,
        "refusal_p50_ms": percentile(refused, 0.5) * 1000,
        "refusal_p99_ms": percentile(refused, 0.99) * 1000,
        "all_done_ms": max(t for _, t in results) * 1000,
    }


async def record(server: Server, tag: str, n: int) -> dict[str, float]:
    async with client(server) as c:
        calls = await new_calls(c, f"LD-REC-{tag}", n)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for call_id in calls:
            queue.put_nowait(call_id)
        latencies: list[float] = []

        async def worker() -> None:
            while not queue.empty():
                call_id = queue.get_nowait()
                for amount in RECORD_OFFERS:
                    body = {"carrier_offer": amount, "session_id": f"bench-{tag}-{call_id}"}
                    sent = time.perf_counter()
                    r = await c.post(f"/api/calls/{call_id}/negotiate", json=body)
                    latencies.append(time.perf_counter() - sent)
                    if r.status_code != 201:
                        raise SystemExit(f"record: {r.status_code} {r.text}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - start
    return {"rounds_per_s": len(latencies) / elapsed, "p99_ms": percentile(latencies, 0.99) * 1000}


@contextlib.contextmanager
def base_tree(ref: str) -> Iterator[Path]:
    """The ``negotiation`` package as of ``ref``, in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="bench-base-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", ref, "negotiation"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


@contextlib.contextmanager
def databases(kind: str, postgres_url: str | None) -> Iterator[tuple[str, str]]:
    """Two fresh databases at this checkout's head (its revisions only add to the base's)."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-bookings-") as tmp:
            urls = (f"sqlite:///{tmp}/this.db", f"sqlite:///{tmp}/base.db")
            for url in urls:
                dbutil.run_alembic(url)
            yield urls
        return
    assert postgres_url is not None
    names = ("bench_bookings_this", "bench_bookings_base")
    urls = tuple(dbutil.create_postgres_database(postgres_url, name) for name in names)
    try:
        for url in urls:
            dbutil.run_alembic(url)
        yield urls[0], urls[1]
    finally:
        for name in names:
            dbutil.drop_postgres_database(postgres_url, name)


def run_database(kind: str, args: argparse.Namespace, tree: Path) -> None:
    with databases(kind, args.postgres_url) as (this_url, base_url):
        base_env = {"PYTHONPATH": str(tree)}
        with (
            serve(this_url, workers=args.workers) as this,
            serve(base_url, workers=args.workers, extra_env=base_env) as base,
        ):
            print(f"\n## {kind}: {args.calls} calls on one load, {CONNECTIONS} connections")
            races = [
                asyncio.run(booking_race(this, f"{i}", args.calls)) for i in range(args.repeat)
            ]
            for i, race in enumerate(races, 1):
                print(
                    f"race {i}: single booking after {race['to_booking_ms']:.1f} ms; refusals "
                    f"p50 {race['refusal_p50_ms']:.1f} ms, p99 {race['refusal_p99_ms']:.1f} ms; "
                    f"all answered after {race['all_done_ms']:.1f} ms"
                )
            print(f"\n## {kind}: record, {args.record_calls} fresh calls x 3 offers, interleaved")
            runs: dict[str, list[dict[str, float]]] = {"this": [], "base": []}
            for i in range(args.repeat):
                order = ("this", "base") if i % 2 == 0 else ("base", "this")
                for side in order:
                    server = this if side == "this" else base
                    result = asyncio.run(record(server, f"{side}{i}", args.record_calls))
                    runs[side].append(result)
                    print(
                        f"run {i + 1} {side:>4}: {result['rounds_per_s']:.0f} rounds/s, "
                        f"p99 {result['p99_ms']:.1f} ms"
                    )
            summarise(runs, args.base)


def summarise(runs: dict[str, list[dict[str, float]]], base_ref: str) -> None:
    med: dict[str, dict[str, float]] = {
        side: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for side, rs in runs.items()
    }
    throughput = med["this"]["rounds_per_s"] / med["base"]["rounds_per_s"]
    p99 = med["this"]["p99_ms"] / med["base"]["p99_ms"]
    print(
        f"median: this {med['this']['rounds_per_s']:.0f} rounds/s (p99 "
        f"{med['this']['p99_ms']:.1f} ms), {base_ref} {med['base']['rounds_per_s']:.0f} rounds/s "
        f"(p99 {med['base']['p99_ms']:.1f} ms); throughput ratio {throughput:.3f}, p99 ratio "
        f"{p99:.3f} ({'within' if throughput >= 0.9 else 'BEYOND'} 10 %)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--postgres-url", default=os.environ.get("NEGOTIATION_TEST_POSTGRES_URL"))
    parser.add_argument("--calls", type=int, default=200, help="calls in the booking race")
    parser.add_argument("--record-calls", type=int, default=300, help="fresh calls per record run")
    parser.add_argument("--repeat", type=int, default=4, help="runs per side (ABBA order)")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--base", default="main", help="git revision to compare against")
    args = parser.parse_args(argv)
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    if "postgresql" in kinds and not args.postgres_url:
        parser.error("PostgreSQL needs --postgres-url (or NEGOTIATION_TEST_POSTGRES_URL)")
    with base_tree(args.base) as tree:
        for kind in kinds:
            run_database(kind, args, tree)


if __name__ == "__main__":
    main()
