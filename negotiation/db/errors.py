"""How database failures are classified: what is retried, what means the database is
unreachable or busy, and the reasons shown for them (see docs/RELIABILITY.md)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError


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
#: Those of them that mean another transaction held on too long: 503 DATABASE_BUSY at the end.
PG_BUSY = frozenset({"40001", "40P01", "55P03"})
#: SQLSTATE classes and codes of a database that cannot be reached or used: 08 connection
#: exceptions; 57P the server shutting down or starting up; 3D000 and 28 the database or role in
#: the URL does not exist, or the password is refused; 42P01 the schema is not there.
PG_UNREACHABLE = ("08", "57P", "3D000", "28", "42P01")

#: SQLite primary result codes (the low byte of ``sqlite_errorcode``: extended codes such as
#: SQLITE_IOERR_WRITE or SQLITE_BUSY_SNAPSHOT share their primary code's low byte).
SQLITE_ERROR, SQLITE_BUSY, SQLITE_LOCKED = 1, 5, 6
#: READONLY, IOERR, FULL, CANTOPEN, NOTADB: the file cannot be read or written.
SQLITE_UNREACHABLE = frozenset({8, 10, 13, 14, 26})


def sqlstate(exc: DBAPIError) -> str:
    """PostgreSQL's SQLSTATE of the error, or "" (SQLite, or no code)."""
    return str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")


def sqlite_code(exc: BaseException) -> int | None:
    """SQLite's primary result code of the error (``sqlite3`` sets ``sqlite_errorcode``)."""
    code = getattr(getattr(exc, "orig", None), "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def is_locked(exc: BaseException) -> bool:
    """SQLite's lock stayed taken by another connection for longer than the busy timeout."""
    return sqlite_code(exc) in (SQLITE_BUSY, SQLITE_LOCKED)


def is_busy(exc: DBAPIError) -> bool:
    """Another transaction held a lock too long, or conflicted with this one."""
    return is_locked(exc) or sqlstate(exc) in PG_BUSY


def is_retryable(exc: DBAPIError) -> bool:
    return is_locked(exc) or sqlstate(exc) in PG_RETRY


def is_schema_missing(exc: BaseException) -> bool:
    """The tables are not there: a database that was never migrated."""
    if not isinstance(exc, DBAPIError):
        return False
    # SQLite reports a missing table with its generic SQLITE_ERROR code: only the message,
    # which SQLite has kept the same for decades, tells it from other errors.
    return sqlstate(exc) == "42P01" or (
        sqlite_code(exc) == SQLITE_ERROR and str(exc.orig).startswith("no such table")
    )


def is_unreachable(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError):
        return bool(
            exc.connection_invalidated
            or sqlstate(exc).startswith(PG_UNREACHABLE)
            or sqlite_code(exc) in SQLITE_UNREACHABLE
            or is_schema_missing(exc)
        )
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
    if is_schema_missing(exc):
        return "schema missing: run alembic upgrade head"
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return text[:200]
