"""Database URLs, and the SQLite engines' connection settings."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry

from negotiation.settings import Settings


def normalize_url(url: str | URL, *, asynchronous: bool) -> URL:
    """Return ``url`` with the driver this service uses for it.

    ``sqlite://``, ``sqlite+aiosqlite://``, ``postgresql://``, ``postgres://`` and
    ``postgresql+asyncpg://`` all name the same databases; SQLite runs on ``sqlite3`` (or
    ``aiosqlite`` when ``asynchronous``, for Alembic), PostgreSQL always on ``asyncpg``.
    """
    if isinstance(url, str) and url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite" if asynchronous else "sqlite")
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(
        f"unsupported database URL scheme {parsed.drivername!r}: use sqlite or postgresql"
    )


def is_sqlite(url: str | URL) -> bool:
    """True when ``url`` names a SQLite database."""
    return normalize_url(url, asynchronous=False).get_backend_name() == "sqlite"


def _sqlite_on_connect(
    settings: Settings, *, read_only: bool
) -> Callable[[Any, ConnectionPoolEntry], None]:
    def on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy's "begin" event, not the driver, decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(settings.sqlite_busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {settings.sqlite_synchronous}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if read_only:  # a read unit that writes fails here as it does on PostgreSQL
            cursor.execute("PRAGMA query_only = ON")
        cursor.close()

    return on_connect


def sqlite_engine(url: URL, settings: Settings, *, writer: bool, pool_size: int) -> Engine:
    """A synchronous ``sqlite3`` engine: the writer's transactions take the write lock at
    BEGIN (``BEGIN IMMEDIATE``); a reader's connections cannot write."""
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=False,
        connect_args={
            "check_same_thread": False,
            "timeout": settings.sqlite_busy_timeout_ms / 1000,
        },
    )
    event.listen(engine, "connect", _sqlite_on_connect(settings, read_only=not writer))
    begin = "BEGIN IMMEDIATE" if writer else "BEGIN"
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql(begin))
    return engine
