"""What an Idempotency-Key costs: rounds per second with and without one, and a replay's cost.

    .venv/bin/python -m scripts.bench.idempotency [--requests 400] [--concurrency 8]

In process (httpx's ASGI transport, requests overlapping), on a throwaway database of each kind
(SQLite in a temp dir; PostgreSQL when NEGOTIATION_TEST_POSTGRES_URL is set). Every request is
the first offer on its own call, so each one records a round. A keyed request takes two write
transactions (claim, then the round and its stored response) instead of one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

import httpx

from negotiation.app import create_app
from negotiation.settings import Settings
from scripts.bench.inprocess import log_to
from tests import dbutil
from tests.conftest import LOAD

KEY = "bench-key"


async def timed(
    jobs: list[Callable[[], Awaitable[httpx.Response]]], concurrency: int
) -> tuple[float, list[float]]:
    """Wall time for all jobs and each one's latency (seconds)."""
    latencies: list[float] = []
    queue = list(reversed(jobs))

    async def worker() -> None:
        while queue:
            job = queue.pop()
            started = time.perf_counter()
            response = await job()
            assert response.status_code == 201, response.text
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def report(label: str, wall: float, latencies: list[float]) -> None:
    p50 = statistics.median(latencies) * 1000
    p95 = statistics.quantiles(latencies, n=20)[18] * 1000
    rate = len(latencies) / wall
    print(f"  {label:<24} {rate:6.0f} req/s   p50 {p50:6.1f} ms   p95 {p95:6.1f} ms")


async def bench(url: str, requests: int, concurrency: int, log: TextIO) -> None:
    app = create_app(Settings(database_url=url, api_keys=(KEY,)))
    async with app.lifespan():
        log_to(log)
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers={"X-API-Key": KEY}
        ) as c:
            await c.post("/api/loads", json={**LOAD, "load_id": "LD-B"})
            calls = [
                (await c.post("/api/calls", json={"load_id": "LD-B"})).json()["id"]
                for _ in range(3 * requests)
            ]

            def offer(call_id: int, key: str | None) -> Callable[[], Awaitable[httpx.Response]]:
                headers = {"Idempotency-Key": key} if key else {}
                body = {"carrier_offer": 2500}
                return lambda: c.post(f"/api/calls/{call_id}/negotiate", json=body, headers=headers)

            plain = [offer(i, None) for i in calls[:requests]]
            keyed_ids = calls[requests : 2 * requests]
            keyed = [offer(i, f"k-{i}") for i in keyed_ids]
            replays = [offer(i, f"k-{i}") for i in keyed_ids]
            report("without a key", *await timed(plain, concurrency))
            report("with a new key", *await timed(keyed, concurrency))
            report("replay of a stored key", *await timed(replays, concurrency))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with open(os.devnull, "w") as log:
        run(args, log)


def run(args: argparse.Namespace, log: TextIO) -> None:
    """Each database in turn, the access lines written to ``log``."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        dbutil.run_alembic(url)
        print(f"SQLite ({args.requests} requests, {args.concurrency} at a time)")
        asyncio.run(bench(url, args.requests, args.concurrency, log))
    server = dbutil.postgres_server_url()
    if server:
        name = "negotiation_bench_idempotency"
        url = dbutil.create_postgres_database(server, name)
        dbutil.run_alembic(url)
        try:
            print(f"PostgreSQL ({args.requests} requests, {args.concurrency} at a time)")
            asyncio.run(bench(url, args.requests, args.concurrency, log))
        finally:
            dbutil.drop_postgres_database(server, name)


if __name__ == "__main__":
    main()
