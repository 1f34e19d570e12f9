"""Every round, streamed: rows come from a server-side cursor in batches and go straight out.

The unit runs on a plain Core ``Connection`` like every other: ``yield_per`` makes SQLAlchemy
use a server-side cursor (asyncpg's, through ``run_sync``, on PostgreSQL; SQLite's cursor is
incremental anyway) and hand rows over one batch at a time, so memory stays flat however many
rounds there are.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, Protocol, TextIO

from sqlalchemy import ColumnElement, Connection, Row, Select, and_, case, func, select

from negotiation.queries import calls, rounds

COLUMNS = (
    "id",
    "call_id",
    "session_id",
    "round_number",
    "carrier_offer",
    "decision",
    "counter_offer",
    "agreed_rate",
    "system_response",
    "notes",
    "timestamp",
    "load_id",
    "carrier_mc_number",
    "profile",
    "profile_version",
    "round_limit",
    "ceiling",
)
BATCH = 2000


def _conditions(since: dt.datetime | None, until: dt.datetime | None) -> ColumnElement[bool]:
    conditions: list[ColumnElement[bool]] = []
    if since is not None:
        conditions.append(rounds.c.timestamp >= since)
    if until is not None:
        conditions.append(rounds.c.timestamp < until)
    return and_(True, *conditions)


def export_query(since: dt.datetime | None, until: dt.datetime | None) -> Select[Any]:
    """Rounds with their call's load and carrier, by id."""
    return (
        select(
            rounds.c.id,
            rounds.c.call_id,
            rounds.c.session_id,
            rounds.c.round_number,
            rounds.c.carrier_offer,
            rounds.c.decision,
            rounds.c.counter_offer,
            case((rounds.c.decision == "accept", rounds.c.carrier_offer)).label("agreed_rate"),
            rounds.c.system_response,
            rounds.c.notes,
            rounds.c.timestamp,
            calls.c.load_id,
            calls.c.carrier_mc_number,
            rounds.c.profile,
            rounds.c.profile_version,
            rounds.c.round_limit,
            rounds.c.ceiling,
        )
        .select_from(rounds.outerjoin(calls, calls.c.id == rounds.c.call_id))
        .where(_conditions(since, until))
        .order_by(rounds.c.id)
    )


def count_rounds(conn: Connection, since: dt.datetime | None, until: dt.datetime | None) -> int:
    """How many rounds an export would write (for the progress bar)."""
    query = select(func.count()).select_from(rounds).where(_conditions(since, until))
    return int(conn.execute(query).scalar_one())


class Sink(Protocol):
    def __call__(self, batch: Sequence[Row[Any]]) -> None: ...


def export_rounds(
    conn: Connection,
    sink: Sink,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    batch_size: int = BATCH,
) -> int:
    """Hand every matching round to ``sink`` in batches of ``batch_size``; return the count."""
    result = conn.execution_options(yield_per=batch_size).execute(export_query(since, until))
    written = 0
    for batch in result.partitions():
        sink(batch)
        written += len(batch)
    return written


def _iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return _iso(value)
    return value


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return _iso(value)
    return value


def csv_sink(out: TextIO, after: Callable[[int], None] | None = None) -> Sink:
    """A sink writing CSV (header first) to ``out``; ``after(n)`` is told each batch's size."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)

    def write(batch: Sequence[Row[Any]]) -> None:
        writer.writerows([_csv_cell(v) for v in row] for row in batch)
        if after is not None:
            after(len(batch))

    return write


def ndjson_sink(out: TextIO, after: Callable[[int], None] | None = None) -> Sink:
    """A sink writing one JSON object per line to ``out``; money is a JSON number."""

    def write(batch: Sequence[Row[Any]]) -> None:
        out.writelines(
            json.dumps(
                dict(zip(COLUMNS, (_json_value(v) for v in row), strict=True)),
                ensure_ascii=False,
            )
            + "\n"
            for row in batch
        )
        if after is not None:
            after(len(batch))

    return write
