"""Round listings (a session's, a call's) asked for at the same time, which PostgreSQL reads
with one shared statement, answer exactly what each would alone: its own rounds and page, 404
for an unknown session or call, [] for a known one without rounds, and every round
acknowledged before the read was asked for."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import event

from negotiation.app import create_app
from negotiation.db import Database
from negotiation.queries import (
    ANY_SESSION,
    call_exists,
    call_pages,
    rounds_by_call,
    rounds_by_session,
    session_known,
    session_pages,
)
from negotiation.settings import Settings
from tests import dbutil
from tests.helpers import Client, concurrent_client, db_read, offer_ok

Make = Callable[..., Awaitable[dict[str, Any]]]
OFFERS = (2500, 2400, 2300)  # counter, counter, reject: three rounds per call and session
UNKNOWN_CALL = 987_654_321


@contextmanager
def shared_statements(app: Litestar) -> Iterator[list[str]]:
    """The statements on PostgreSQL that read several listings' pages at once."""
    db: Database = app.state.db
    seen: list[str] = []
    if db.is_sqlite:
        yield seen
        return
    engine = db._backend.engine.sync_engine  # type: ignore[union-attr]

    def capture(*args: Any) -> None:
        if "WITH ORDINALITY" in args[2]:
            seen.append(args[2])

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", capture)


def _kinds(statements: list[str]) -> set[str]:
    return {"call" if "pages(call_id" in s else "session" for s in statements}


@dataclass
class Seeded:
    #: Round ids by session, oldest first.
    sessions: dict[str, list[int]] = field(default_factory=dict)
    #: (round id, session) by call, oldest first.
    calls: dict[int, list[tuple[int, str]]] = field(default_factory=dict)

    async def offer(self, client: Client, call_id: int, offer: int, session: str) -> None:
        round_id = (await offer_ok(client, call_id, offer, session))["id"]
        self.sessions.setdefault(session, []).append(round_id)
        self.calls.setdefault(call_id, []).append((round_id, session))


