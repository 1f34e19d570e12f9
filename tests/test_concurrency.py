"""Concurrent offers on one negotiation: never more rounds than the policy allows, no duplicates.

The requests really overlap (:func:`tests.helpers.concurrent_client`; each test checks the
peak): on SQLite they meet at the write lock, on PostgreSQL at the call's row lock. Two apps
built from the same settings model two processes (each has its own engine and pool and, on
SQLite, its own writer connection and thread).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from negotiation.app import create_app
from negotiation.settings import Settings
from tests.helpers import Client, assert_error, concurrent_client, negotiate, with_settings

Make = Callable[..., Awaitable[dict[str, Any]]]
REQUESTS = 50


def _statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(r.status_code for r in responses)


async def _check_rounds(
    client: Client, call_id: int, session_id: str | None, created: list[httpx.Response]
) -> list[dict[str, Any]]:
    """The recorded rounds are exactly the 201 responses, numbered 1..k without gaps."""
    params = {"session_id": session_id} if session_id else {}
    rows: list[dict[str, Any]] = (
        await client.get(f"/api/calls/{call_id}/negotiations", params=params)
    ).json()
    assert sorted(r["id"] for r in rows) == sorted(r.json()["id"] for r in created)
    assert [r["round_number"] for r in rows] == list(range(1, len(rows) + 1))
    call = (await client.get(f"/api/calls/{call_id}")).json()
    assert call["negotiation_rounds"] == len(rows)
    return rows


@pytest.mark.parametrize(
    ("offer", "session_id", "expected"),
    [
        (9000, "sess-race", ["counter", "counter", "reject"]),  # the full N rounds
        (9000, None, ["counter", "counter", "reject"]),  # the call's default negotiation
        (1500, "sess-race", ["accept"]),  # the first decision closes it
    ],
)
async def test_concurrent_offers_on_one_negotiation(
    settings: Settings, make_call: Make, offer: int, session_id: str | None, expected: list[str]
) -> None:
    call = await make_call()
    async with concurrent_client(create_app(settings)) as (client, gauge):
        responses = await asyncio.gather(
            *(negotiate(client, call["id"], offer, session_id) for _ in range(REQUESTS))
        )
        assert gauge.peak > REQUESTS // 2
        created = [r for r in responses if r.status_code == 201]
        assert _statuses(responses) == {201: len(expected), 409: REQUESTS - len(expected)}
        for refused in responses:
            if refused.status_code == 409:
                assert_error(refused, 409, "NEGOTIATION_CLOSED")
        rows = await _check_rounds(client, call["id"], session_id, created)
        assert [r["decision"] for r in rows] == expected


async def test_concurrent_offers_with_more_rounds_allowed(
    settings: Settings, make_call: Make
) -> None:
    call = await make_call()
    async with concurrent_client(create_app(with_settings(settings, max_rounds=7))) as (
        client,
        gauge,
    ):
        responses = await asyncio.gather(
            *(negotiate(client, call["id"], 9000, "s") for _ in range(REQUESTS))
        )
        assert gauge.peak > REQUESTS // 2
        assert _statuses(responses) == {201: 7, 409: REQUESTS - 7}
        rows = await _check_rounds(
            client, call["id"], "s", [r for r in responses if r.status_code == 201]
        )
        counters = [r["counter_offer"] for r in rows[:-1]]
        assert counters == sorted(counters) and rows[-1]["decision"] == "reject"


async def test_two_app_instances_on_one_database(settings: Settings, make_call: Make) -> None:
    """Two apps (as two processes would be) racing on the same three negotiations."""
    calls = [await make_call() for _ in range(3)]
    async with (
        concurrent_client(create_app(settings)) as (first, one),
        concurrent_client(create_app(settings)) as (
            second,
            two,
        ),
    ):
        requests = [
            negotiate(client, call["id"], 9000, "two-apps")
            for _ in range(REQUESTS // 2)
            for call in calls
            for client in (first, second)
        ]
        responses = await asyncio.gather(*requests)
        assert one.peak > 1 and two.peak > 1
        assert _statuses(responses) == {201: 3 * 3, 409: 3 * (REQUESTS - 3)}
        by_call: dict[int, list[httpx.Response]] = {}
        for response in responses:
            if response.status_code == 201:
                by_call.setdefault(response.json()["call_id"], []).append(response)
        for call in calls:
            rows = await _check_rounds(first, call["id"], "two-apps", by_call[call["id"]])
            assert [r["decision"] for r in rows] == ["counter", "counter", "reject"]
        session_rows = (await second.get("/api/negotiations/session/two-apps")).json()
        assert len(session_rows) == 9


async def test_concurrent_first_use_of_a_session_across_calls(
    settings: Settings, make_call: Make
) -> None:
    """An unseen session id used by several calls at once is registered once, no errors."""
    calls = [await make_call() for _ in range(10)]
    async with concurrent_client(create_app(settings)) as (client, gauge):
        responses = await asyncio.gather(
            *(negotiate(client, call["id"], 9000, "brand-new-session") for call in calls)
        )
        assert gauge.peak > 1
        assert _statuses(responses) == {201: 10}, [r.text for r in responses]
        rows = (await client.get("/api/negotiations/session/brand-new-session")).json()
        assert sorted(r["call_id"] for r in rows) == sorted(c["id"] for c in calls)
        assert {r["round_number"] for r in rows} == {1}
