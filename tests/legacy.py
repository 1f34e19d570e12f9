"""Generate legacy ``loads.db`` files: the fixture schema, filled the way the old service did.

The schema comes from executing ``tests/fixtures/legacy_loads_schema.sql`` itself (a verbatim copy
of ``shared/fixtures/legacy_loads_schema.sql``). Rows carry what the old service left behind: NULL
offers, free-text and unicode responses, float rates, duplicate round numbers, every outcome, and
timestamps as ``YYYY-MM-DD HH:MM:SS[.ffffff]`` strings. Generation is deterministic per ``seed``.

Call 1 holds :data:`KNOWN_ROUNDS`, the rows tests compare field by field after a migration.
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "legacy_loads_schema.sql"
LEGACY_TABLES = ("loads", "carriers", "calls", "negotiations")

#: Every outcome the legacy service wrote (free VARCHAR: the old values and the contract's).
LEGACY_OUTCOMES: tuple[str | None, ...] = (
    "accepted",
    "rejected",
    "transferred",
    "abandoned",
    "negotiating",
    "no_agreement",
    "callback_requested",
    None,
)
SENTIMENTS: tuple[str | None, ...] = ("positive", "neutral", "negative", None)
RESPONSES: tuple[str | None, ...] = (
    "We can do $2,150.00 on this load.",
    "That works, booking it now.",
    "Sorry, that's above what we can pay.",
    "Können wir 2.300 € machen? 🚚",
    "Tarifa final: $2,300 — ¿le sirve?",
    "",
    None,
)
NOTES: tuple[str | None, ...] = ("Fragile — handle with care ✓", "冷蔵 reefer; 注意", "", None)

#: ``(id, round_number, carrier_offer, system_response, timestamp)`` of call 1's rounds.
KNOWN_ROUNDS: tuple[tuple[int, int, float | None, str | None, str | None], ...] = (
    (1, 1, None, "Hello, what rate are you looking for?", "2024-03-05 14:07:09"),
    (2, 1, 2300.1, "Können wir 2.300 € machen? 🚚", "2024-03-05 14:07:42.123456"),
    (3, 2, 2199.99, "We can do $2,150.00 on this load.", "2024-03-05 14:08:01.000001"),
    (4, 2, 2150.0, None, None),
    (5, 3, 0.1 + 0.2, "free text, no decision", "2024-03-05 14:09:59.999999"),
)
KNOWN_LOAD = (
    "LD-LEGACY-1",
    "Chicago, IL",
    "Dallas, TX",
    "2024-03-06 08:00:00",
    "2024-03-07 18:00:00.500000",
    "Dry Van",
    2300.1,
)


def _stamp(rng: random.Random) -> str:
    moment = dt.datetime(2023, 1, 1) + dt.timedelta(seconds=rng.randrange(60 * 60 * 24 * 700))
    if rng.random() < 0.5:
        moment = moment.replace(microsecond=rng.randrange(1_000_000))
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _money(rng: random.Random) -> float:
    return round(rng.uniform(800, 4500), rng.choice((0, 1, 2)))


def _loads(rng: random.Random, count: int) -> Iterator[tuple[Any, ...]]:
    yield (*KNOWN_LOAD, "legacy note", 42000.5, "Steel", 12, 967.3, "48x40", "available")
    for i in range(2, count + 1):
        yield (
            f"LD{i:06d}",
            rng.choice(("Chicago, IL", "Dallas, TX", "Atlanta, GA", "São Paulo, SP")),
            rng.choice(("Denver, CO", "Reno, NV", "Zürich")),
            _stamp(rng),
            _stamp(rng),
            rng.choice(("Dry Van", "Reefer", "Flatbed")),
            _money(rng),
            rng.choice(NOTES),
            rng.choice((None, round(rng.uniform(1000, 45000), 1))),
            rng.choice((None, "Produce", "Électronique")),
            rng.choice((None, rng.randrange(1, 40))),
            rng.choice((None, round(rng.uniform(50, 3000), 1))),
            rng.choice((None, "48x40x60")),
            rng.choice((None, "available", "booked", "completed")),
        )


def create_legacy_db(
    path: Path,
    *,
    negotiations: int = 5000,
    loads: int | None = None,
    seed: int = 7,
    journal_mode: str = "delete",
) -> dict[str, int]:
    """Write a legacy database with about ``negotiations`` rounds; return rows per table."""
    rng = random.Random(seed)
    calls = max(negotiations // 4, 1)
    loads = loads if loads is not None else max(calls // 20, 2)
    carriers = max(calls // 50, 2)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA journal_mode = {journal_mode}")
        conn.executescript(FIXTURE.read_text())
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO loads (load_id, origin, destination, pickup_datetime, delivery_datetime,"
            " equipment_type, loadboard_rate, notes, weight, commodity_type, num_of_pieces, miles,"
            " dimensions, status, created_at, updated_at) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ((*row, _stamp(rng), rng.choice((None, _stamp(rng)))) for row in _loads(rng, loads)),
        )
        conn.executemany(
            "INSERT INTO carriers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    f"MC{100000 + i}",
                    rng.choice(("Acme Freight", "Transportes Núñez", "北京物流", "O'Brien & Sons")),
                    rng.choice((None, "active", "inactive")),
                    rng.choice((None, "1 Main St\nSpringfield")),
                    rng.choice((None, "+1-555-0100")),
                    rng.choice((None, "ops@example.com")),
                    rng.choice((None, 0, 1)),
                    _stamp(rng),
                    rng.choice((None, _stamp(rng))),
                )
                for i in range(carriers)
            ),
        )
        load_ids = [r[0] for r in conn.execute("SELECT load_id FROM loads")]
        conn.executemany(
            "INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    i,
                    # Some calls name carriers the broker never recorded: the legacy service
                    # did not enforce foreign keys, and revision 3 drops this one.
                    f"MC{100000 + rng.randrange(carriers + carriers // 10 + 1)}",
                    KNOWN_LOAD[0] if i == 1 else rng.choice(load_ids),
                    _stamp(rng),
                    rng.choice((None, _stamp(rng))),
                    rng.choice((None, rng.randrange(10, 900))),
                    LEGACY_OUTCOMES[i % len(LEGACY_OUTCOMES)],
                    rng.choice(SENTIMENTS),
                    rng.choice((None, _money(rng))),
                    rng.choice((None, _money(rng))),
                    rng.choice((None, rng.randrange(0, 5))),
                    rng.choice(NOTES),
                    rng.choice((None, "Agent: Hi — Carrier: ¿Hola?")),
                    rng.choice((None, 0, 1)),
                )
                for i in range(1, calls + 1)
            ),
        )
        conn.executemany("INSERT INTO negotiations VALUES (?, 1, ?, ?, ?, ?)", KNOWN_ROUNDS)
        conn.executemany(
            "INSERT INTO negotiations VALUES (?, ?, ?, ?, ?, ?)",
            (
                (
                    i,
                    rng.randrange(2, calls + 1) if calls > 1 else 1,
                    rng.randrange(1, 5),  # duplicates per call are normal in legacy data
                    None if rng.random() < 0.1 else _money(rng),
                    rng.choice(RESPONSES),
                    None if rng.random() < 0.02 else _stamp(rng),
                )
                for i in range(len(KNOWN_ROUNDS) + 1, negotiations + 1)
            ),
        )
        conn.execute("COMMIT")
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in LEGACY_TABLES}
    finally:
        conn.close()
