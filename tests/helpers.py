"""Assertions and small request helpers shared by the API tests."""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import Connection, insert, text

from negotiation.app import create_app
from negotiation.db import Database
from negotiation.queries import loads
from negotiation.settings import Settings
from tests import dbutil
from tests.conftest import API_KEY, LOAD

#: What the API tests talk to: the ``client`` fixture, or a :func:`concurrent_client`.
Client = httpx.AsyncClient
T = TypeVar("T")

#: The fields of every round in every response.
ROUND_KEYS = {
    "id",
    "call_id",
    "session_id",
    "round_number",
    "carrier_offer",
    "decision",
    "counter_offer",
    "agreed_rate",
    "accepted",
    "is_final",
    "rounds_remaining",
    "next_action",
    "system_response",
    "notes",
    "profile",
    "profile_version",
    "round_limit",
    "ceiling",
    "timestamp",
}
ENVELOPE_KEYS = {"success", "error", "request_id", "session_id", "timestamp"}
#: Text that must never reach a client in an error body.
LEAKS = ("Traceback", "SELECT ", "INSERT ", "sqlalchemy", "sqlite3", "asyncpg", 'File "')


def parse_timestamp(value: str) -> dt.datetime:
    """An ISO 8601 timestamp that must carry a UTC offset."""
    parsed = dt.datetime.fromisoformat(value)
    assert parsed.utcoffset() == dt.timedelta(0), value
    return parsed


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the contract's error envelope with ``status`` and ``code``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == ENVELOPE_KEYS, body
    assert body["success"] is False
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    message = body["error"]["message"]
    assert isinstance(message, str) and len(message) > 10, body
    assert body["request_id"] and body["request_id"] == response.headers["x-request-id"]
    parse_timestamp(body["timestamp"])
    for leak in LEAKS:
        assert leak not in response.text, response.text
    return body


async def negotiate(
    client: Client,
    call_id: int | str,
    offer: Any,
    session_id: str | None = None,
    /,
    **fields: Any,
) -> httpx.Response:
    """POST one offer to ``/api/calls/{call_id}/negotiate``."""
    body: dict[str, Any] = {"carrier_offer": offer, **fields}
    if session_id is not None:
        body["session_id"] = session_id
    return await client.post(f"/api/calls/{call_id}/negotiate", json=body)


async def offer_ok(
    client: Client, call_id: int, offer: Any, session_id: str | None = None, /, **fields: Any
) -> dict[str, Any]:
    """Record an offer that must succeed (201) and return the round."""
    response = await negotiate(client, call_id, offer, session_id, **fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@asynccontextmanager
async def client_for(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """A client for a second app built from ``settings`` (same database, other policy/keys)."""
    async with AsyncTestClient(create_app(settings)) as client:
        client.headers["X-API-Key"] = API_KEY
        yield client


async def db_read(settings: Settings, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(conn, *args)`` in a read transaction on the test's database.

    The test client serves the app on its own event loop, so tests open their own
    :class:`Database` rather than borrowing the app's.
    """
    db = Database(settings)
    try:
        return await db.read(fn, *args)
    finally:
        await db.dispose()


async def seed_calls(
    client: httpx.AsyncClient,
    *,
    calls: int,
    sessions: tuple[str, ...] = (),
    one_load_each: bool = False,
) -> None:
    """Load ``LD1`` with calls 1..``calls`` on it (or, ``one_load_each``, call n on load
    ``LDn``: an accept books only its own load), and the ``sessions`` created."""
    for n in range(1, calls + 1):
        load_id = f"LD{n}" if one_load_each else "LD1"
        if n == 1 or one_load_each:
            load = {**LOAD, "load_id": load_id}
            assert (await client.post("/api/loads", json=load)).is_success
        call = {"load_id": load_id, "carrier_mc_number": "MC1"}
        assert (await client.post("/api/calls", json=call)).is_success
    for session_id in sessions:
        assert (await client.post("/api/sessions", json={"session_id": session_id})).is_success


def with_settings(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with ``changes``, validated like values from the environment."""
    return Settings(**{**dict(settings), **changes})


class PeakConcurrency:
    """ASGI wrapper that records how many requests were in the app at once."""

    def __init__(self, app: Litestar) -> None:
        self.app = app
        self.active = 0
        self.peak = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


@asynccontextmanager
async def concurrent_client(
    app: Litestar, api_key: str = API_KEY
) -> AsyncIterator[tuple[Client, PeakConcurrency]]:
    """A client whose requests really overlap, and the gauge that proves they did.

    ``AsyncTestClient`` runs each request to completion on a portal thread before the next
    starts, so ``asyncio.gather`` over it is sequential. Here the app runs on the test's own
    event loop behind ``httpx.ASGITransport``, as it would under a server; cancelling a
    request's task cancels the app's handling of it, as a client disconnect would.
    """
    gauge = PeakConcurrency(app)
    transport = httpx.ASGITransport(app=gauge)
    async with (
        app.lifespan(),
        httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers={"X-API-Key": api_key}
        ) as client,
    ):
        yield client, gauge


async def db_write(settings: Settings, fn: Callable[..., T], *args: Any) -> T:
    """Like :func:`db_read`, in a write transaction (committed when ``fn`` returns)."""
    db = Database(settings)
    try:
        return await db.write(fn, *args)
    finally:
        await db.dispose()


def insert_load(conn: Connection, load_id: str, loadboard_rate: float, **fields: Any) -> None:
    """Insert a load row directly (for rows the API would not write, or many at once)."""
    when = dt.datetime(2026, 12, 1, 8, tzinfo=dt.UTC)
    values = {
        "origin": "Chicago, IL",
        "destination": "Dallas, TX",
        "pickup_datetime": when,
        "delivery_datetime": when,
        "equipment_type": "Dry Van",
    }
    conn.execute(
        insert(loads).values(load_id=load_id, loadboard_rate=loadboard_rate, **values | fields)
    )


def hold_until_unlocked(conn: Connection, held: threading.Event, key: int) -> None:
    """A PostgreSQL unit that keeps its connection until advisory lock ``key`` (held by the
    test, :func:`tests.dbutil.advisory_lock`) is free; ``held`` is set once it has it. It
    waits in the database, so the app's event loop runs on meanwhile."""
    held.set()
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


#: Values for the path parameters of the OpenAPI document's paths.
PATH_VALUES = {"call_id": "1", "load_id": "LD1", "session_id": "s1"}


async def count(database_url: str, table: str) -> int:
    """The number of rows in ``table``."""
    return int((await dbutil.execute(database_url, f"SELECT count(*) FROM {table}"))[0][0])


def concrete(path: str) -> str:
    """An OpenAPI path with its parameters filled in: ``/api/calls/{call_id}``, ``/api/calls/1``."""
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), "x"), path)


async def operations(client: Client) -> list[tuple[str, str]]:
    """(method, path) of every operation in the live OpenAPI document."""
    document = (await client.get("/schema/openapi.json")).json()
    found = [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]
    assert len(found) >= 15, found
    return found
