"""Test databases: built by running the Alembic migrations, one fresh database per test."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Executable, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from negotiation.db import normalize_url
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
#: Name of the environment variable with the PostgreSQL server URL for tests.
POSTGRES_URL_ENV = "NEGOTIATION_TEST_POSTGRES_URL"

TABLES = (
    "idempotency_keys",
    "load_bookings",
    "negotiations",
    "sessions",
    "calls",
    "carriers",
    "loads",
    "pricing_profiles",
)


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's config from the repo's alembic.ini, optionally sharing ``connection``."""
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["configure_logger"] = False
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def revisions() -> list[str]:
    """Every revision id of ``migrations/``, from the first to head (one linear history)."""
    script = ScriptDirectory.from_config(alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def run_alembic(url: str, fn: str = "upgrade", revision: str | None = "head") -> None:
    """Run ``alembic <fn> [<revision>]`` against ``url`` on a shared connection."""

    def _run(connection: Connection) -> None:
        args = () if revision is None else (revision,)
        getattr(command, fn)(alembic_config(connection), *args)

    if normalize_url(url, asynchronous=False).get_backend_name() == "sqlite":
        engine = create_engine(normalize_url(url, asynchronous=False))
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
        engine.dispose()
        return

    async def _async() -> None:
        engine = create_async_engine(normalize_url(url, asynchronous=True))
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
        await engine.dispose()

    asyncio.run(_async())


def postgres_server_url() -> str | None:
    return os.environ.get(POSTGRES_URL_ENV) or None


def database_name(prefix: str) -> str:
    """A PostgreSQL database name unique to this checkout and xdist worker."""
    checkout = hashlib.sha1(str(ROOT).encode()).hexdigest()[:8]
    return f"{prefix}_{checkout}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


async def _admin(server_url: str, *statements: str) -> None:
    engine = create_async_engine(
        normalize_url(server_url, asynchronous=True), isolation_level="AUTOCOMMIT"
    )
    async with engine.connect() as conn:
        for statement in statements:
            await conn.execute(text(statement))
    await engine.dispose()


def create_postgres_database(server_url: str, name: str) -> str:
    """(Re)create database ``name`` on the server and return its URL."""
    asyncio.run(
        _admin(
            server_url,
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
            f'CREATE DATABASE "{name}"',
        )
    )
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(server_url: str, name: str) -> None:
    asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def truncate_postgres(url: str) -> None:
    """Empty every table (ids restart) so the next test starts from a fresh database."""
    asyncio.run(_admin(url, f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))


def copy_sqlite(template: Path, target: Path) -> str:
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


async def execute(url: str, statement: Executable | str, **params: Any) -> list[Any]:
    """Run one statement on the database at ``url`` (own connection, committed); its rows."""
    if isinstance(statement, str):
        statement = text(statement)
    engine = create_async_engine(normalize_url(url, asynchronous=True))
    try:
        async with engine.begin() as conn:
            result = await conn.execute(statement, params)
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


async def terminate_backends(url: str) -> int:
    """End every other session on the PostgreSQL database at ``url``, as a server restart would
    end the pool's idle connections; how many there were."""
    [(killed,)] = await execute(
        url,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    return int(killed)


@asynccontextmanager
async def locked_row(url: str, table: str, row_id: int) -> AsyncIterator[None]:
    """Hold ``SELECT ... FOR UPDATE`` on one row from another connection (PostgreSQL)."""
    engine = create_async_engine(normalize_url(url, asynchronous=True))
    try:
        async with engine.connect() as conn:
            transaction = await conn.begin()
            await conn.execute(
                text(f"SELECT 1 FROM {table} WHERE id = :id FOR UPDATE"), {"id": row_id}
            )
            try:
                yield
            finally:
                await transaction.rollback()
    finally:
        await engine.dispose()


@asynccontextmanager
async def advisory_lock(url: str, key: int) -> AsyncIterator[None]:
    """Hold PostgreSQL advisory lock ``key`` from another connection until the block ends."""
    engine = create_async_engine(normalize_url(url, asynchronous=True))
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            await conn.commit()
            try:
                yield
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                await conn.commit()
    finally:
        await engine.dispose()


async def wait_for_row(url: str, statement: str, **params: Any) -> None:
    """Poll until ``statement`` returns a row (the evidence that something has happened)."""

    async def rows() -> list[Any]:
        return await execute(url, statement, **params)

    await wait_until(rows, f"{statement!r} returns a row")
