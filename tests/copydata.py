"""A database filled through the API for the copy-database tests, and every read of it.

:func:`fill` writes loads, calls (one patched with an outcome), sessions with rounds (accepted,
rejected, open), a booking and its release, a closed, an expired and a purged session,
idempotency records, and legacy rounds with NULL offers and no decision. :func:`reads` answers
every list and report route, so two databases can be compared by the JSON the service gives
for them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import insert

from negotiation.app import create_app
from negotiation.queries import rounds
from negotiation.settings import Settings
from tests import dbutil
from tests.conftest import API_KEY, LOAD, Clock

Client = AsyncTestClient[Litestar]
START = dt.datetime(2026, 3, 1, 9, 0, 0, tzinfo=dt.UTC)
#: When every read is made: after the short-lived session expired.
READ_AT = START + dt.timedelta(hours=2)


@asynccontextmanager
async def api(url: str, clock: Clock) -> AsyncIterator[Client]:
    """An API client for the database at ``url``, with the test key and the given clock."""
    settings = Settings(database_url=url, api_keys=(API_KEY,), env="development")
    async with AsyncTestClient(create_app(settings, clock=clock)) as client:
        client.headers["X-API-Key"] = API_KEY
        yield client


async def _ok(response: Any) -> Any:
    assert response.status_code in (200, 201), response.text
    return response.json()


async def _call(client: Client, load_id: str, carrier: str) -> int:
    body = {"load_id": load_id, "carrier_mc_number": carrier}
    return int((await _ok(await client.post("/api/calls", json=body)))["id"])


async def _offer(
    client: Client, call_id: int, amount: float, session: str | None, key: str | None = None
) -> Any:
    body: dict[str, Any] = {"carrier_offer": amount}
    if session is not None:
        body["session_id"] = session
    headers = {"Idempotency-Key": key} if key else {}
    return await _ok(
        await client.post(f"/api/calls/{call_id}/negotiate", json=body, headers=headers)
    )


async def fill(url: str) -> list[int]:
    """Write the data set into the empty, migrated database at ``url``; the calls' ids."""
    clock = Clock(START)
    async with api(url, clock) as client:
        loads: list[tuple[str, dict[str, Any]]] = [
            ("LD-1", {}),
            ("LD-2", {"loadboard_rate": 1500.0, "max_rate": 1650.5}),
            ("LD-3", {"loadboard_rate": 1999.99, "notes": "Fragile — 冷蔵 ✓"}),
        ]
        for load_id, extra in loads:
            await _ok(await client.post("/api/loads", json={**LOAD, "load_id": load_id, **extra}))
        meta = {"carrier": "MC100", "tags": ["ü", 1, None], "nested": {"a": {"b": True}}}
        session = {
            "session_id": "crm-1",
            "client_id": "acme",
            "metadata": meta,
            "ttl_seconds": 86400,
        }
        await _ok(await client.post("/api/sessions", json=session))
        short = {"session_id": "short-lived", "ttl_seconds": 600}
        await _ok(await client.post("/api/sessions", json=short))

        accepted = await _call(client, "LD-1", "MC100")
        for amount in (2500, 2300.10, 2150):
            clock.advance(30)
            await _offer(client, accepted, amount, "crm-1")
        patch = {"outcome": "accepted", "sentiment": "positive", "notes": "booked"}
        await _ok(await client.patch(f"/api/calls/{accepted}", json=patch))

        rejected = await _call(client, "LD-2", "MC200")
        for amount in (1900, 1800, 1750):
            clock.advance(20)
            await _offer(client, rejected, amount, "closing", key=f"retry-{amount}")
        await _ok(await client.delete("/api/sessions/closing"))

        open_call = await _call(client, "LD-3", "MC300")
        await _offer(client, open_call, 2600, "short-lived")
        await _offer(client, open_call, 2500.55, None)

        # LD-1 was booked by the accept; released, it takes the next call's rounds.
        await _ok(await client.post("/api/loads/LD-1/release", json={"reason": "fell through"}))
        purged = await _call(client, "LD-1", "MC400")
        for amount in (2400, 2300):
            await _offer(client, purged, amount, "purge-me")
        await _ok(await client.delete("/api/sessions/purge-me?purge=true"))

    legacy = {"call_id": open_call, "decision": None, "counter_offer": None, "notes": None}
    await dbutil.execute(
        url,
        insert(rounds).values(
            [
                legacy | {"session_id": None, "round_number": 1, "carrier_offer": None},
                legacy | {"session_id": "crm-1", "round_number": 1, "carrier_offer": None},
                legacy
                | {"session_id": None, "round_number": 1, "carrier_offer": Decimal("2222.20")},
            ]
        ),
    )
    return [accepted, rejected, open_call, purged]


async def _pages(client: Client, path: str, **query: str) -> list[Any]:
    """Every page of a cursor-paginated list (small pages, to cross several)."""
    items: list[Any] = []
    cursor: str | None = None
    while True:
        params = {**query, "limit": "2", **({"cursor": cursor} if cursor else {})}
        body = await _ok(await client.get(path, params=params))
        items.append(body)
        cursor = body["next_cursor"]
        if cursor is None:
            return items


async def reads(url: str, call_ids: list[int]) -> dict[str, Any]:
    """The JSON of every list and report route for the database at ``url``, and of each load,
    session and call (``call_ids``: the calls have no list route)."""
    out: dict[str, Any] = {}
    async with api(url, Clock(READ_AT)) as client:

        async def get(path: str) -> Any:
            out[path] = await _ok(await client.get(path))
            return out[path]

        loads = await _pages(client, "/api/loads")
        out["loads pages"] = loads
        for page in loads:
            for load in page["items"]:
                await get(f"/api/loads/{load['load_id']}")
        out["rounds pages"] = await _pages(client, "/api/negotiations")
        out["sessions pages"] = await _pages(client, "/api/sessions")
        for status in ("active", "closed", "expired"):
            out[f"sessions {status}"] = await _pages(client, "/api/sessions", status=status)
        for call_id in call_ids:
            await get(f"/api/calls/{call_id}")
            await get(f"/api/calls/{call_id}/negotiations")
        for page in out["sessions pages"]:
            for s in page["items"]:
                await get(f"/api/sessions/{s['session_id']}")
                await get(f"/api/negotiations/session/{s['session_id']}")
                await get(f"/api/reports/sessions/{s['session_id']}")
        await get("/api/reports/summary")
    return out
