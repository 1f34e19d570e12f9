"""Report routes against figures computed by hand for the fixed data set in ``reportdata``."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from negotiation.settings import Settings
from tests import reportdata
from tests.reportdata import S1, S2, S3


@pytest.fixture
async def data(settings: Settings) -> None:
    await reportdata.build(settings)


def _essential(rnd: dict[str, Any]) -> tuple[Any, ...]:
    return (
        rnd["round_number"],
        rnd["carrier_offer"],
        rnd["decision"],
        rnd["counter_offer"],
        rnd["agreed_rate"],
        rnd["concession"],
        rnd["seconds_since_previous"],
    )


async def test_session_report_figures(client: AsyncTestClient[Litestar], data: None) -> None:
    r = await client.get(f"/api/reports/sessions/{S1}")
    assert r.status_code == 200, r.text
    assert r.headers["X-Session-ID"] == S1
    body = r.json()
    assert body["session_id"] == S1
    assert body["session"]["status"] == "expired"  # TTL 3600 s ran out long ago
    assert body["outcome"] == "accepted"
    assert body["agreed_rate"] == 2190.0
    assert body["vs_loadboard"] == {"reference": 2000.0, "amount": 190.0, "percent": 9.5}
    assert body["vs_ceiling"] == {"reference": 2200.0, "amount": -10.0, "percent": -0.45}
    assert body["started_at"] == "2026-03-01T10:00:00Z"
    assert body["ended_at"] == "2026-03-01T10:02:30Z"
    assert body["duration_seconds"] == 150.0
    assert body["round_count"] == 5
    assert body["rounds_with_offer"] == 4
    assert body["rounds_without_offer"] == 1
    assert body["decisions"] == {"accept": 1, "counter": 2, "reject": 0, "none": 2}
    # Every round in order: offer, decision, counter, agreed, concession, seconds since previous.
    assert [_essential(x) for x in body["rounds"]] == [
        (1, 2500.0, "counter", 2066.0, None, 66.0, None),
        (2, 2150.0, "counter", 2133.0, None, 67.0, 40.0),
        (3, 2190.0, "accept", None, 2190.0, 57.0, 60.0),
        (1, None, None, None, None, None, 30.0),
        (2, 2300.0, None, None, None, None, 20.0),
    ]
    first = body["rounds"][0]
    assert first["system_response"] == "We can do $2,066.00 on this load."
    assert first["notes"] == reportdata.NOTE
    assert first["timestamp"] == "2026-03-01T10:00:00Z"
    assert (first["loadboard_rate"], first["ceiling"], first["load_id"]) == (2000.0, 2200.0, "LD-A")
    legacy = body["rounds"][3]
    assert legacy["system_response"] == "Agent: what rate would you need for this one?"

    negotiations = {n["call_id"]: n for n in body["negotiations"]}
    accepted, undecided = negotiations.values()
    assert accepted["outcome"] == "accepted"
    assert (accepted["rounds"], accepted["opening_rate"], accepted["total_concession"]) == (
        3,
        2000.0,
        190.0,
    )
    assert undecided["outcome"] == "undecided"
    assert (undecided["rounds"], undecided["agreed_rate"], undecided["opening_rate"]) == (
        2,
        None,
        None,
    )
    assert [(c["carrier_mc_number"], c["outcome"]) for c in body["calls"]] == [
        ("MC100", "accepted"),
        ("MC300", None),
    ]
    load = body["calls"][0]["load"]
    assert (load["load_id"], load["loadboard_rate"], load["max_rate"], load["ceiling"]) == (
        "LD-A",
        2000.0,
        None,
        2200.0,
    )


async def test_session_report_outcomes(client: AsyncTestClient[Litestar], data: None) -> None:
    s2 = (await client.get(f"/api/reports/sessions/{S2}")).json()
    assert (s2["outcome"], s2["agreed_rate"]) == ("accepted", 1450.0)
    # Below the loadboard rate: a negative premium; ceiling is max_rate.
    assert s2["vs_loadboard"] == {"reference": 1500.0, "amount": -50.0, "percent": -3.33}
    assert s2["vs_ceiling"] == {"reference": 1600.0, "amount": -150.0, "percent": -9.38}
    assert s2["duration_seconds"] == 0.0
    s3 = (await client.get(f"/api/reports/sessions/{S3}")).json()
    assert (s3["outcome"], s3["agreed_rate"], s3["vs_loadboard"]) == ("rejected", None, None)
    assert [x["concession"] for x in s3["rounds"]] == [66.0, 67.0, None]


async def test_session_report_errors(client: AsyncTestClient[Litestar], data: None) -> None:
    r = await client.get("/api/reports/sessions/sess_never_seen")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "SESSION_NOT_FOUND"
    assert r.json()["session_id"] == "sess_never_seen"
    r = await client.get("/api/reports/sessions/bad%20id")
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "INVALID_SESSION_ID"
    r = await client.get(f"/api/reports/sessions/{S1}", headers={"X-API-Key": "wrong"})
    assert r.status_code == 401


async def test_created_session_without_rounds(client: AsyncTestClient[Litestar]) -> None:
    created = await client.post(
        "/api/sessions",
        json={"session_id": "sess_empty", "client_id": "crm", "metadata": {"k": "v"}},
    )
    assert created.status_code == 201, created.text
    body = (await client.get("/api/reports/sessions/sess_empty")).json()
    assert body["outcome"] == "no_rounds"
    assert body["session"]["status"] == "active"
    assert body["session"]["metadata"] == {"k": "v"}
    assert (body["round_count"], body["rounds"], body["duration_seconds"]) == (0, [], None)


async def test_summary_figures(client: AsyncTestClient[Litestar], data: None) -> None:
    r = await client.get("/api/reports/summary")
    assert r.status_code == 200, r.text
    body = r.json()
    assert {k: body[k] for k in ("sessions", "calls", "negotiations", "rounds")} == {
        "sessions": 3,
        "calls": 4,
        "negotiations": 6,
        "rounds": 12,
    }
    assert (body["rounds_with_offer"], body["rounds_without_offer"]) == (10, 2)
    assert body["decisions"] == {"accept": 2, "counter": 5, "reject": 1, "none": 4}
    # 2 accepted of the 4 negotiations that had a decided round (2 legacy-only ones excluded).
    assert body["acceptance_rate"] == 0.5
    assert body["first_offer_acceptance_rate"] == 0.25
    assert body["average_rounds_to_agreement"] == 2.0
    assert body["agreed_rates"] == {
        "count": 2,
        "average_agreed_rate": 1820.0,
        "average_loadboard_rate": 1750.0,
        "average_ceiling": 1900.0,
        "average_over_loadboard": 70.0,
        "over_loadboard_percent": 4.0,
        "average_margin_kept": 80.0,
        "margin_kept_percent": 53.33,
    }
    assert body["decisions_by_round"] == [
        {"round_number": 1, "total": 7, "accept": 1, "counter": 3, "reject": 0, "none": 3},
        {"round_number": 2, "total": 3, "accept": 0, "counter": 2, "reject": 0, "none": 1},
        {"round_number": 3, "total": 2, "accept": 1, "counter": 0, "reject": 1, "none": 0},
    ]
    assert body["outcomes"] == {
        "negotiations": {"accepted": 2, "rejected": 1, "open": 1, "undecided": 2},
        "calls": {"accepted": 2, "rejected": 1, "unknown": 1},
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"load_id": "LD-B"}, (1, 1, 2, 2, 0.5, 0.5)),
        ({"carrier_mc_number": "MC200"}, (2, 2, 3, 5, 0.3333, 0.3333)),
        ({"since": "2026-03-02T00:00:00Z"}, (2, 2, 3, 5, 0.3333, 0.3333)),
        (
            {"since": "2026-03-01T00:00:00Z", "until": "2026-03-02T00:00:00Z"},
            (1, 2, 2, 5, 1.0, 0.0),
        ),
        ({"until": "2026-01-01T00:00:00+00:00"}, (0, 1, 1, 2, None, None)),
        ({"load_id": "LD-A", "carrier_mc_number": "MC100"}, (1, 1, 1, 3, 1.0, 0.0)),
        ({"load_id": "nope"}, (0, 0, 0, 0, None, None)),
    ],
)
async def test_summary_filters(
    client: AsyncTestClient[Litestar],
    data: None,
    query: dict[str, str],
    expected: tuple[Any, ...],
) -> None:
    r = await client.get("/api/reports/summary", params=query)
    assert r.status_code == 200, r.text
    body = r.json()
    got = tuple(
        body[k]
        for k in (
            "sessions",
            "calls",
            "negotiations",
            "rounds",
            "acceptance_rate",
            "first_offer_acceptance_rate",
        )
    )
    assert got == expected


@pytest.mark.parametrize(
    "query",
    [
        {"since": "yesterday"},
        {"until": "2026-13-01"},
        {"since": "2026-03-02", "until": "2026-03-01"},
        {"load_id": ""},
        {"carrier_mc_number": "x" * 33},
    ],
)
async def test_summary_bad_query(client: AsyncTestClient[Litestar], query: dict[str, str]) -> None:
    r = await client.get("/api/reports/summary", params=query)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_reports_in_openapi(client: AsyncTestClient[Litestar]) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    operations = {
        op["operationId"]: path
        for path, item in schema["paths"].items()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    }
    assert operations["getSessionReport"] == "/api/reports/sessions/{session_id}"
    assert operations["getSummaryReport"] == "/api/reports/summary"
    assert not any(path.startswith("/ui") for path in schema["paths"])


async def test_session_ids_with_dots_and_colons(
    client: AsyncTestClient[Litestar], make_call: Any
) -> None:
    call = await make_call()
    session = "crm:user.42-A_b"
    r = await client.post(
        f"/api/calls/{call['id']}/negotiate", json={"carrier_offer": 1900, "session_id": session}
    )
    assert r.status_code == 201, r.text
    r = await client.get(f"/api/reports/sessions/{session}")
    assert r.status_code == 200, r.text
    assert (r.json()["session_id"], r.json()["outcome"]) == (session, "accepted")
    assert r.headers["X-Session-ID"] == session
    # Ids are case-sensitive.
    assert (await client.get("/api/reports/sessions/CRM:user.42-A_b")).status_code == 404
