"""Session listings asked for at the same time (one shared statement on PostgreSQL) answer
exactly what each would alone: its own rounds and page, 404 for an unknown session, [] for a
known one without rounds, and every round acknowledged before the read was asked for."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from litestar import Litestar
from sqlalchemy import event

from negotiation.app import create_app
from negotiation.db import Database
from negotiation.queries import rounds_by_session, session_known, session_pages
from negotiation.settings import Settings
from tests.helpers import Client, concurrent_client, db_read, offer_ok

Make = Callable[..., Awaitable[dict[str, Any]]]
OFFERS = (2500, 2400, 2300)  # counter, counter, reject: three rounds per call and session


@contextmanager
def shared_statements(app: Litestar) -> Iterator[list[str]]:
    """The statements on PostgreSQL that read several sessions' pages at once."""
    db: Database = app.state.db
    seen: list[str] = []
    if db.is_sqlite:
        yield seen
        return
    engine = db._async_engine.sync_engine  # type: ignore[union-attr]

    def capture(*args: Any) -> None:
        if "WITH ORDINALITY" in args[2]:
            seen.append(args[2])

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", capture)


async def _seed(client: Client, make_call: Make) -> dict[str, list[int]]:
    """Sessions with 1 to 6 rounds over one or two calls, and one created without rounds."""
    ids: dict[str, list[int]] = {}
    for n in range(1, 7):
        session = f"together-{n}"
        ids[session] = []
        for call_index in range((n + 2) // 3):
            call = await make_call()
            for offer in OFFERS[: min(3, n - 3 * call_index)]:
                ids[session].append((await offer_ok(client, call["id"], offer, session))["id"])
    created = await client.post("/api/sessions", json={"session_id": "together-empty"})
    assert created.status_code == 201, created.text
    ids["together-empty"] = []
    return ids


def _requests(ids: dict[str, list[int]]) -> list[tuple[str, dict[str, Any]]]:
    asked: list[tuple[str, dict[str, Any]]] = []
    for session, rounds in ids.items():
        asked += [(session, {}), (session, {"limit": 1}), (session, {"limit": 2})]
        if rounds:
            asked += [(session, {"after_id": rounds[0]}), (session, {"after_id": rounds[-1]})]
            asked += [(session, {"after_id": rounds[0], "limit": 2})]
    asked += [("together-unknown", {}), ("together-unknown", {"after_id": 5})]
    return asked


def _answer(response: httpx.Response) -> tuple[int, Any, str | None]:
    return response.status_code, response.json(), response.headers.get("link")


async def test_session_reads_asked_together_answer_as_each_would_alone(
    settings: Settings, client: Client, make_call: Make
) -> None:
    ids = await _seed(client, make_call)
    asked = _requests(ids)
    alone = [
        _answer(await client.get(f"/api/negotiations/session/{s}", params=p)) for s, p in asked
    ]
    # Spot-check the answers themselves, not only their agreement.
    assert alone[0][0] == 200 and [r["id"] for r in alone[0][1]] == ids["together-1"]
    # An unknown session is a 404 on its first page; a later page is only ever empty.
    assert [a[:2] for a in alone[-1:]] == [(200, [])] and alone[-2][0] == 404
    assert alone[-2][1]["error"]["code"] == "SESSION_NOT_FOUND"
    empty = asked.index(("together-empty", {}))
    assert alone[empty][:2] == (200, [])

    app = create_app(settings)
    async with concurrent_client(app) as (together_client, gauge):
        with shared_statements(app) as shared:
            responses = await asyncio.gather(
                *(together_client.get(f"/api/negotiations/session/{s}", params=p) for s, p in asked)
            )
    together = [_answer(r) for r in responses]
    for one, other in zip(alone, together, strict=True):
        if one[0] == 404:  # the error envelope carries its own request id and time
            assert other[0] == 404 and other[1]["error"] == one[1]["error"]
        else:
            assert one == other
    if not app.state.db.is_sqlite:  # SQLite answers each at once, on the loop's thread
        assert gauge.peak > len(asked) // 2
        assert shared, "no listing shared a statement"


async def test_a_session_read_sees_the_round_its_caller_just_recorded(
    settings: Settings, make_call: Make
) -> None:
    calls = [await make_call() for _ in range(12)]

    async def record_then_read(client: Client, call_id: int, session: str) -> None:
        for offer in OFFERS:
            recorded = await offer_ok(client, call_id, offer, session)
            listed = (await client.get(f"/api/negotiations/session/{session}")).json()
            assert listed[-1]["id"] == recorded["id"]

    app = create_app(settings)
    async with concurrent_client(app) as (client, gauge):
        with shared_statements(app) as shared:
            await asyncio.gather(
                *(record_then_read(client, c["id"], f"fresh-{c['id']}") for c in calls)
            )
    if not app.state.db.is_sqlite:
        assert gauge.peak > 6
        assert shared, "no listing shared a statement"


def _pages_alone_and_together(conn: Any, asked: list[tuple[str, int | None, int]]) -> Any:
    alone = [
        rows
        if (rows := list(rounds_by_session(conn, s, after_id=a, limit=lim)))
        or a is not None
        or session_known(conn, s)
        else None
        for s, a, lim in asked
    ]
    return alone, session_pages(conn, asked)


async def test_one_call_for_many_pages_equals_a_call_for_each(
    settings: Settings, client: Client, make_call: Make
) -> None:
    """The shared statement itself, every combination of session, position and size."""
    ids = await _seed(client, make_call)
    asked: list[tuple[str, int | None, int]] = []
    for session, rounds in [*ids.items(), ("together-unknown", [])]:
        for after_id in [None, 0, *rounds]:
            asked += [(session, after_id, limit) for limit in (1, 2, 3, 100)]
    alone, together = await db_read(settings, _pages_alone_and_together, asked)
    assert len(together) == len(asked) > 100
    assert [[r.id for r in p] if p is not None else None for p in together] == [
        [r.id for r in p] if p is not None else None for p in alone
    ]
    for one, other in zip(alone, together, strict=True):
        for a, b in zip(one or [], other or [], strict=True):
            assert {k: v for k, v in b._mapping.items() if k != "page"} == dict(a._mapping)
