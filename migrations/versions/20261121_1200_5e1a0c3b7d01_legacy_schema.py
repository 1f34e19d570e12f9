"""The legacy schema, exactly as the original service's loads.db had it (before session ids).

On SQLite this is ``shared/fixtures/legacy_loads_schema.sql`` statement for statement (a test
compares them). Only SQLite files ever held legacy data, so PostgreSQL has no legacy database to
match; there the money columns are NUMERIC(12, 2) from the start, because changing a column's
type later rewrites the whole table under an ACCESS EXCLUSIVE lock (see docs/MIGRATIONS.md).

Revision ID: 5e1a0c3b7d01
Revises:
Create Date: 2026-11-21 12:00:00 UTC
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e1a0c3b7d01"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: FLOAT as the legacy service stored money; exact NUMERIC(12, 2) on PostgreSQL (see above).
MONEY = sa.Float().with_variant(sa.Numeric(12, 2), "postgresql")


def upgrade() -> None:
    if not op.get_context().as_sql and sa.inspect(op.get_bind()).has_table("loads"):
        raise RuntimeError(
            "the database already has the legacy tables but no alembic_version: adopt it with "
            "scripts/migrate_add_session_id.sh PATH (backup, stamp, upgrade, verify); "
            "see docs/MIGRATIONS.md"
        )
    op.create_table(
        "loads",
        sa.Column("load_id", sa.String(), nullable=False),
        sa.Column("origin", sa.String(), nullable=False),
        sa.Column("destination", sa.String(), nullable=False),
        sa.Column("pickup_datetime", sa.DateTime(), nullable=False),
        sa.Column("delivery_datetime", sa.DateTime(), nullable=False),
        sa.Column("equipment_type", sa.String(), nullable=False),
        sa.Column("loadboard_rate", MONEY, nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("weight", sa.Float(), nullable=True),
        sa.Column("commodity_type", sa.String(), nullable=True),
        sa.Column("num_of_pieces", sa.Integer(), nullable=True),
        sa.Column("miles", sa.Float(), nullable=True),
        sa.Column("dimensions", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("load_id"),
    )
    op.create_index("ix_loads_load_id", "loads", ["load_id"])
    op.create_table(
        "carriers",
        sa.Column("mc_number", sa.String(), nullable=False),
        sa.Column("company_name", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=True),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("phone", sa.String(), nullable=True),
        sa.Column("email", sa.String(), nullable=True),
        sa.Column("is_verified", sa.Boolean(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("mc_number"),
    )
    op.create_index("ix_carriers_mc_number", "carriers", ["mc_number"])
    op.create_table(
        "calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("carrier_mc_number", sa.String(), nullable=True),
        sa.Column("load_id", sa.String(), nullable=True),
        sa.Column("call_start_time", sa.DateTime(), nullable=True),
        sa.Column("call_end_time", sa.DateTime(), nullable=True),
        sa.Column("call_duration", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(), nullable=True),
        sa.Column("sentiment", sa.String(), nullable=True),
        sa.Column("initial_rate_offered", MONEY, nullable=True),
        sa.Column("final_rate_agreed", MONEY, nullable=True),
        sa.Column("negotiation_rounds", sa.Integer(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("call_transcript", sa.Text(), nullable=True),
        sa.Column("transferred_to_rep", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["carrier_mc_number"], ["carriers.mc_number"]),
        sa.ForeignKeyConstraint(["load_id"], ["loads.load_id"]),
    )
    op.create_index("ix_calls_id", "calls", ["id"])
    op.create_table(
        "negotiations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=True),
        sa.Column("round_number", sa.Integer(), nullable=False),
        sa.Column("carrier_offer", MONEY, nullable=True),
        sa.Column("system_response", sa.String(), nullable=True),
        sa.Column("timestamp", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"]),
    )
    op.create_index("ix_negotiations_id", "negotiations", ["id"])


def downgrade() -> None:
    op.drop_index("ix_negotiations_id", table_name="negotiations")
    op.drop_table("negotiations")
    op.drop_index("ix_calls_id", table_name="calls")
    op.drop_table("calls")
    op.drop_index("ix_carriers_mc_number", table_name="carriers")
    op.drop_table("carriers")
    op.drop_index("ix_loads_load_id", table_name="loads")
    op.drop_table("loads")
