"""The round listings' JSON path gives each amount as the float of the exact ``Decimal`` the
ordinary result path gives, for every value either database can hand back."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.dialects.sqlite.pysqlite import dialect as sqlite_dialect

from negotiation.models import Money, UTCDateTime

#: The dialects as SQLAlchemy makes them (the asyncpg one's constructor is untyped).
SQLITE: Any = sqlite_dialect()
ASYNCPG: Any = asyncpg_dialect()  # type: ignore[no-untyped-call]
NUMERIC_OID = 1700  # what asyncpg's cursor description says of a NUMERIC column

#: What SQLite hands back for a NUMERIC(12, 2) column: REAL, or INTEGER for a whole amount;
#: PostgreSQL: Decimal with two places.
SQLITE_AMOUNTS = st.floats(min_value=-1e10, max_value=1e10, allow_nan=False) | st.integers(
    min_value=-(10**10), max_value=10**10
)
PG_AMOUNTS = st.decimals(min_value=-(10**9), max_value=10**9, places=2)


def _both(dialect: Any, coltype: Any, value: Any) -> tuple[Any, Any]:
    money: Any = Money().dialect_impl(dialect)
    exact = money.result_processor(dialect, coltype)
    return exact(value), money.json_result_processor(dialect, coltype)(value)


@given(SQLITE_AMOUNTS)
def test_sqlite_amounts_as_json_are_the_exact_amounts(value: Any) -> None:
    exact, as_json = _both(SQLITE, None, value)
    assert type(as_json) is float and as_json == float(exact)


@given(PG_AMOUNTS)
def test_postgres_amounts_as_json_are_the_exact_amounts(value: Decimal) -> None:
    exact, as_json = _both(ASYNCPG, NUMERIC_OID, value)
    assert type(as_json) is float and as_json == float(exact)


def test_no_amount_is_null_either_way() -> None:
    for dialect, coltype in ((SQLITE, None), (ASYNCPG, NUMERIC_OID)):
        assert _both(dialect, coltype, None) == (None, None)


@given(st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1)))
def test_timestamps_read_the_same_both_ways(moment: dt.datetime) -> None:
    stored = {"sqlite": moment.isoformat(sep=" "), "postgresql": moment}
    for dialect in (SQLITE, ASYNCPG):
        stamp: Any = UTCDateTime().dialect_impl(dialect)
        value = stored[dialect.name]
        exact = stamp.result_processor(dialect, None)(value)
        assert stamp.json_result_processor(dialect, None)(value) == exact
        assert exact.tzinfo is dt.UTC


SQLITE_SHAPES = [
    lambda m: m.isoformat(sep=" "),  # as SQLAlchemy stores them
    lambda m: m.isoformat(sep="T"),
    lambda m: m.isoformat(sep=" ", timespec="milliseconds"),
    lambda m: m.isoformat(sep=" ", timespec="minutes"),
    lambda m: m.date().isoformat(),
    lambda m: m.isoformat(sep=" ", timespec="seconds") + "+00:00",
]


@given(
    st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1)),
    st.sampled_from(SQLITE_SHAPES),
)
def test_sqlite_timestamp_text_of_any_shape_reads_the_same_both_ways(
    moment: dt.datetime, shape: Any
) -> None:
    stamp: Any = UTCDateTime().dialect_impl(SQLITE)
    value = shape(moment)
    exact = stamp.result_processor(SQLITE, None)(value)
    as_json = stamp.json_result_processor(SQLITE, None)(value)
    assert as_json == exact and as_json.tzinfo is dt.UTC
