"""A server killed with SIGKILL under load loses no round it acknowledged with 201.

The real server (``negotiation serve``) takes concurrent first offers, each on its own call and
with its own ``Idempotency-Key``, and is killed mid-load. Afterwards every acknowledged round is
in the database exactly as acknowledged; then a restarted server gets every request retried
with its key, and each call ends with exactly one round: nothing lost, nothing twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import httpx
import pytest

from tests import dbutil
from tests.conftest import API_KEY, LOAD
from tests.server import Server, running_server

CALLS = 240
CONCURRENCY = 16
KILL_AFTER = 60  # acknowledged rounds before the kill


def make_calls(server: Server) -> list[int]:
    with httpx.Client(base_url=server.base_url, headers={"X-API-Key": API_KEY}) as c:
        assert c.post("/api/loads", json={**LOAD, "load_id": "LD-KILL"}).status_code == 201
        new_call = {"load_id": "LD-KILL"}
        return [c.post("/api/calls", json=new_call).json()["id"] for _ in range(CALLS)]


def offer(c: httpx.AsyncClient, call_id: int) -> Any:
    return c.post(
        f"/api/calls/{call_id}/negotiate",
        json={"carrier_offer": 2500, "session_id": f"kill-{call_id}"},
        headers={"Idempotency-Key": f"kill-{call_id}"},
    )


async def load_then_kill(server: Server, calls: list[int]) -> dict[int, bytes]:
    """Offers from CONCURRENCY clients; SIGKILL once KILL_AFTER are acknowledged."""
    acknowledged: dict[int, bytes] = {}
    queue = list(calls)
    killed = asyncio.Event()

    async def worker(c: httpx.AsyncClient) -> None:
        while queue and not killed.is_set():
            call_id = queue.pop()
            try:
                r = await offer(c, call_id)
            except httpx.TransportError:
                return  # the server is gone; this request was never acknowledged
            if r.status_code == 201:
                acknowledged[call_id] = r.content
                if len(acknowledged) >= KILL_AFTER and not killed.is_set():
                    killed.set()
                    os.kill(server.process.pid, signal.SIGKILL)

    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(
        base_url=server.base_url, headers={"X-API-Key": API_KEY}, limits=limits, timeout=30
    ) as c:
        await asyncio.gather(*(worker(c) for _ in range(CONCURRENCY)))
    assert killed.is_set(), "the load finished before the kill"
    assert server.process.wait(timeout=10) == -signal.SIGKILL
    return acknowledged


async def retry_until_answered(c: httpx.AsyncClient, call_id: int) -> httpx.Response:
    """Retry as a client would: a dead request's claim answers 409 until its lease runs out."""
    for _ in range(40):
        r: httpx.Response = await offer(c, call_id)
        if r.status_code != 409:
            return r
        assert r.json()["error"]["code"] == "REQUEST_IN_PROGRESS", r.text
        await asyncio.sleep(0.25)
    raise AssertionError(f"call {call_id}: still in progress after the lease")


@pytest.mark.slow
async def test_sigkill_under_load_loses_no_acknowledged_round(database_url: str) -> None:
    settings = {"database_url": database_url, "api_keys": API_KEY}
    with running_server(settings) as server:
        calls = make_calls(server)
        acknowledged = await load_then_kill(server, calls)

    rows = await dbutil.execute(
        database_url, "SELECT call_id, id, round_number, decision FROM negotiations"
    )
    stored = {r[0]: r for r in rows}
    assert len(stored) == len(rows), "at most one round per call"
    for call_id, body in acknowledged.items():
        round_ = httpx.Response(201, content=body).json()
        assert call_id in stored, f"acknowledged round of call {call_id} lost"
        assert stored[call_id][1:] == (round_["id"], 1, round_["decision"])

    # A restarted server (short lease: claims of killed requests expire quickly) and retries.
    with running_server({**settings, "idempotency_lease_seconds": "1"}) as server:
        async with httpx.AsyncClient(
            base_url=server.base_url, headers={"X-API-Key": API_KEY}, timeout=30
        ) as c:
            for call_id in calls:
                r = await retry_until_answered(c, call_id)
                assert r.status_code == 201, r.text
                if call_id in acknowledged:
                    assert r.content == acknowledged[call_id]
                    assert r.headers["Idempotent-Replayed"] == "true"

    counts = await dbutil.execute(
        database_url, "SELECT call_id, count(*) FROM negotiations GROUP BY call_id"
    )
    assert {call_id: n for call_id, n in counts} == dict.fromkeys(calls, 1)
