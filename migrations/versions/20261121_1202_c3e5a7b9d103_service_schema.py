"""What the service needs: exact money, decisions, ceilings, caller ids, sessions, idempotency.

* Money columns become NUMERIC(12, 2). On SQLite the batch rebuild copies each table once; on
  PostgreSQL the tables only ever held rows written by this service's migrations (the legacy
  data lives in SQLite files), so the type change rewrites empty tables.
* ``negotiations`` gains ``decision``, ``counter_offer`` and ``notes``; round numbers become
  unique per (call, session) negotiation for every row the service writes. Legacy rows have no
  decision and are exempt, because the old service stored duplicate round numbers.
* ``calls`` gains ``external_id`` (unique) and loses the foreign key to ``carriers``: a call may
  name a carrier the broker has never recorded.
* ``loads`` gains ``max_rate`` (the negotiation ceiling).
* New tables ``sessions`` and ``idempotency_keys``.

Revision ID: c3e5a7b9d103
Revises: 8b2d4f6a9c02
Create Date: 2026-11-21 12:02:00 UTC
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "c3e5a7b9d103"
down_revision: str | None = "8b2d4f6a9c02"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(12, 2)
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}

MONEY_COLUMNS = {
    "loads": ["loadboard_rate"],
    "calls": ["initial_rate_offered", "final_rate_agreed"],
    "negotiations": ["carrier_offer"],
}

# (name, table, columns, unique, partial-index condition)
INDEXES: list[tuple[str, str, list[str], bool, str | None]] = [
    ("ix_loads_status_origin", "loads", ["status", "origin"], False, None),
    ("uq_calls_external_id", "calls", ["external_id"], True, None),
    ("ix_calls_load_id", "calls", ["load_id"], False, None),
    (
        "uq_negotiations_call_session_round",
        "negotiations",
        ["call_id", "session_id", "round_number"],
        True,
        "session_id IS NOT NULL",
    ),
    (
        "uq_negotiations_call_round_nosession",
        "negotiations",
        ["call_id", "round_number"],
        True,
        "session_id IS NULL AND decision IS NOT NULL",
    ),
    ("ix_negotiations_timestamp", "negotiations", ["timestamp"], False, None),
]


def _is_postgresql() -> bool:
    return op.get_context().dialect.name == "postgresql"


def _index_kwargs(where: str | None) -> dict[str, Any]:
    if where is None:
        return {}
    return {"sqlite_where": sa.text(where), "postgresql_where": sa.text(where)}


def upgrade() -> None:
    postgresql = _is_postgresql()
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
    )
    op.create_index("ix_sessions_last_activity", "sessions", ["last_activity"])
    op.create_index("ix_sessions_client_id", "sessions", ["client_id"])
    op.create_index("ix_sessions_status_expires_at", "sessions", ["status", "expires_at"])
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
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])

    with op.batch_alter_table("loads") as batch:
        batch.add_column(sa.Column("max_rate", MONEY, nullable=True))
    with op.batch_alter_table("calls", naming_convention=NAMING) as batch:
        batch.add_column(sa.Column("external_id", sa.String(255), nullable=True))
        batch.drop_constraint(
            "calls_carrier_mc_number_fkey" if postgresql else "fk_calls_carrier_mc_number_carriers",
            type_="foreignkey",
        )
    with op.batch_alter_table("negotiations") as batch:
        batch.add_column(sa.Column("decision", sa.String(16), nullable=True))
        batch.add_column(sa.Column("counter_offer", MONEY, nullable=True))
        batch.add_column(sa.Column("notes", sa.Text(), nullable=True))

    for table, columns in MONEY_COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(
                    column,
                    type_=MONEY,
                    existing_type=sa.Float(),
                    postgresql_using=f"round({column}::numeric, 2)",
                )

    if postgresql:
        with op.get_context().autocommit_block():
            for name, table, columns, unique, where in INDEXES:
                op.create_index(
                    name,
                    table,
                    columns,
                    unique=unique,
                    postgresql_concurrently=True,
                    if_not_exists=True,
                    **_index_kwargs(where),
                )
    else:
        for name, table, columns, unique, where in INDEXES:
            op.create_index(name, table, columns, unique=unique, **_index_kwargs(where))


def downgrade() -> None:
    postgresql = _is_postgresql()
    if postgresql:
        with op.get_context().autocommit_block():
            for name, table, *_ in reversed(INDEXES):
                op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
    else:
        for name, table, *_ in reversed(INDEXES):
            op.drop_index(name, table_name=table)

    for table, columns in MONEY_COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(column, type_=sa.Float(), existing_type=MONEY)

    with op.batch_alter_table("negotiations") as batch:
        batch.drop_column("notes")
        batch.drop_column("counter_offer")
        batch.drop_column("decision")
    with op.batch_alter_table("calls") as batch:
        batch.create_foreign_key(
            "calls_carrier_mc_number_fkey" if postgresql else "fk_calls_carrier_mc_number_carriers",
            "carriers",
            ["carrier_mc_number"],
            ["mc_number"],
        )
        batch.drop_column("external_id")
    with op.batch_alter_table("loads") as batch:
        batch.drop_column("max_rate")

    op.drop_index("ix_idempotency_keys_expires_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index("ix_sessions_status_expires_at", table_name="sessions")
    op.drop_index("ix_sessions_client_id", table_name="sessions")
    op.drop_index("ix_sessions_last_activity", table_name="sessions")
    op.drop_table("sessions")
