"""What the Alembic revisions share, so every PostgreSQL change follows one lock-safe pattern.

* ``env.py`` starts every PostgreSQL run with ``SET lock_timeout`` / ``SET statement_timeout``
  (:func:`session_timeouts`): a DDL statement that cannot get its lock quickly gives up instead of
  queueing every writer behind it, and one that runs long (a rewrite nobody expected) is stopped.
* Changes to existing tables run :func:`outside_transaction`: each statement commits on its own,
  so no ACCESS EXCLUSIVE lock is held past the statement that needs it. Every statement there is
  re-runnable (``IF [NOT] EXISTS``), so a run that stops half-way is simply run again.
* Indexes on existing tables are built with ``CREATE INDEX CONCURRENTLY`` (:func:`create_indexes`),
  which never blocks reads or writes; a leftover INVALID index from an interrupted build is dropped
  first. Index builds may take as long as they need, so both timeouts are lifted around them.

SQLite needs none of this: it has no concurrent writers during a migration (the migration holds
the write lock) and the same helpers fall back to plain ``CREATE INDEX``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from alembic import context, op
from sqlalchemy import text

#: Defaults; override with ``alembic -x lock_timeout=2s -x statement_timeout=30s ...``.
LOCK_TIMEOUT = "500ms"
STATEMENT_TIMEOUT = "10s"
_DURATION = re.compile(r"^\d+(us|ms|s|min|h|d)?$")
_autocommit: ContextVar[bool] = ContextVar("autocommit", default=False)


@dataclass(frozen=True)
class IndexSpec:
    """An index: name, table, columns, uniqueness and an optional partial-index condition."""

    name: str
    table: str
    columns: tuple[str, ...]
    unique: bool = False
    where: str | None = None


def is_postgresql() -> bool:
    """True when the running migration targets PostgreSQL."""
    return op.get_context().dialect.name == "postgresql"


def session_timeouts() -> tuple[str, str]:
    """``(lock_timeout, statement_timeout)`` from ``-x`` arguments, else the defaults."""
    args = context.get_x_argument(as_dictionary=True)
    values = (
        args.get("lock_timeout", LOCK_TIMEOUT),
        args.get("statement_timeout", STATEMENT_TIMEOUT),
    )
    for value in values:
        if not _DURATION.match(value):
            raise ValueError(f"invalid timeout {value!r}: use e.g. 500ms, 10s or 0")
    return values


def timeout_statements(lock: str, statement: str) -> list[str]:
    """``SET lock_timeout`` and ``SET statement_timeout`` (session-wide) as SQL."""
    return [f"SET lock_timeout = '{lock}'", f"SET statement_timeout = '{statement}'"]


def set_timeouts(lock: str, statement: str) -> None:
    """Emit :func:`timeout_statements` from inside a revision."""
    for statement_sql in timeout_statements(lock, statement):
        op.execute(statement_sql)


@contextmanager
def outside_transaction() -> Iterator[None]:
    """PostgreSQL: run the block in autocommit mode, one short transaction per statement.

    Re-entrant (an inner block joins the outer one). A no-op on SQLite, where the revisions run
    inside the caller's transaction.
    """
    if _autocommit.get() or not is_postgresql():
        yield
        return
    token = _autocommit.set(True)
    try:
        with op.get_context().autocommit_block():
            yield
    finally:
        _autocommit.reset(token)


@contextmanager
def unbounded_time() -> Iterator[None]:
    """Lift both timeouts for concurrent index work (it blocks no reader or writer)."""
    set_timeouts("0", "0")
    yield
    set_timeouts(*session_timeouts())


def _where(spec: IndexSpec) -> dict[str, Any]:
    if spec.where is None:
        return {}
    return {"sqlite_where": text(spec.where), "postgresql_where": text(spec.where)}


def create_indexes(specs: Sequence[IndexSpec]) -> None:
    """Create indexes: ``CONCURRENTLY`` and re-runnable on PostgreSQL, plainly on SQLite."""
    if not is_postgresql():
        for spec in specs:
            op.create_index(
                spec.name, spec.table, list(spec.columns), unique=spec.unique, **_where(spec)
            )
        return
    with outside_transaction(), unbounded_time():
        for spec in specs:
            # An interrupted concurrent build leaves an INVALID index that IF NOT EXISTS would
            # keep; dropping first makes a re-run build it properly.
            op.drop_index(
                spec.name, table_name=spec.table, postgresql_concurrently=True, if_exists=True
            )
            op.create_index(
                spec.name,
                spec.table,
                list(spec.columns),
                unique=spec.unique,
                postgresql_concurrently=True,
                if_not_exists=True,
                **_where(spec),
            )


def drop_indexes(specs: Sequence[IndexSpec]) -> None:
    """Drop indexes: ``CONCURRENTLY`` and re-runnable on PostgreSQL, plainly on SQLite."""
    if not is_postgresql():
        for spec in reversed(specs):
            op.drop_index(spec.name, table_name=spec.table)
        return
    with outside_transaction(), unbounded_time():
        for spec in reversed(specs):
            op.drop_index(
                spec.name, table_name=spec.table, postgresql_concurrently=True, if_exists=True
            )