async def _seed(client: Client, make_call: Make) -> Seeded:
    """Sessions of 1 to 6 rounds over one or two calls, a call with rounds in two sessions, and
    a session and a call without rounds."""
    seeded = Seeded()
    for n in range(1, 7):
        for call_index in range((n + 2) // 3):
            call = (await make_call())["id"]
            for offer in OFFERS[: min(3, n - 3 * call_index)]:
                await seeded.offer(client, call, offer, f"together-{n}")
    mixed = (await make_call())["id"]
    for session, offers in (("mixed-a", OFFERS[:2]), ("mixed-b", OFFERS[:1])):
        for offer in offers:
            await seeded.offer(client, mixed, offer, session)
    created = await client.post("/api/sessions", json={"session_id": "together-empty"})
    assert created.status_code == 201, created.text
    seeded.sessions["together-empty"] = []
    seeded.calls[(await make_call())["id"]] = []
    return seeded


def _requests(seeded: Seeded) -> list[tuple[str, dict[str, Any]]]:
    asked: list[tuple[str, dict[str, Any]]] = []
    for session, ids in seeded.sessions.items():
        url = f"/api/negotiations/session/{session}"
        asked += [(url, {}), (url, {"limit": 1}), (url, {"limit": 2})]
        if ids:
            asked += [(url, {"after_id": ids[0]}), (url, {"after_id": ids[-1]})]
            asked += [(url, {"after_id": ids[0], "limit": 2})]
    asked += [("/api/negotiations/session/together-unknown", {"after_id": 5})]
    for call_id, rounds in seeded.calls.items():
        url = f"/api/calls/{call_id}/negotiations"
        asked += [(url, {}), (url, {"limit": 1}), (url, {"session_id": "together-other"})]
        for session in {s for _, s in rounds}:
            asked += [(url, {"session_id": session}), (url, {"session_id": session, "limit": 1})]
        if rounds:
            asked += [(url, {"after_id": rounds[0][0]}), (url, {"after_id": rounds[-1][0]})]
    for url in (
        "/api/negotiations/session/together-unknown",
        f"/api/calls/{UNKNOWN_CALL}/negotiations",
    ):
        asked += [(url, {}), (url, {"session_id": "together-1"})]
    return asked


def _answer(response: httpx.Response) -> tuple[int, Any, str | None]:
    body = response.json()
    if response.status_code >= 400:  # the envelope carries its own request id and time
        body = body["error"]
    return response.status_code, body, response.headers.get("link")


async def _asked_and_answered_alone(
    client: Client, make_call: Make
) -> tuple[Seeded, list[tuple[str, dict[str, Any]]], list[tuple[int, Any, str | None]]]:
    """The seeded rounds, the listings to ask for, and each one's answer asked for alone."""
    seeded = await _seed(client, make_call)
    asked = _requests(seeded)
    return seeded, asked, [_answer(await client.get(url, params=p)) for url, p in asked]


async def test_listings_asked_together_answer_as_each_would_alone(
    settings: Settings, client: Client, make_call: Make
) -> None:
    seeded, asked, alone = await _asked_and_answered_alone(client, make_call)
    # Spot-check the answers themselves, not only their agreement.
    answers = dict(zip([(u, tuple(p.items())) for u, p in asked], alone, strict=True))
    first = answers[("/api/negotiations/session/together-4", ())]
    assert [r["id"] for r in first[1]] == seeded.sessions["together-4"]
    mixed = next(
        c for c, rounds in seeded.calls.items() if len(rounds) == 3 and rounds[0][1] == "mixed-a"
    )
    in_b = answers[(f"/api/calls/{mixed}/negotiations", (("session_id", "mixed-b"),))]
    assert [r["id"] for r in in_b[1]] == [seeded.calls[mixed][2][0]]
    unknown = answers[("/api/negotiations/session/together-unknown", ())]
    assert unknown[0] == 404 and unknown[1]["code"] == "SESSION_NOT_FOUND"
    unknown = answers[(f"/api/calls/{UNKNOWN_CALL}/negotiations", ())]
    assert unknown[0] == 404 and unknown[1]["code"] == "CALL_NOT_FOUND"
    assert answers[("/api/negotiations/session/together-empty", ())][:2] == (200, [])
    # An unknown session's later page is only ever empty, as before.
    assert answers[("/api/negotiations/session/together-unknown", (("after_id", 5),))][0] == 200

    app = create_app(settings)
    async with concurrent_client(app) as (together_client, gauge):
        with shared_statements(app) as shared:
            responses = await asyncio.gather(
                *(together_client.get(url, params=params) for url, params in asked)
            )
    assert [_answer(r) for r in responses] == alone
    if not app.state.db.is_sqlite:  # SQLite answers each at once, on the loop's thread
        assert gauge.peak > len(asked) // 2
        assert _kinds(shared) == {"session", "call"}, shared


async def test_a_listing_sees_the_round_its_caller_just_recorded(
    settings: Settings, make_call: Make
) -> None:
    calls = [await make_call() for _ in range(12)]

    async def record_then_read(client: Client, call_id: int, session: str) -> None:
        for offer in OFFERS:
            recorded = await offer_ok(client, call_id, offer, session)
            for url, params in (
                (f"/api/negotiations/session/{session}", {}),
                (f"/api/calls/{call_id}/negotiations", {"session_id": session}),
            ):
                listed = (await client.get(url, params=params)).json()
                assert listed[-1]["id"] == recorded["id"]

    app = create_app(settings)
    async with concurrent_client(app) as (client, gauge):
        with shared_statements(app) as shared:
            await asyncio.gather(
                *(record_then_read(client, c["id"], f"fresh-{c['id']}") for c in calls)
            )
    if not app.state.db.is_sqlite:
        assert gauge.peak > 6
        assert _kinds(shared) == {"session", "call"}, shared


def _both_ways(conn: Any, sessions: list[Any], calls: list[Any]) -> Any:
    """Each page alone, then all of them by session_pages and call_pages."""
    sessions_alone = [
        rows
        if (rows := list(rounds_by_session(conn, s, after_id=a, limit=n)))
        or a is not None
        or session_known(conn, s)
        else None
        for s, a, n in sessions
    ]
    calls_alone = [
        rows
        if (rows := list(rounds_by_call(conn, c, s or ANY_SESSION, after_id=a, limit=n)))
        or call_exists(conn, c)
        else None
        for c, s, a, n in calls
    ]
    return (sessions_alone, calls_alone), (session_pages(conn, sessions), call_pages(conn, calls))


async def test_one_call_for_many_pages_equals_a_call_for_each(
    settings: Settings, client: Client, make_call: Make
) -> None:
    """The shared statements themselves, every combination of key, position and size."""
    seeded = await _seed(client, make_call)
    sessions: list[tuple[str, int | None, int]] = []
    for session, ids in [*seeded.sessions.items(), ("together-unknown", [])]:
        for after_id in [None, 0, *ids]:
            sessions += [(session, after_id, limit) for limit in (1, 2, 3, 100)]
    calls: list[tuple[int, str | None, int | None, int]] = []
    for call_id, rounds in [*seeded.calls.items(), (UNKNOWN_CALL, [])]:
        in_call: list[str | None] = [None, "together-other", *{s for _, s in rounds}]
        for in_session in in_call:
            for after_id in [None, 0, *(r for r, _ in rounds)]:
                calls += [(call_id, in_session, after_id, limit) for limit in (1, 2, 100)]
    alone, together = await db_read(settings, _both_ways, sessions, calls)
    assert len(together[0]) == len(sessions) > 100 and len(together[1]) == len(calls) > 100
    for one_kind, other_kind in zip(alone, together, strict=True):
        assert [[r.id for r in p] if p is not None else None for p in other_kind] == [
            [r.id for r in p] if p is not None else None for p in one_kind
        ]
        for one, other in zip(one_kind, other_kind, strict=True):
            for a, b in zip(one or [], other or [], strict=True):
                assert {k: v for k, v in b._mapping.items() if k != "page"} == dict(a._mapping)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_listings_read_together_on_connections_killed_while_idle_are_read_again(
    settings: Settings, make_call: Make, client: Client
) -> None:
    """A shared read on a dead pooled connection runs again on a new one, for every listing."""
    _, asked, alone = await _asked_and_answered_alone(client, make_call)
    app = create_app(settings)
    async with concurrent_client(app) as (together_client, _):
        await asyncio.gather(*(together_client.get(url, params=p) for url, p in asked[:20]))
        assert await dbutil.terminate_backends(settings.database_url) >= 1
        with shared_statements(app) as shared:
            responses = await asyncio.gather(
                *(together_client.get(url, params=params) for url, params in asked)
            )
    assert [_answer(r) for r in responses] == alone
    assert shared
