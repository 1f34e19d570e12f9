#!/usr/bin/env python
"""Benchmark: a round recorded over MCP (``record_offer`` on ``/mcp``) against the same round
over plain HTTP (``POST /api/calls/{id}/negotiate``), in the same run, on the same server.

    .venv/bin/python scripts/bench_mcp.py [--rounds 2000] [--clients 32] [--repeat 3] \
        [--postgres-url postgresql://postgres@127.0.0.1:5432/test]

For each database: a fresh migrated one, ``negotiation serve`` as a subprocess (production
settings), one call per client; each client records its rounds two per session (counter,
counter: nothing closes, so every request records a round). The two paths alternate, each run
``--repeat`` times. Cost per round is the server process's CPU time (user + system, from
/proc) divided by the rounds recorded: on a shared machine it is steadier than wall time, and
the load generator (the SDK's client is the heavier one) is not counted. Wall-clock rounds per
second and the load generator's own CPU per round are printed too: on two cores shared with
the server, the client's cost limits the wall-clock figure. The ratio MCP/HTTP is the figure;
the target is at most 2.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import httpx2  # noqa: E402
from mcp import Client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from tests import dbutil  # noqa: E402
from tests.server import running_server  # noqa: E402

KEY = "bench-key"
LOAD = {
    "load_id": "LDBENCH",
    "origin": "Chicago, IL",
    "destination": "Dallas, TX",
    "pickup_datetime": "2026-12-01T08:00:00Z",
    "delivery_datetime": "2026-12-02T18:00:00Z",
    "equipment_type": "Dry Van",
    "loadboard_rate": 2000,
}
#: Far above the ceiling: every round is a counter until the session's last.
OFFER = 9000
#: Worker ``i`` records round ``n`` as ``(session, offer)``.
Record = Callable[[int, int], Awaitable[None]]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(pid: int, clients: int, rounds: int, record: Record) -> dict[str, float]:
    """``rounds`` rounds from ``clients`` concurrent workers: CPU ms per round, rounds/s."""
    per_client = rounds // clients

    async def worker(i: int) -> None:
        for n in range(per_client):
            await record(i, n)

    cpu, mine, wall = cpu_seconds(pid), time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    cpu, mine = cpu_seconds(pid) - cpu, time.process_time() - mine
    done, wall = per_client * clients, time.perf_counter() - wall
    return {
        "cpu_ms_per_round": cpu * 1000 / done,
        "client_cpu_ms_per_round": mine * 1000 / done,
        "rounds_per_s": done / wall,
    }


async def bench_server(base: str, pid: int, args: argparse.Namespace) -> dict[str, list[Any]]:
    headers = {"X-API-Key": KEY}
    limits = httpx.Limits(max_connections=args.clients)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as http:
        created = await http.post("/api/loads", json=LOAD)
        assert created.status_code == 201, created.text
        calls = []
        for _ in range(args.clients):
            response = await http.post("/api/calls", json={"load_id": "LDBENCH"})
            calls.append(response.json()["id"])
        results: dict[str, list[Any]] = {"http": [], "mcp": []}
        for run in range(args.repeat):

            async def over_http(i: int, n: int, run: int = run) -> None:
                body = {"carrier_offer": OFFER, "session_id": f"h{run}_{i}_{n // 2}"}
                response = await http.post(f"/api/calls/{calls[i]}/negotiate", json=body)
                assert response.status_code == 201, response.text

            results["http"].append(await drive(pid, args.clients, args.rounds, over_http))
            results["mcp"].append(await bench_mcp(base, pid, args, calls, run))
    return results


async def bench_mcp(
    base: str, pid: int, args: argparse.Namespace, calls: list[int], run: int
) -> dict[str, float]:
    async with AsyncExitStack() as stack:  # exits the clients in reverse, as anyio requires
        clients = []
        for _ in range(args.clients):
            http = await stack.enter_async_context(
                httpx2.AsyncClient(headers={"X-API-Key": KEY}, timeout=60)
            )
            transport = streamable_http_client(f"{base}/mcp", http_client=http)
            clients.append(await stack.enter_async_context(Client(transport, mode="2026-07-28")))
        # The client fetches the tools' output schemas once, on its first call: not measured.
        await asyncio.gather(*(c.list_tools() for c in clients))

        async def over_mcp(i: int, n: int) -> None:
            session_id = f"m{run}_{i}_{n // 2}"
            arguments = {"call_id": calls[i], "carrier_offer": OFFER, "session_id": session_id}
            result = await clients[i].call_tool("record_offer", arguments)
            assert not result.is_error, result.content

        return await drive(pid, args.clients, args.rounds, over_mcp)


def bench_database(kind: str, url: str, args: argparse.Namespace) -> dict[str, list[Any]]:
    dbutil.run_alembic(url)
    settings = {"database_url": url, "api_keys": KEY, "env": "production", "log_level": "WARNING"}
    with running_server(settings) as server:
        return asyncio.run(bench_server(server.base_url, server.process.pid, args))


def report(kind: str, results: dict[str, list[Any]]) -> None:
    def median(path: str, name: str) -> float:
        return statistics.median(r[name] for r in results[path])

    print(f"\n{kind}: {len(results['http'])} runs each, medians")
    for path in ("http", "mcp"):
        cpu, rps = median(path, "cpu_ms_per_round"), median(path, "rounds_per_s")
        client = median(path, "client_cpu_ms_per_round")
        print(
            f"  {path:4}  server CPU {cpu:6.2f} ms/round   {rps:7.1f} rounds/s   "
            f"(load generator CPU {client:5.2f} ms/round)"
        )
    ratio = median("mcp", "cpu_ms_per_round") / median("http", "cpu_ms_per_round")
    wall = median("http", "rounds_per_s") / median("mcp", "rounds_per_s")
    verdict = "within" if ratio <= 2 else "OVER"
    print(f"  MCP/HTTP: {ratio:.2f}x server CPU per round ({verdict} 2x), {wall:.2f}x wall time")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=2000, help="rounds per run and path")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients")
    p.add_argument("--repeat", type=int, default=3, help="runs per path (median reported)")
    p.add_argument("--postgres-url", help="also bench PostgreSQL (a server URL)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report("SQLite", bench_database("sqlite", f"sqlite:///{tmp}/bench.db", args))
    if args.postgres_url:
        name = dbutil.database_name("negotiation_bench_mcp")
        url = dbutil.create_postgres_database(args.postgres_url, name)
        try:
            report("PostgreSQL", bench_database("postgresql", url, args))
        finally:
            dbutil.drop_postgres_database(args.postgres_url, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
