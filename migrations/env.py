"""Alembic environment: async, URL from the service's settings, connection sharing for tests.

Tests (and ``scripts/migrate_add_session_id.sh``) may hand Alembic an open connection in
``config.attributes["connection"]``; a connection already inside a transaction keeps it (the
SQLite migration script commits stamp + upgrade + checks as one). Otherwise the URL comes from
``-x url=...``, ``config.attributes["url"]`` or ``NEGOTIATION_DATABASE_URL`` through the same
:class:`~negotiation.settings.Settings` the service uses.

Each revision runs in its own transaction (revisions with CONCURRENTLY index builds must commit
part-way anyway). PostgreSQL runs start with ``SET lock_timeout`` / ``SET statement_timeout``
(``-x lock_timeout=... -x statement_timeout=...``; see :mod:`negotiation.migration_ops`).
"""

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from negotiation.db import normalize_url
from negotiation.migration_ops import session_timeouts, timeout_statements
from negotiation.models import Base
from negotiation.settings import get_settings

config = context.config

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _url() -> str:
    explicit = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    raw = explicit or get_settings().database_url
    return normalize_url(raw, asynchronous=True).render_as_string(hide_password=False)


def run_migrations_offline() -> None:
    """Emit the SQL of the migrations (``alembic upgrade head --sql``) instead of running it."""
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        compare_type=True,
        render_as_batch=url.startswith("sqlite"),
        transaction_per_migration=True,
    )
    _bound_locks(url.startswith("postgresql"))
    with context.begin_transaction():
        context.run_migrations()


def _bound_locks(postgresql: bool) -> None:
    """PostgreSQL: no DDL waits for (or holds) a lock longer than the timeouts allow."""
    if postgresql:
        for statement in timeout_statements(*session_timeouts()):
            context.execute(statement)


def do_run_migrations(connection: Connection) -> None:
    is_sqlite = connection.dialect.name == "sqlite"
    if is_sqlite and not connection.in_transaction():
        # Batch operations rebuild tables, which enforced foreign keys would refuse; the
        # migration script runs PRAGMA foreign_key_check afterwards instead. The pragma only
        # takes effect outside a transaction, so end the one SQLAlchemy began for it.
        connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
        connection.commit()
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=is_sqlite,
        transaction_per_migration=True,
    )
    _bound_locks(connection.dialect.name == "postgresql")
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    connectable = create_async_engine(_url(), poolclass=pool.NullPool)
    async with connectable.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await connectable.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
    else:
        asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
