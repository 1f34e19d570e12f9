"""What a copy copies, read from the models' metadata: tables, keys, money and id columns.

Nothing here names a table or a column, so tables and columns added by later revisions are
copied and verified without a change here. Every statement is a Core ``select()`` that runs on
SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    Connection,
    Float,
    Integer,
    MetaData,
    Numeric,
    Select,
    Table,
    Text,
    TypeDecorator,
    cast,
    func,
    select,
    tuple_,
    type_coerce,
)
from sqlalchemy.types import TypeEngine

from negotiation.models import Base
from negotiation.reports.summary import _cents as cents


def _base_type(column: Column[Any]) -> TypeEngine[Any]:
    kind = column.type
    return kind.impl_instance if isinstance(kind, TypeDecorator) else kind


def _is_json(column: Column[Any]) -> bool:
    return isinstance(_base_type(column), JSON)


@dataclass(frozen=True)
class Totals:
    """A table's fingerprint for verification: rows, sums of id columns, sums of money in cents."""

    rows: int
    ids: tuple[int, ...]
    cents: tuple[int, ...]


@dataclass(frozen=True)
class TablePlan:
    """How one table is read, written and verified."""

    table: Table
    #: The primary key: batches are read in its order, each after the last key of the previous.
    key: tuple[Column[Any], ...]
    #: Money (``Numeric`` but not ``Float``): summed in cents to verify the copy.
    money: tuple[Column[Any], ...]
    #: Integer key and foreign-key columns: summed to verify the copy.
    ids: tuple[Column[Any], ...]
    #: The column a sequence (PostgreSQL) or AUTOINCREMENT (SQLite) numbers, if any.
    serial: Column[Any] | None

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.table.columns]

    def transfer_types(self) -> list[TypeEngine[Any]]:
        """The type each column travels as: as stored, so a ``TypeDecorator``'s underlying type
        (``Money`` as ``NUMERIC(12, 2)``, ``UTCDateTime`` as a naive UTC ``DATETIME``), and JSON
        as its exact text."""
        return [Text() if _is_json(c) else _base_type(c) for c in self.table.columns]

    def batch(self, after: Sequence[Any] | None, size: int) -> Select[Any]:
        """Up to ``size`` rows in key order, after the key ``after`` (None: from the start)."""
        columns = [
            cast(c, Text).label(c.name) if _is_json(c) else type_coerce(c, kind).label(c.name)
            for c, kind in zip(self.table.columns, self.transfer_types(), strict=True)
        ]
        query = select(*columns).order_by(*self.key).limit(size)
        if after is None:
            return query
        if len(self.key) == 1:
            return query.where(self.key[0] > after[0])
        return query.where(tuple_(*self.key) > tuple_(*after))

    def key_of(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """The key values of a row read by :meth:`batch`."""
        positions = [self.column_names.index(c.name) for c in self.key]
        return tuple(row[i] for i in positions)

    def totals(self, conn: Connection) -> Totals:
        """Count, id sums and money sums (cents) of the table, computed by the database."""
        sums = [func.coalesce(func.sum(c), 0) for c in self.ids]
        money: list[ColumnElement[Any]] = [func.coalesce(func.sum(cents(c)), 0) for c in self.money]
        row = conn.execute(select(func.count(), *sums, *money).select_from(self.table)).one()
        values = [int(v) for v in row]
        return Totals(values[0], tuple(values[1 : 1 + len(sums)]), tuple(values[1 + len(sums) :]))

    def max_serial(self, conn: Connection) -> int:
        """The highest value of :attr:`serial` in the table (0 when empty)."""
        assert self.serial is not None
        return int(conn.execute(select(func.coalesce(func.max(self.serial), 0))).scalar_one())


def _plan(table: Table) -> TablePlan:
    key = tuple(table.primary_key.columns)
    if not key:
        raise ValueError(f"table {table.name} has no primary key: it cannot be copied in batches")
    money = tuple(
        c
        for c in table.columns
        if isinstance(_base_type(c), Numeric) and not isinstance(_base_type(c), Float)
    )
    ids = tuple(
        c
        for c in table.columns
        if isinstance(_base_type(c), Integer) and (c.primary_key or c.foreign_keys)
    )
    serial = table.autoincrement_column
    return TablePlan(table, key, money, ids, serial)


def table_plans(metadata: MetaData = Base.metadata) -> list[TablePlan]:
    """Every table of the schema, parents before the tables that refer to them."""
    return [_plan(t) for t in metadata.sorted_tables]
