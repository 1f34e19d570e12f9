"""``GET /metrics``: the values move by exactly what known requests should add.

The metrics are the process's (as a scraper sees them), so each test reads them before and
after and compares the difference.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from negotiation.app import create_app
from negotiation.settings import Settings
from tests import dbutil
from tests.conftest import API_KEY, LOAD
from tests.helpers import with_settings

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
NEGOTIATE = "/api/calls/{call_id}/negotiate"


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def scrape(client: AsyncTestClient[Litestar]) -> Samples:
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


async def _call(client: AsyncTestClient[Litestar], load_id: str) -> int:
    assert (await client.post("/api/loads", json={**LOAD, "load_id": load_id})).status_code == 201
    r = await client.post("/api/calls", json={"load_id": load_id})
    assert r.status_code == 201, r.text
    call_id: int = r.json()["id"]
    return call_id


async def test_a_counter_round_adds_one_counter_and_one_request(
    client: AsyncTestClient[Litestar],
) -> None:
    call_id = await _call(client, "LD-M1")
    before = await scrape(client)
    r = await client.post(f"/api/calls/{call_id}/negotiate", json={"carrier_offer": 2500})
    assert r.status_code == 201 and r.json()["decision"] == "counter"
    after = await scrape(client)

    rounds = "negotiation_rounds_total"
    assert moved(before, after, rounds, decision="counter", profile="standard") == 1
    assert moved(before, after, rounds, decision="accept", profile="standard") == 0
    requests = "negotiation_http_requests_total"
    assert moved(before, after, requests, method="POST", route=NEGOTIATE, status="201") == 1
    latency = "negotiation_http_request_duration_seconds_count"
    assert moved(before, after, latency, method="POST", route=NEGOTIATE) == 1
    # The scrape before this one was itself a request, counted under its route.
    assert moved(before, after, requests, method="GET", route="/metrics", status="200") == 1

    r = await client.post(f"/api/calls/{call_id}/negotiate", json={"carrier_offer": 2000})
    assert r.json()["decision"] == "accept"
    accepted = await scrape(client)
    assert moved(after, accepted, rounds, decision="accept", profile="standard") == 1
    assert moved(after, accepted, rounds, decision="counter", profile="standard") == 0


async def test_refusals_by_code_and_unmatched_routes(client: AsyncTestClient[Litestar]) -> None:
    call_id = await _call(client, "LD-M2")
    before = await scrape(client)
    assert (
        await client.post("/api/calls/999999/negotiate", json={"carrier_offer": 1})
    ).status_code == 404
    bad = await client.post(f"/api/calls/{call_id}/negotiate", json={"carrier_offer": -5})
    assert bad.status_code == 422
    assert (await client.get("/api/no-such-route")).status_code == 404
    odd = await client.request("BREW", "/api/loads")  # any token: no new series per method
    assert odd.status_code == 405
    assert (await client.get("/api/loads/LD-M2", headers={"X-API-Key": "wrong"})).status_code == 401
    after = await scrape(client)

    refusals = "negotiation_refusals_total"
    assert moved(before, after, refusals, code="CALL_NOT_FOUND") == 1
    assert moved(before, after, refusals, code="VALIDATION_ERROR") == 1
    assert moved(before, after, refusals, code="NOT_FOUND") == 1
    assert moved(before, after, refusals, code="UNAUTHORIZED") == 1
    requests = "negotiation_http_requests_total"
    assert moved(before, after, requests, method="GET", route="unmatched", status="404") == 1
    assert not any(labels and ("method", "BREW") in labels for _, labels in after)
    # A 405 comes from routing, before any route matched: "unmatched" too.
    assert moved(before, after, requests, method="OTHER", route="unmatched", status="405") == 1
    assert moved(before, after, requests, method="POST", route=NEGOTIATE, status="422") == 1
    assert (
        moved(before, after, "negotiation_rounds_total", decision="counter", profile="standard")
        == 0
    )


async def test_a_replayed_round_is_not_counted_again(client: AsyncTestClient[Litestar]) -> None:
    call_id = await _call(client, "LD-M3")
    before = await scrape(client)
    for _ in range(3):
        r = await client.post(
            f"/api/calls/{call_id}/negotiate",
            json={"carrier_offer": 2500},
            headers={"Idempotency-Key": "metrics-replay"},
        )
        assert r.status_code == 201
    after = await scrape(client)
    counters = moved(
        before, after, "negotiation_rounds_total", decision="counter", profile="standard"
    )
    assert counters == 1
    assert (
        moved(
            before,
            after,
            "negotiation_http_requests_total",
            method="POST",
            route=NEGOTIATE,
            status="201",
        )
        == 3
    )


async def test_metrics_need_the_api_key_unless_public(settings: Settings) -> None:
    async with AsyncTestClient(create_app(settings)) as c:
        r = await c.get("/metrics")
        assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
        assert (await c.get("/metrics", headers={"X-API-Key": API_KEY})).status_code == 200
    public = with_settings(settings, metrics_public=True)
    async with AsyncTestClient(create_app(public)) as c:
        r = await c.get("/metrics")
        assert r.status_code == 200 and "negotiation_http_requests_total" in r.text


async def test_database_retries_busy_and_unavailable_answers(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """On SQLite, whose write lock another process can hold and whose file can be missing."""
    path = dbutil.copy_sqlite(sqlite_template, tmp_path / "loads.db")
    settings = Settings(database_url=path, api_keys=(API_KEY,))
    busy = with_settings(settings, sqlite_busy_timeout_ms=0, db_retries=2)
    async with AsyncTestClient(create_app(busy)) as c:
        c.headers["X-API-Key"] = API_KEY
        before = await scrape(c)
        holder = sqlite3.connect(tmp_path / "loads.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process's write lock, held
        try:
            r = await c.post("/api/loads", json={**LOAD, "load_id": "LD-BUSY"})
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert r.status_code == 503 and r.json()["error"]["code"] == "DATABASE_BUSY", r.text
        after = await scrape(c)
    assert moved(before, after, "negotiation_db_retries_total") == 2
    assert moved(before, after, "negotiation_db_busy_total") == 1
    assert moved(before, after, "negotiation_refusals_total", code="DATABASE_BUSY") == 1

    gone = with_settings(settings, database_url=f"sqlite:///{tmp_path}/not-mounted/loads.db")
    async with AsyncTestClient(create_app(gone)) as c:
        c.headers["X-API-Key"] = API_KEY
        before = await scrape(c)
        r = await c.get("/api/loads/LD-GONE")
        assert r.status_code == 503 and r.json()["error"]["code"] == "DATABASE_UNAVAILABLE"
        after = await scrape(c)
    assert moved(before, after, "negotiation_db_unavailable_total") == 1
    assert moved(before, after, "negotiation_db_busy_total") == 0
