"""How database failures are classified: what is retried, what means the database is
unreachable or busy, and the reasons shown for them (see docs/RELIABILITY.md)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, OperationalError


class DatabaseUnavailable(Exception):
    """The database could not be reached (connection refused, file unreadable, …)."""


class DatabaseBusy(Exception):
    """The database stayed locked by another writer for longer than the busy budget."""


class InvalidData(Exception):
    """The database refused a value of the request (e.g. a NUL character in PostgreSQL text)."""


#: PostgreSQL SQLSTATEs after which a unit of work is rolled back and run again.
PG_RETRY = {
    "40001": "serialization failure",
    "40P01": "deadlock",
    "55P03": "lock timeout",
    "23505": "unique violation",
}


def sqlstate(exc: DBAPIError) -> str:
    return str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")


def is_locked(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and "database is locked" in str(exc.orig)


def is_retryable(exc: DBAPIError) -> bool:
    return is_locked(exc) or sqlstate(exc) in PG_RETRY


def is_unreachable(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError):
        # 08: connection exceptions; 57P: the server shutting down or starting up; 3D000 and
        # 28: the database or role in the URL does not exist, or the password is refused;
        # 42P01: the schema is not there (a database not migrated yet), as "no such table" on
        # SQLite.
        if exc.connection_invalidated or sqlstate(exc).startswith(
            ("08", "57P", "3D000", "28", "42P01")
        ):
            return True
        if isinstance(exc, OperationalError):
            text = str(exc.orig).lower()
            return any(
                s in text
                for s in (
                    "unable to open",
                    "readonly",
                    "read-only",
                    "disk i/o",
                    "disk is full",
                    "not a database",
                    "no such table",
                )
            )
        return False
    return isinstance(exc, OSError | ConnectionError)


@contextlib.contextmanager
def invalidating(conn: Connection) -> Iterator[None]:
    """After an I/O error (disk full, file gone) the next transaction must reopen the file
    rather than reuse this connection's state."""
    try:
        yield
    except DBAPIError as exc:
        if is_unreachable(exc) and not conn.invalidated:
            conn.invalidate()
        raise


def short_reason(exc: BaseException) -> str:
    """A one-line reason that names no SQL and no credentials."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    if "no such table" in text or "does not exist" in text:
        return "schema missing: run alembic upgrade head"
    return text[:200]
