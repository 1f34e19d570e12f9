"""What the service needs: exact money, decisions, ceilings, caller ids, sessions, idempotency.

* Money columns become NUMERIC(12, 2). On SQLite the batch rebuild copies each table once (the
  migration script holds the write lock and checks every row count afterwards). On PostgreSQL
  they already are NUMERIC(12, 2) since the first revision, so no table is rewritten.
* ``negotiations`` gains ``decision``, ``counter_offer`` and ``notes``; round numbers become
  unique per (call, session) negotiation for every row the service writes. Legacy rows have no
  decision and are exempt, because the old service stored duplicate round numbers.
* ``calls`` gains ``external_id`` (unique) and loses the foreign key to ``carriers``: a call may
  name a carrier the broker has never recorded.
* ``loads`` gains ``max_rate`` (the negotiation ceiling).
* New tables ``sessions`` and ``idempotency_keys``.

On PostgreSQL every change to an existing table is catalog-only and commits on its own (each
ACCESS EXCLUSIVE lock lasts one statement, bounded by lock_timeout while waiting); indexes on
existing tables are built CONCURRENTLY; every statement is re-runnable.

Revision ID: c3e5a7b9d103
Revises: 8b2d4f6a9c02
Create Date: 2026-11-21 12:02:00 UTC
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from negotiation.migration_ops import (
    IndexSpec,
    create_indexes,
    drop_indexes,
    is_postgresql,
    outside_transaction,
)

revision: str = "c3e5a7b9d103"
down_revision: str | None = "8b2d4f6a9c02"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(12, 2)
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}
PG_CARRIER_FK = "calls_carrier_mc_number_fkey"
SQLITE_CARRIER_FK = "fk_calls_carrier_mc_number_carriers"

MONEY_COLUMNS = {
    "loads": ["loadboard_rate"],
    "calls": ["initial_rate_offered", "final_rate_agreed"],
    "negotiations": ["carrier_offer"],
}


def _new_columns() -> dict[str, list[sa.Column[object]]]:
    return {
        "loads": [sa.Column("max_rate", MONEY, nullable=True)],
        "calls": [sa.Column("external_id", sa.String(255), nullable=True)],
        "negotiations": [
            sa.Column("decision", sa.String(16), nullable=True),
            sa.Column("counter_offer", MONEY, nullable=True),
            sa.Column("notes", sa.Text(), nullable=True),
        ],
    }


#: Indexes on the new tables: built in the revision's transaction (nobody else can see them yet).
NEW_TABLE_INDEXES = (
    IndexSpec("ix_sessions_last_activity", "sessions", ("last_activity",)),
    IndexSpec("ix_sessions_client_id", "sessions", ("client_id",)),
    IndexSpec("ix_sessions_status_expires_at", "sessions", ("status", "expires_at")),
    IndexSpec("ix_idempotency_keys_expires_at", "idempotency_keys", ("expires_at",)),
)
#: Indexes on existing tables: CONCURRENTLY on PostgreSQL.
INDEXES = (
    IndexSpec("ix_loads_status_origin", "loads", ("status", "origin")),
    IndexSpec("uq_calls_external_id", "calls", ("external_id",), unique=True),
    IndexSpec("ix_calls_load_id", "calls", ("load_id",)),
    IndexSpec(
        "uq_negotiations_call_session_round",
        "negotiations",
        ("call_id", "session_id", "round_number"),
        unique=True,
        where="session_id IS NOT NULL",
    ),
    IndexSpec(
        "uq_negotiations_call_round_nosession",
        "negotiations",
        ("call_id", "round_number"),
        unique=True,
        where="session_id IS NULL AND decision IS NOT NULL",
    ),
    IndexSpec("ix_negotiations_timestamp", "negotiations", ("timestamp",)),
)


def _create_new_tables(robust: bool) -> None:
    op.create_table(
        "sessions",
        sa.Column("session_id", sa.String(128), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(16), server_default="active", nullable=False),
        sa.Column("ttl_seconds", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_activity", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name="pk_sessions"),
        if_not_exists=robust,
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("api_key_hash", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("api_key_hash", "key", name="pk_idempotency_keys"),
        if_not_exists=robust,
    )
    for spec in NEW_TABLE_INDEXES:
        op.create_index(spec.name, spec.table, list(spec.columns), if_not_exists=robust)


def upgrade() -> None:
    if is_postgresql():
        _upgrade_postgresql()
    else:
        _upgrade_sqlite()
        create_indexes(INDEXES)


def _upgrade_postgresql() -> None:
    # A re-run after an interruption finds the tables already there: every statement is guarded.
    _create_new_tables(robust=True)
    with outside_transaction():
        for table, columns in _new_columns().items():
            for column in columns:
                op.add_column(table, column, if_not_exists=True)
        op.drop_constraint(PG_CARRIER_FK, "calls", type_="foreignkey", if_exists=True)
        create_indexes(INDEXES)


def _upgrade_sqlite() -> None:
    _create_new_tables(robust=False)
    # One batch per table, so each legacy table is copied exactly once.
    for table, columns in _new_columns().items():
        # The naming convention names calls' unnamed legacy foreign key so it can be dropped.
        naming = NAMING if table == "calls" else None
        with op.batch_alter_table(table, naming_convention=naming) as batch:
            for column in columns:
                batch.add_column(column)
            if table == "calls":
                batch.drop_constraint(SQLITE_CARRIER_FK, type_="foreignkey")
            for name in MONEY_COLUMNS[table]:
                batch.alter_column(name, type_=MONEY, existing_type=sa.Float())


def downgrade() -> None:
    if is_postgresql():
        _downgrade_postgresql()
    else:
        drop_indexes(INDEXES)
        _downgrade_sqlite()
    for spec in reversed(NEW_TABLE_INDEXES):
        op.drop_index(spec.name, table_name=spec.table, if_exists=is_postgresql())
    op.drop_table("idempotency_keys", if_exists=is_postgresql())
    op.drop_table("sessions", if_exists=is_postgresql())


def _downgrade_postgresql() -> None:
    with outside_transaction():
        drop_indexes(INDEXES)
        for table, columns in reversed(_new_columns().items()):
            for column in reversed(columns):
                op.drop_column(table, column.name, if_exists=True)
        # NOT VALID: the legacy constraint holds for new rows again, while calls recorded since
        # the upgrade that name an unrecorded carrier are kept rather than failing the downgrade.
        op.drop_constraint(PG_CARRIER_FK, "calls", type_="foreignkey", if_exists=True)
        op.create_foreign_key(
            PG_CARRIER_FK,
            "calls",
            "carriers",
            ["carrier_mc_number"],
            ["mc_number"],
            postgresql_not_valid=True,
        )


def _downgrade_sqlite() -> None:
    for table, columns in reversed(_new_columns().items()):
        with op.batch_alter_table(table) as batch:
            for name in MONEY_COLUMNS[table]:
                batch.alter_column(name, type_=sa.Float(), existing_type=MONEY)
            for column in reversed(columns):
                batch.drop_column(column.name)
            if table == "calls":
                batch.create_foreign_key(
                    SQLITE_CARRIER_FK, "carriers", ["carrier_mc_number"], ["mc_number"]
                )
