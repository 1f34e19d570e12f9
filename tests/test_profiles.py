"""Pricing profiles through the API, on SQLite and PostgreSQL: the routes, versions, which
profile decides a round, and the numbers every round records."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from negotiation import recording
from negotiation.settings import Settings
from tests import dbutil
from tests.helpers import (
    assert_error,
    client_for,
    concurrent_client,
    negotiate,
    offer_ok,
    with_settings,
)

Client = AsyncTestClient[Litestar]
Make = Callable[..., Awaitable[dict[str, Any]]]
PROFILE_KEYS = {
    "name",
    "description",
    "max_rounds",
    "max_markup",
    "concession",
    "version",
    "created_at",
}


@pytest.fixture(params=["unlocked", "locked"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which PostgreSQL recording path records the rounds: the guarded statements without
    locks (as usual), or the locked transaction (after a competing request); both must store
    the same round. SQLite always takes the locked path's statements."""
    if request.param == "locked":
        monkeypatch.setattr(recording, "_record_unlocked", lambda *_: None)
    return str(request.param)


async def create_profile(client: Client, name: str, **fields: Any) -> dict[str, Any]:
    body = {"name": name, "max_rounds": 3, "max_markup": 0.1, "concession": "linear", **fields}
    response = await client.post("/api/profiles", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_standard_is_the_settings_and_always_listed(client: Client) -> None:
    response = await client.get("/api/profiles/standard")
    assert response.status_code == 200, response.text
    standard = response.json()
    assert set(standard) == PROFILE_KEYS
    assert (standard["version"], standard["max_rounds"], standard["max_markup"]) == (1, 3, 0.1)
    assert standard["concession"] == "linear"
    listed = (await client.get("/api/profiles")).json()["items"]
    assert [p["name"] for p in listed] == ["standard"]


async def test_create_read_update_and_versions(client: Client) -> None:
    created = await create_profile(
        client, "reefer", description="Hard-to-cover reefer", max_rounds=4, max_markup=0.12
    )
    assert created["version"] == 1 and created["description"] == "Hard-to-cover reefer"
    assert (created["max_rounds"], created["max_markup"], created["concession"]) == (
        4,
        0.12,
        "linear",
    )

    response = await client.put(
        "/api/profiles/reefer", json={"max_rounds": 2, "max_markup": "0.05", "concession": "late"}
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["version"], updated["max_rounds"], updated["max_markup"]) == (2, 2, 0.05)
    assert updated["concession"] == "late" and updated["description"] is None

    current = (await client.get("/api/profiles/reefer")).json()
    assert current == updated
    versions = (await client.get("/api/profiles/reefer/versions")).json()["items"]
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[0] == created  # a version never changes
    listed = (await client.get("/api/profiles")).json()["items"]
    assert [(p["name"], p["version"]) for p in listed] == [("reefer", 2), ("standard", 1)]


async def test_profile_errors(client: Client) -> None:
    await create_profile(client, "firm")
    duplicate = await client.post(
        "/api/profiles", json={"name": "firm", "max_rounds": 2, "max_markup": 0.05}
    )
    assert_error(duplicate, 409, "PROFILE_EXISTS")
    standard = await client.post(
        "/api/profiles", json={"name": "standard", "max_rounds": 2, "max_markup": 0.05}
    )
    assert_error(standard, 409, "PROFILE_EXISTS")
    for path in ("/api/profiles/nope", "/api/profiles/nope/versions"):
        assert_error(await client.get(path), 404, "PROFILE_NOT_FOUND")
    unknown = await client.put("/api/profiles/nope", json={"max_rounds": 2, "max_markup": 0.1})
    assert_error(unknown, 404, "PROFILE_NOT_FOUND")
    settings_owned = await client.put(
        "/api/profiles/standard", json={"max_rounds": 2, "max_markup": 0.1}
    )
    assert (
        "NEGOTIATION_MAX_ROUNDS"
        in assert_error(settings_owned, 422, "VALIDATION_ERROR")["error"]["message"]
    )


async def test_out_of_range_values_are_refused_plainly(client: Client) -> None:
    base = {"name": "x", "max_rounds": 3, "max_markup": 0.1, "concession": "linear"}
    for change, field in (
        ({"max_rounds": 0}, "max_rounds"),
        ({"max_rounds": 11}, "max_rounds"),
        ({"max_markup": -0.01}, "max_markup"),
        ({"max_markup": 1.5}, "max_markup"),
        ({"concession": "fast"}, "concession"),
        ({"name": "legacy"}, "name"),
        ({"name": "a b"}, "name"),
    ):
        response = await client.post("/api/profiles", json=base | change)
        body = assert_error(response, 422, "VALIDATION_ERROR")
        assert field in body["error"]["message"], body
    body = assert_error(
        await client.post("/api/profiles", json=base | {"concession": "fast"}),
        422,
        "VALIDATION_ERROR",
    )
    assert "linear" in body["error"]["message"] and "late" in body["error"]["message"]
    assert (await client.get("/api/profiles/x")).status_code == 404  # nothing half-written


async def test_changed_settings_record_a_new_standard_version_at_start(
    client: Client, settings: Settings
) -> None:
    async with client_for(with_settings(settings, max_rounds=5, max_markup="0.2")) as other:
        standard = (await other.get("/api/profiles/standard")).json()
        assert (standard["version"], standard["max_rounds"], standard["max_markup"]) == (2, 5, 0.2)
    async with client_for(with_settings(settings, max_rounds=5, max_markup="0.20")) as same:
        assert (await same.get("/api/profiles/standard")).json()["version"] == 2
    versions = (await client.get("/api/profiles/standard/versions")).json()["items"]
    assert [(v["version"], v["max_rounds"]) for v in versions] == [(1, 3), (2, 5)]


async def test_unknown_profile_names_on_sessions_and_loads(client: Client, make_load: Make) -> None:
    session = await client.post("/api/sessions", json={"profile": "nope"})
    assert "nope" in assert_error(session, 422, "PROFILE_NOT_FOUND")["error"]["message"]
    load = await client.post(
        "/api/loads",
        json={
            "load_id": "LDX",
            "origin": "A",
            "destination": "B",
            "pickup_datetime": "2026-12-01T08:00:00Z",
            "delivery_datetime": "2026-12-02T08:00:00Z",
            "equipment_type": "Van",
            "loadboard_rate": 1000,
            "profile": "nope",
        },
    )
    assert_error(load, 422, "PROFILE_NOT_FOUND")
    assert (await client.get("/api/loads/LDX")).status_code == 404
    invalid = await client.post("/api/sessions", json={"profile": "legacy"})
    assert_error(invalid, 422, "VALIDATION_ERROR")


async def test_precedence_session_then_load_then_standard(
    client: Client, make_load: Make, make_call: Make, path: str
) -> None:
    await create_profile(client, "by_load", max_rounds=4)
    await create_profile(client, "by_session", max_rounds=2)
    load = await make_load("LDP", profile="by_load")
    assert load["profile"] == "by_load"
    call = await make_call("LDP")
    session = (await client.post("/api/sessions", json={"profile": "by_session"})).json()
    assert session["profile"] == "by_session"
    other = (await client.post("/api/sessions", json={})).json()
    assert other["profile"] is None

    in_session = await offer_ok(client, call["id"], 2500, session["session_id"])
    assert (in_session["profile"], in_session["rounds_remaining"]) == ("by_session", 1)
    by_load = await offer_ok(client, call["id"], 2500, other["session_id"])
    assert (by_load["profile"], by_load["rounds_remaining"]) == ("by_load", 3)
    no_session = await offer_ok(client, call["id"], 2500)
    assert no_session["profile"] == "by_load"
    plain = await make_call()  # a load without a profile
    standard = await offer_ok(client, plain["id"], 2500)
    assert (standard["profile"], standard["profile_version"]) == ("standard", 1)
    assert standard["rounds_remaining"] == 2


async def test_a_round_records_standard_when_no_start_has(
    client: Client, database_url: str, make_call: Make, path: str
) -> None:
    """A database whose ``standard`` was never recorded (its rows gone since this start): the
    first round records it from the settings and is decided by it, in a session or not."""
    call = await make_call()
    await dbutil.execute(database_url, "DELETE FROM pricing_profiles")
    assert (await client.get("/api/profiles/standard")).status_code == 404
    in_session = await offer_ok(client, call["id"], 2500, "s-standard")
    assert (in_session["profile"], in_session["profile_version"]) == ("standard", 1)
    assert (in_session["decision"], in_session["rounds_remaining"]) == ("counter", 2)
    alone = await offer_ok(client, call["id"], 2500)
    assert (alone["profile"], alone["profile_version"]) == ("standard", 1)
    listed = (await client.get("/api/profiles")).json()["items"]
    assert [(p["name"], p["version"]) for p in listed] == [("standard", 1)]


async def test_a_negotiation_keeps_its_version_after_a_put(
    client: Client, make_call: Make, path: str
) -> None:
    await create_profile(client, "tight", max_rounds=2, max_markup=0.05)
    call = await make_call()  # loadboard 2000: v1's ceiling is 2100
    session = (await client.post("/api/sessions", json={"profile": "tight"})).json()["session_id"]
    first = await offer_ok(client, call["id"], 2500, session)
    assert (first["profile_version"], first["ceiling"], first["round_limit"]) == (1, 2100.0, 2050.0)
    assert first["counter_offer"] == 2050.0 and first["rounds_remaining"] == 1

    response = await client.put(
        "/api/profiles/tight", json={"max_rounds": 5, "max_markup": 0.3, "concession": "early"}
    )
    assert response.json()["version"] == 2
    second = await offer_ok(client, call["id"], 2400, session)
    # Still version 1: two rounds, ceiling 2100, so the second round is the last: reject.
    assert (second["profile_version"], second["round_limit"], second["ceiling"]) == (
        1,
        2100.0,
        2100.0,
    )
    assert second["decision"] == "reject" and second["is_final"]
    closed = await negotiate(client, call["id"], 2000, session)
    assert_error(closed, 409, "NEGOTIATION_CLOSED")

    # A new negotiation (a new call: the rejected one has ended) starts on version 2: early,
    # five rounds, ceiling 2600.
    fresh = (await client.post("/api/sessions", json={"profile": "tight"})).json()["session_id"]
    started = await offer_ok(client, (await make_call())["id"], 3000, fresh)
    # Round 1 of 5, early: 2000 + 600 * 1 * 9 / 25 = 2216.
    assert (started["profile_version"], started["ceiling"], started["round_limit"]) == (
        2,
        2600.0,
        2216.0,
    )
    assert started["counter_offer"] == 2216.0 and started["rounds_remaining"] == 4
    listed = (await client.get(f"/api/negotiations/session/{session}")).json()
    assert [(r["profile_version"], r["rounds_remaining"]) for r in listed] == [(1, 1), (1, 0)]


async def test_each_concession_moves_the_limit_as_documented(
    client: Client, make_call: Make, path: str
) -> None:
    # Loadboard 2000, markup 0.2: ceiling 2400, range 400, four rounds.
    expected = {
        "linear": [2100.0, 2200.0, 2300.0],  # 400 * r / 4
        "early": [2175.0, 2300.0, 2375.0],  # 400 * r (8 - r) / 16
        "late": [2025.0, 2100.0, 2225.0],  # 400 * r^2 / 16
    }
    for concession, limits in expected.items():
        await create_profile(
            client, concession, max_rounds=4, max_markup=0.2, concession=concession
        )
        call = await make_call()
        session = (await client.post("/api/sessions", json={"profile": concession})).json()
        sid = session["session_id"]
        rounds = [await offer_ok(client, call["id"], 2500, sid) for _ in range(3)]
        assert [r["round_limit"] for r in rounds] == limits, concession
        assert [r["counter_offer"] for r in rounds] == limits, concession
        last = await offer_ok(client, call["id"], 2400, sid)
        assert (last["decision"], last["round_limit"], last["ceiling"]) == (
            "accept",
            2400.0,
            2400.0,
        )


async def test_concurrent_updates_each_get_their_own_version(app: Litestar) -> None:
    async with concurrent_client(app) as (client, gauge):
        body = {"name": "busy", "max_rounds": 2, "max_markup": 0.1}
        assert (await client.post("/api/profiles", json=body)).status_code == 201
        responses = await asyncio.gather(
            *(
                client.put("/api/profiles/busy", json={"max_rounds": n, "max_markup": 0.1})
                for n in range(3, 9)
            )
        )
        assert [r.status_code for r in responses] == [200] * 6
        # Every update got its own version, with its own body.
        got = sorted((r.json()["version"], r.json()["max_rounds"]) for r in responses)
        assert [v for v, _ in got] == [2, 3, 4, 5, 6, 7]
        versions = (await client.get("/api/profiles/busy/versions")).json()["items"]
        stored = {(v["version"], v["max_rounds"]) for v in versions}
        assert stored == {(1, 2), *got}
        assert gauge.peak > 1


async def test_a_resumed_negotiation_keeps_its_version_on_the_new_call(
    client: Client, make_load: Make, make_call: Make, path: str
) -> None:
    body = {"name": "resume", "max_rounds": 3, "max_markup": 0.1}
    assert (await client.post("/api/profiles", json=body)).status_code == 201
    await make_load("LDR")  # loadboard 2000: v1's ceiling 2200
    session = (await client.post("/api/sessions", json={"profile": "resume"})).json()
    sid = session["session_id"]
    first = await offer_ok(client, (await make_call("LDR"))["id"], 2500, sid)
    assert (first["profile_version"], first["round_limit"]) == (1, 2066.66)
    changed = {"max_rounds": 5, "max_markup": 0.3, "concession": "early"}
    assert (await client.put("/api/profiles/resume", json=changed)).json()["version"] == 2
    # The call dropped; the carrier calls back on a new call about the same load.
    resumed = await offer_ok(client, (await make_call("LDR"))["id"], 2500, sid)
    assert resumed["round_number"] == 2
    assert (resumed["profile_version"], resumed["ceiling"]) == (1, 2200.0)
    assert (resumed["round_limit"], resumed["rounds_remaining"]) == (2133.33, 1)
