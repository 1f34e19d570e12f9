"""The summary against independent, hand-written SQL over a random data set, on both databases."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import Connection, DateTime, bindparam, insert, text

from negotiation.db import Database
from negotiation.errors import ApiError
from negotiation.queries import rounds
from negotiation.recording import PolicySettings, record_round
from negotiation.schemas import CallCreate, LoadCreate
from negotiation.service import create_call, create_load
from negotiation.settings import Settings

START = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
LOADS = {"LD-X": ("1800.00", None), "LD-Y": ("2450.50", "2700.00"), "LD-Z": ("999.99", None)}
CARRIERS = ("MC1", "MC2", "MC3", "MC4")
SESSIONS = tuple(f"sess_sql_{i}" for i in range(8))


async def _random_data(settings: Settings, seed: int) -> None:
    rng = random.Random(seed)
    db = Database(settings)
    # Sessions span days of this clock: keep them from expiring.
    cfg = PolicySettings.from_settings(settings.model_copy(update={"session_ttl_seconds": 10**8}))
    try:
        for load_id, (rate, max_rate) in LOADS.items():
            await db.write(
                create_load,
                LoadCreate(
                    load_id=load_id,
                    origin="A",
                    destination="B",
                    pickup_datetime=START,
                    delivery_datetime=START,
                    equipment_type="Reefer",
                    loadboard_rate=Decimal(rate),
                    max_rate=Decimal(max_rate) if max_rate else None,
                ),
                START,
            )
        clock = START
        for _ in range(30):
            load_id = rng.choice(list(LOADS))
            call = await db.write(
                create_call,
                CallCreate(load_id=load_id, carrier_mc_number=rng.choice(CARRIERS)),
                clock,
            )
            base = Decimal(LOADS[load_id][0])
            for session in {rng.choice((None, *SESSIONS)) for _ in range(rng.randint(1, 2))}:
                for _ in range(rng.randint(1, 4)):  # a 4th offer meets a closed negotiation
                    clock += dt.timedelta(minutes=rng.randint(1, 600))
                    offer = (base * Decimal(rng.uniform(0.9, 1.5))).quantize(Decimal("0.01"))
                    try:
                        await db.write(
                            record_round,
                            call_id=call.id,
                            offer=offer,
                            session_id=session,
                            notes=None,
                            cfg=cfg,
                            now=clock,
                        )
                    except ApiError:
                        break  # the negotiation closed
            if rng.random() < 0.3:
                await db.write(_legacy_rows, call.id, rng, clock)
    finally:
        await db.dispose()


def _legacy_rows(conn: Connection, call_id: int, rng: random.Random, at: dt.datetime) -> None:
    conn.execute(
        insert(rounds),
        [
            {
                "call_id": call_id,
                "session_id": None,
                "round_number": rng.randint(1, 3),
                "carrier_offer": rng.choice((None, Decimal("1234.56"))),
                "decision": None,
                "counter_offer": None,
                "system_response": "legacy free text",
                "timestamp": at - dt.timedelta(seconds=i),
            }
            for i in range(rng.randint(1, 2))
        ],
    )


FROM = (
    "negotiations n LEFT JOIN calls c ON c.id = n.call_id "
    "LEFT JOIN loads l ON l.load_id = c.load_id"
)


def _where(filters: dict[str, Any]) -> str:
    parts = ["1 = 1"]
    if "since" in filters:
        parts.append("n.timestamp >= :since")
    if "until" in filters:
        parts.append("n.timestamp < :until")
    if "load_id" in filters:
        parts.append("c.load_id = :load_id")
    if "carrier_mc_number" in filters:
        parts.append("c.carrier_mc_number = :carrier_mc_number")
    return " AND ".join(parts)


def _independent(conn: Connection, filters: dict[str, Any]) -> dict[str, Any]:
    params = dict(filters)
    for key in ("since", "until"):
        if key in params:
            params[key] = params[key].astimezone(dt.UTC).replace(tzinfo=None)
    where = _where(filters)

    def run(sql: str) -> list[Any]:
        statement = text(sql)
        for key in ("since", "until"):
            if key in params:
                statement = statement.bindparams(bindparam(key, type_=DateTime()))
        return list(conn.execute(statement, params))

    totals = run(
        f"SELECT COUNT(*), COUNT(DISTINCT n.session_id), COUNT(DISTINCT n.call_id), "
        f"COUNT(n.carrier_offer) FROM {FROM} WHERE {where}"
    )[0]
    outcomes = dict(
        run(
            "SELECT outcome, COUNT(*) FROM (SELECT CASE "
            "WHEN MAX(CASE WHEN n.decision = 'accept' THEN 1 ELSE 0 END) = 1 THEN 'accepted' "
            "WHEN MAX(CASE WHEN n.decision = 'reject' THEN 1 ELSE 0 END) = 1 THEN 'rejected' "
            "WHEN COUNT(n.decision) > 0 THEN 'open' ELSE 'undecided' END AS outcome "
            f"FROM {FROM} WHERE {where} GROUP BY n.call_id, n.session_id) per GROUP BY outcome"
        )
    )
    first = run(
        "SELECT SUM(CASE WHEN n.decision = 'accept' THEN 1 ELSE 0 END), COUNT(*) "
        f"FROM {FROM} WHERE {where} AND n.round_number = 1 AND n.decision IS NOT NULL"
    )[0]
    agreed = run(
        "SELECT COUNT(*), AVG(n.round_number), AVG(n.carrier_offer), AVG(l.loadboard_rate), "
        "AVG(CASE WHEN l.max_rate IS NULL THEN l.loadboard_rate * 1.1 ELSE l.max_rate END) "
        f"FROM {FROM} WHERE {where} AND n.decision = 'accept'"
    )[0]
    by_round = run(
        f"SELECT n.round_number, COALESCE(n.decision, 'none'), COUNT(*) FROM {FROM} "
        f"WHERE {where} GROUP BY n.round_number, n.decision"
    )
    calls = dict(
        run(
            "SELECT COALESCE(c.outcome, 'unknown'), COUNT(*) FROM calls c WHERE c.id IN "
            f"(SELECT n.call_id FROM {FROM} WHERE {where}) GROUP BY c.outcome"
        )
    )
    return {
        "totals": tuple(int(v) for v in totals),
        "outcomes": {k: int(v) for k, v in outcomes.items()},
        "first": (int(first[0] or 0), int(first[1])),
        "agreed": agreed,
        "by_round": {(int(r), d): int(n) for r, d, n in by_round},
        "calls": {k: int(v) for k, v in calls.items()},
    }


def _close(ours: float | None, theirs: Any, tolerance: float) -> bool:
    if theirs is None:
        return ours is None
    # A hair over the tolerance: a half-cent average rounds half-up, and floats are inexact.
    return ours is not None and abs(ours - float(theirs)) <= tolerance + 1e-9


FILTERS: list[dict[str, Any]] = [
    {},
    {"since": START + dt.timedelta(days=3)},
    {"until": START + dt.timedelta(days=4)},
    {"since": START + dt.timedelta(days=1), "until": START + dt.timedelta(days=5)},
    {"load_id": "LD-Y"},
    {"carrier_mc_number": "MC2"},
    {"load_id": "LD-X", "carrier_mc_number": "MC1", "since": START + dt.timedelta(days=1)},
]


@pytest.mark.parametrize("seed", [7, 2026])
async def test_summary_matches_independent_sql(
    client: AsyncTestClient[Litestar], settings: Settings, seed: int
) -> None:
    await _random_data(settings, seed)
    db = Database(settings)
    try:
        for filters in FILTERS:
            query = {
                k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in filters.items()
            }
            r = await client.get("/api/reports/summary", params=query)
            assert r.status_code == 200, r.text
            ours = r.json()
            theirs = await db.read(_independent, filters)
            if not filters:  # the data set exercises every kind of round
                assert all(ours["decisions"].values()), ours["decisions"]
                assert ours["rounds_without_offer"] > 0
            assert (ours["rounds"], ours["sessions"], ours["calls"], ours["rounds_with_offer"]) == (
                theirs["totals"]
            ), filters
            assert {k: v for k, v in ours["outcomes"]["negotiations"].items() if v} == theirs[
                "outcomes"
            ]
            assert ours["negotiations"] == sum(theirs["outcomes"].values())
            accepted, accepted_first = theirs["outcomes"].get("accepted", 0), theirs["first"]
            decided = ours["negotiations"] - theirs["outcomes"].get("undecided", 0)
            assert _close(ours["acceptance_rate"], accepted / decided if decided else None, 5e-5)
            expected_first = accepted_first[0] / accepted_first[1] if accepted_first[1] else None
            assert _close(ours["first_offer_acceptance_rate"], expected_first, 5e-5)
            count, avg_round, avg_agreed, avg_loadboard, avg_ceiling = theirs["agreed"]
            rates = ours["agreed_rates"]
            assert rates["count"] == count
            assert _close(ours["average_rounds_to_agreement"], avg_round, 0.005)
            assert _close(rates["average_agreed_rate"], avg_agreed, 0.005)
            assert _close(rates["average_loadboard_rate"], avg_loadboard, 0.005)
            # The SQL here does not round the marked-up ceiling down to the cent.
            assert _close(rates["average_ceiling"], avg_ceiling, 0.01)
            by_round = {
                (row["round_number"], kind): row[kind]
                for row in ours["decisions_by_round"]
                for kind in ("accept", "counter", "reject", "none")
                if row[kind]
            }
            assert by_round == theirs["by_round"]
            assert ours["outcomes"]["calls"] == theirs["calls"]
    finally:
        await db.dispose()
