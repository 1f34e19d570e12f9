"""Reading rounds back: the arrays by call and by session (``Link`` paging) and the general
query by call, session, decision and time with cursor paging; bad limits and cursors."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.conftest import LOAD
from tests.helpers import ROUND_KEYS, Client, assert_error, negotiate, offer_ok, parse_timestamp

Make = Callable[..., Awaitable[dict[str, Any]]]
LINK = re.compile(r'^<([^>]+)>; rel="next"$')


def _next(response: Any) -> str | None:
    link = response.headers.get("link")
    if link is None:
        return None
    match = LINK.match(link)
    assert match, link
    return match.group(1)


async def _walk_array(client: Client, url: str, params: dict[str, Any]) -> list[list[int]]:
    pages: list[list[int]] = []
    response = await client.get(url, params=params)
    while True:
        assert response.status_code == 200, response.text
        pages.append([r["id"] for r in response.json()])
        target = _next(response)
        if target is None:
            return pages
        query = parse_qs(urlsplit(target).query)
        assert query["limit"] == [str(params["limit"])]  # other parameters are kept
        response = await client.get(target)


async def test_round_arrays_paginate_with_link_headers(client: Client, make_call: Make) -> None:
    ids = []
    calls = [await make_call() for _ in range(3)]
    for call in calls:
        ids.append((await offer_ok(client, call["id"], 5000, "paged2"))["id"])  # a counter
        for offer in (1000, 1000):  # accept (ends the call), then refused: one round
            response = await negotiate(client, call["id"], offer, "paged")
            if response.status_code == 201:
                ids.append(response.json()["id"])
    by_session = [r["id"] for r in (await client.get("/api/negotiations/session/paged")).json()]
    assert len(by_session) == 3

    pages = await _walk_array(client, "/api/negotiations/session/paged", {"limit": 2})
    assert pages == [by_session[:2], by_session[2:]]
    pages = await _walk_array(client, "/api/negotiations/session/paged", {"limit": 1})
    assert pages == [[i] for i in by_session]
    assert await _walk_array(client, "/api/negotiations/session/paged", {"limit": 3}) == [
        by_session
    ]

    cid = calls[0]["id"]
    all_of_call = [r["id"] for r in (await client.get(f"/api/calls/{cid}/negotiations")).json()]
    assert len(all_of_call) == 2
    pages = await _walk_array(client, f"/api/calls/{cid}/negotiations", {"limit": 1})
    assert pages == [[i] for i in all_of_call]
    pages = await _walk_array(
        client, f"/api/calls/{cid}/negotiations", {"limit": 1, "session_id": "paged2"}
    )
    assert pages == [[all_of_call[0]]]

    after = await client.get("/api/negotiations/session/paged", params={"after_id": by_session[0]})
    assert [r["id"] for r in after.json()] == by_session[1:]
    assert (
        await client.get("/api/negotiations/session/paged", params={"after_id": by_session[-1]})
    ).json() == []


async def _walk_query(client: Client, params: dict[str, Any]) -> list[list[int]]:
    pages: list[list[int]] = []
    cursor: str | None = None
    while True:
        page_params = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/negotiations", params=page_params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next_cursor"}
        pages.append([r["id"] for r in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


async def test_query_by_call_session_both_and_filters(client: Client, make_call: Make) -> None:
    one, two, three = await make_call(), await make_call(), await make_call()
    rows: list[dict[str, Any]] = []
    for call, session, offer in [  # a final decision ends its call: it comes last on each
        (one, "s1", 5000),  # counter
        (one, "s1", 5000),  # counter
        (two, None, 5000),  # counter
        (two, "s1", 1500),  # accept
        (three, "s2", 2100),  # counter
        (one, "s1", 5000),  # reject
        (three, "s2", 1999),  # accept
    ]:
        rows.append(await offer_ok(client, call["id"], offer, session))
    ids = [r["id"] for r in rows]

    async def query(**params: Any) -> list[int]:
        pages = await _walk_query(client, params)
        return [i for page in pages for i in page]

    assert await query() == ids
    assert await query(call_id=one["id"]) == [ids[i] for i in (0, 1, 5)]
    assert await query(session_id="s1") == [ids[i] for i in (0, 1, 3, 5)]
    assert await query(call_id=one["id"], session_id="s1") == [ids[i] for i in (0, 1, 5)]
    assert await query(call_id=two["id"], session_id="s2") == []
    assert await query(decision="accept") == [ids[3], ids[6]]
    assert await query(decision="reject", session_id="s1") == [ids[5]]
    assert await query(decision="counter", call_id=two["id"]) == [ids[2]]

    stamp = parse_timestamp(rows[3]["timestamp"])
    assert await query(since=rows[3]["timestamp"]) == ids[3:]
    assert await query(until=rows[3]["timestamp"]) == ids[:3]
    assert await query(since=rows[1]["timestamp"], until=rows[4]["timestamp"]) == ids[1:4]
    # The same instant in another offset, and naive (taken as UTC), select the same rows.
    shifted = stamp.astimezone(dt.timezone(dt.timedelta(hours=-5))).isoformat()
    assert await query(since=shifted) == ids[3:]
    naive = stamp.replace(tzinfo=None).isoformat()
    assert await query(since=naive) == ids[3:]
    assert await query(since="2000-01-01T00:00:00Z", until="2001-01-01T00:00:00Z") == []

    pages = await _walk_query(client, {"limit": 3})
    assert pages == [ids[:3], ids[3:6], ids[6:]]
    assert await _walk_query(client, {"limit": 7}) == [ids]
    assert await _walk_query(client, {"limit": 2, "session_id": "s1"}) == [
        [ids[0], ids[1]],
        [ids[3], ids[5]],
    ]
    assert await _walk_query(
        client, {"limit": 1, "call_id": three["id"], "decision": "accept"}
    ) == [[ids[6]]]
    default_page = (await client.get("/api/negotiations")).json()
    assert default_page["next_cursor"] is None and len(default_page["items"]) == 7
    assert set(default_page["items"][0]) == ROUND_KEYS


async def test_query_default_limit_is_100(client: Client, make_call: Make) -> None:
    calls = [await make_call() for _ in range(3)]
    for i in range(101):
        await offer_ok(client, calls[i % 3]["id"], 5000, f"s{i}")  # counters: calls stay open
    page = (await client.get("/api/negotiations")).json()
    assert len(page["items"]) == 100 and page["next_cursor"] is not None
    rest = (await client.get("/api/negotiations", params={"cursor": page["next_cursor"]})).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None


BAD_QUERY_PARAMS: list[dict[str, Any]] = [
    {"limit": 0},
    {"limit": 1001},
    {"limit": -3},
    {"limit": "many"},
    {"since": "yesterday"},
    {"until": "2026-13-45T00:00:00Z"},
    {"decision": "maybe"},
    {"call_id": "abc"},
    {"call_id": 0},
]


async def test_query_rejects_bad_parameters(client: Client) -> None:
    for params in BAD_QUERY_PARAMS:
        response = await client.get("/api/negotiations", params=params)
        assert response.status_code == 422, (params, response.text)
        assert_error(response, 422, "VALIDATION_ERROR")


def _cursor(kind: str, position: object) -> str:
    """A cursor in the service's format for a position the service never issues."""
    raw = json.dumps(["v1", kind, position]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_bad_limits_and_cursors_everywhere(client: Client, make_call: Make) -> None:
    call = await make_call()
    await offer_ok(client, call["id"], 1000, "s1")
    arrays = [f"/api/calls/{call['id']}/negotiations", "/api/negotiations/session/s1"]
    for url in [*arrays, "/api/negotiations", "/api/loads"]:
        for limit in (0, 1001):
            assert_error(await client.get(url, params={"limit": limit}), 422, "VALIDATION_ERROR")
        assert (await client.get(url, params={"limit": 1000})).status_code == 200
    for url in arrays:
        assert_error(await client.get(url, params={"after_id": -1}), 422, "VALIDATION_ERROR")
        assert_error(await client.get(url, params={"after_id": "x"}), 422, "VALIDATION_ERROR")
    page = (await client.get("/api/loads", params={"limit": 1})).json()
    forged = [_cursor("rounds", n) for n in (-5, 2**31, 10**30, 1.5, "7")]
    for cursor in ("not-a-cursor", "AAAA", "eyJ2MSI6MX0", "W10", "WyJ2MSIsInJvdW5kcyIsdHJ1ZV0"):
        response = await client.get("/api/negotiations", params={"cursor": cursor})
        assert_error(response, 422, "INVALID_CURSOR")
    for cursor in forged:
        response = await client.get("/api/negotiations", params={"cursor": cursor})
        assert_error(response, 422, "INVALID_CURSOR")
    nul = _cursor("loads", "LD\x00")
    assert_error(await client.get("/api/loads", params={"cursor": nul}), 422, "INVALID_CURSOR")
    # A cursor issued by another listing is not accepted either.
    assert page["next_cursor"] is None
    for i in range(2):
        await client.post("/api/loads", json={**LOAD, "load_id": f"LDX{i}"})
    loads_cursor = (await client.get("/api/loads", params={"limit": 1})).json()["next_cursor"]
    assert loads_cursor
    response = await client.get("/api/negotiations", params={"cursor": loads_cursor})
    assert_error(response, 422, "INVALID_CURSOR")
