"""Reports by pricing profile, against figures computed by hand, on SQLite and PostgreSQL.

| negotiation | profile (version)               | load: L, C   | rounds                          |
|-------------|---------------------------------|--------------|---------------------------------|
| A (session) | firm v1: linear, 2 rounds, 5 %  | L1 2000, 2100 | 2040 accept (limit 2050)       |
| B (session) | firm v1                         | L3 2000, 2100 | 2300 counter 2050; 2200 reject |
| C (session) | generous v1: early, 4, 20 %     | L2 1000, 1100 | 1200 counter 1043; 1070 accept |
| D (none)    | standard v1: linear, 3, 10 %    | L4 2000, 2200 | 1990 accept                    |
| E (none)    | legacy (no profile)             | L5 2000       | one round without a decision   |
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import Connection, insert

from negotiation.queries import rounds
from negotiation.settings import Settings
from tests.clirun import cli_env, run_cli
from tests.helpers import db_write, offer_ok

Client = AsyncTestClient[Litestar]
Make = Callable[..., Awaitable[dict[str, Any]]]


async def _session(client: Client, profile: str) -> str:
    response = await client.post("/api/sessions", json={"profile": profile})
    assert response.status_code == 201, response.text
    session_id: str = response.json()["session_id"]
    return session_id


def _legacy_round(conn: Connection, call_id: int) -> None:
    conn.execute(
        insert(rounds).values(
            call_id=call_id,
            round_number=1,
            carrier_offer=Decimal("2250.00"),
            system_response="free text from the old agent",
            timestamp=dt.datetime(2025, 12, 1, tzinfo=dt.UTC),
        )
    )


@pytest.fixture
async def data(client: Client, make_load: Make, make_call: Make, settings: Settings) -> str:
    """Writes the data set; the id of session C."""
    for body in (
        {"name": "firm", "max_rounds": 2, "max_markup": 0.05, "concession": "linear"},
        {"name": "generous", "max_rounds": 4, "max_markup": 0.2, "concession": "early"},
    ):
        assert (await client.post("/api/profiles", json=body)).status_code == 201
    # One load per negotiation: an accept books its load, and a booked load takes no other
    # call's rounds.
    for load in ("L1", "L3", "L4", "L5"):
        await make_load(load, loadboard_rate=2000)
    await make_load("L2", loadboard_rate=1000, max_rate=1100)
    a, b, c, d, e = [await make_call(load) for load in ("L1", "L3", "L2", "L4", "L5")]
    assert (await offer_ok(client, a["id"], 2040, await _session(client, "firm")))["accepted"]
    session_b = await _session(client, "firm")
    assert (await offer_ok(client, b["id"], 2300, session_b))["counter_offer"] == 2050.0
    assert (await offer_ok(client, b["id"], 2200, session_b))["decision"] == "reject"
    session_c = await _session(client, "generous")
    assert (await offer_ok(client, c["id"], 1200, session_c))["counter_offer"] == 1043.0
    assert (await offer_ok(client, c["id"], 1070, session_c))["accepted"]
    assert (await offer_ok(client, d["id"], 1990))["accepted"]
    await db_write(settings, _legacy_round, e["id"])
    return session_c


def _agreed(count: int, agreed: float, loadboard: float, ceiling: float) -> dict[str, Any]:
    over, kept = agreed - loadboard, ceiling - agreed
    return {
        "count": count,
        "average_agreed_rate": agreed,
        "average_loadboard_rate": loadboard,
        "average_ceiling": ceiling,
        "average_over_loadboard": over,
        "over_loadboard_percent": round(over * 100 / loadboard, 2),
        "average_margin_kept": kept,
        "margin_kept_percent": round(kept * 100 / (ceiling - loadboard), 2),
    }


NO_AGREEMENT = dict.fromkeys(
    (
        "average_agreed_rate",
        "average_loadboard_rate",
        "average_ceiling",
        "average_over_loadboard",
        "over_loadboard_percent",
        "average_margin_kept",
        "margin_kept_percent",
    )
) | {"count": 0}
BY_PROFILE = [
    {
        "profile": "firm",
        "negotiations": 2,
        "rounds": 3,
        "acceptance_rate": 0.5,
        "average_rounds_to_agreement": 1.0,
        # Against the profile's own ceiling: 2000 x 1.05 = 2100 (kept 60 of 100: 60 %).
        "agreed_rates": _agreed(1, 2040.0, 2000.0, 2100.0),
    },
    {
        "profile": "generous",
        "negotiations": 1,
        "rounds": 2,
        "acceptance_rate": 1.0,
        "average_rounds_to_agreement": 2.0,
        "agreed_rates": _agreed(1, 1070.0, 1000.0, 1100.0),
    },
    {
        "profile": "legacy",
        "negotiations": 1,
        "rounds": 1,
        "acceptance_rate": None,
        "average_rounds_to_agreement": None,
        "agreed_rates": NO_AGREEMENT,
    },
    {
        "profile": "standard",
        "negotiations": 1,
        "rounds": 1,
        "acceptance_rate": 1.0,
        "average_rounds_to_agreement": 1.0,
        # 1990 is below the loadboard rate: more than the whole range kept (210 of 200).
        "agreed_rates": _agreed(1, 1990.0, 2000.0, 2200.0),
    },
]


async def test_summary_by_profile(client: Client, data: str) -> None:
    body = (await client.get("/api/reports/summary")).json()
    assert body["by_profile"] == BY_PROFILE
    assert body["negotiations"] == 5 and body["agreed_rates"]["count"] == 3
    # The totals' ceiling is each agreement's own: (2100 + 1100 + 2200) / 3.
    assert body["agreed_rates"]["average_ceiling"] == 1800.0
    only_l2 = (await client.get("/api/reports/summary", params={"load_id": "L2"})).json()
    assert [p["profile"] for p in only_l2["by_profile"]] == ["generous"]


async def test_session_report_shows_the_profile_and_limits(client: Client, data: str) -> None:
    body = (await client.get(f"/api/reports/sessions/{data}")).json()
    assert [
        (r["profile"], r["profile_version"], r["round_limit"], r["ceiling"]) for r in body["rounds"]
    ] == [("generous", 1, 1043.75, 1100.0), ("generous", 1, 1075.0, 1100.0)]
    (negotiation,) = body["negotiations"]
    assert (negotiation["profile"], negotiation["profile_version"]) == ("generous", 1)
    assert body["vs_ceiling"] == {"reference": 1100.0, "amount": -30.0, "percent": -2.73}


async def test_cli_summary_by_profile(data: str, database_url: str) -> None:
    env = cli_env(database_url)
    md = run_cli("report", "summary", env=env)
    assert md.code == 0, md.stderr
    assert "## By pricing profile" in md.stdout
    assert "| firm | 2 | 3 | 50.00% | 1.00 | $2,040.00 | +$40.00 | $60.00 |" in md.stdout
    assert "| legacy | 1 | 1 | — | — | — | — | — |" in md.stdout
    page = run_cli("report", "summary", "--format", "html", env=env)
    assert page.code == 0, page.stderr
    table = page.stdout.split('<table id="by-profile">')[1].split("</table>")[0]
    assert [row.split("</th>")[0] for row in table.split('<th scope="row">')[1:]] == [
        "firm",
        "generous",
        "legacy",
        "standard",
    ]
    csv = run_cli("report", "summary", "--format", "csv", env=env)
    assert "profile_generous,acceptance_rate,1.0000\n" in csv.stdout
