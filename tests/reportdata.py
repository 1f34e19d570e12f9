"""A fixed data set for the report tests, written through the service's own write units with an
injected clock, plus legacy-style rows inserted directly (NULL decision, NULL offer).

Loads: LD-A (2000.00, ceiling 2200.00 from the 10 % markup), LD-B (1500.00, max_rate 1600.00).
S1's accept books LD-A, which is released (RELEASE_TIME) before S3 negotiates on it; S2's accept
books LD-B. Each accept ends its call, so call 2's default negotiation comes before S2's round.

| session | call (load, carrier) | rounds                                                    |
|---------|----------------------|-----------------------------------------------------------|
| S1      | 1 (LD-A, MC100)      | 2500 counter 2066; 2150 counter 2133; 2190 accept          |
| S1      | 4 (LD-A, MC300)      | legacy: no offer; 2300 — both without a decision           |
| (none)  | 2 (LD-B, MC200)      | 1700 counter 1533 (5 minutes before S2's round)            |
| S2      | 2 (LD-B, MC200)      | 1450 accept (at or below the loadboard rate)               |
| S3      | 3 (LD-A, MC200)      | 2600 counter 2066; 2500 counter 2133; 2400 reject          |
| (none)  | 4 (LD-A, MC300)      | legacy: no offer; 2250 — both without a decision           |
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, insert

from negotiation.booking import release_load
from negotiation.db import Database
from negotiation.queries import calls, rounds
from negotiation.recording import PolicySettings, record_round
from negotiation.schemas import CallCreate, LoadCreate
from negotiation.service import create_call, create_load
from negotiation.settings import Settings

S1, S2, S3 = "sess_report_1", "sess_report_2", "sess_report_3"
T0 = dt.datetime(2026, 3, 1, 10, 0, 0, tzinfo=dt.UTC)
T1 = dt.datetime(2026, 3, 2, 9, 0, 0, tzinfo=dt.UTC)
T2 = dt.datetime(2026, 3, 3, 15, 30, 0, tzinfo=dt.UTC)
LEGACY_TIME = dt.datetime(2025, 12, 1, 8, 0, 0, tzinfo=dt.UTC)
RELEASE_TIME = T0 + dt.timedelta(hours=1)
NOTE = "<script>alert('x')</script> | carrier said so"


def _load(load_id: str, rate: str, max_rate: str | None = None) -> LoadCreate:
    return LoadCreate(
        load_id=load_id,
        origin="Chicago, IL",
        destination="Dallas, TX",
        pickup_datetime=T0,
        delivery_datetime=T0 + dt.timedelta(days=1),
        equipment_type="Dry Van",
        loadboard_rate=Decimal(rate),
        max_rate=Decimal(max_rate) if max_rate else None,
    )


def _legacy(conn: Connection, rows: list[dict[str, Any]]) -> None:
    conn.execute(insert(rounds), rows)


def _legacy_call(conn: Connection) -> int:
    """A call as the old service left it: no outcome, no opening rate, NULL counters."""
    values = {"load_id": "LD-A", "carrier_mc_number": "MC300", "call_start_time": LEGACY_TIME}
    call_id: int = conn.execute(insert(calls).values(values).returning(calls.c.id)).scalar_one()
    return call_id


async def build(settings: Settings) -> None:
    """Write the data set into the (empty, migrated) database ``settings`` name."""
    db = Database(settings)
    cfg = PolicySettings.from_settings(settings)

    async def offer(call_id: int, amount: str, session: str | None, at: dt.datetime) -> None:
        await db.write(
            record_round,
            call_id=call_id,
            offer=Decimal(amount),
            session_id=session,
            notes=NOTE if session == S1 else None,
            cfg=cfg,
            now=at,
        )

    try:
        await db.write(create_load, _load("LD-A", "2000.00"), T0)
        await db.write(create_load, _load("LD-B", "1500.00", "1600.00"), T0)
        call = {}
        for n, (load_id, carrier) in enumerate(
            [("LD-A", "MC100"), ("LD-B", "MC200"), ("LD-A", "MC200")], start=1
        ):
            row = await db.write(
                create_call, CallCreate(load_id=load_id, carrier_mc_number=carrier), T0
            )
            call[n] = row.id
        call[4] = await db.write(_legacy_call)

        await offer(call[1], "2500", S1, T0)
        await offer(call[1], "2150", S1, T0 + dt.timedelta(seconds=40))
        await offer(call[1], "2190", S1, T0 + dt.timedelta(seconds=100))
        legacy = {"call_id": call[4], "decision": None, "counter_offer": None}
        await db.write(
            _legacy,
            [
                legacy
                | {
                    "session_id": S1,
                    "round_number": 1,
                    "carrier_offer": None,
                    "system_response": "Agent: what rate would you need for this one?",
                    "timestamp": T0 + dt.timedelta(seconds=130),
                },
                legacy
                | {
                    "session_id": S1,
                    "round_number": 2,
                    "carrier_offer": Decimal("2300.00"),
                    "system_response": "Let me check with my manager.",
                    "timestamp": T0 + dt.timedelta(seconds=150),
                },
            ],
        )
        await db.write(release_load, "LD-A", "carrier fell through", RELEASE_TIME)
        await offer(call[2], "1700", None, T1 - dt.timedelta(minutes=5))
        await offer(call[2], "1450", S2, T1)
        await offer(call[3], "2600", S3, T2)
        await offer(call[3], "2500", S3, T2 + dt.timedelta(seconds=30))
        await offer(call[3], "2400", S3, T2 + dt.timedelta(seconds=75))
        await db.write(
            _legacy,
            [
                legacy
                | {
                    "session_id": None,
                    "round_number": 1,
                    "carrier_offer": None,
                    "system_response": "free text from the old agent",
                    "timestamp": LEGACY_TIME,
                },
                legacy
                | {
                    "session_id": None,
                    "round_number": 1,
                    "carrier_offer": Decimal("2250.00"),
                    "system_response": "duplicate round number, as the old service stored it",
                    "timestamp": LEGACY_TIME + dt.timedelta(seconds=20),
                },
            ],
        )
    finally:
        await db.dispose()
