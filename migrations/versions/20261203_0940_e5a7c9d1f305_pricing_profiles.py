"""Pricing profiles: a versioned profiles table and the profile columns of sessions, loads, rounds.

* ``pricing_profiles`` is new: versions are only ever inserted (primary key name + version).
  It starts empty; the service records ``standard`` from its settings when it starts.
* ``sessions.profile`` and ``loads.profile`` name a profile chosen by the client.
* ``negotiations`` gains ``profile``, ``profile_version``, ``round_limit`` and ``ceiling``: what
  decided each round. Rounds recorded before stay NULL (legacy).

Every new column is nullable without a default: a catalog-only change on both databases, no row
is rewritten. On PostgreSQL each ALTER commits on its own, so its ACCESS EXCLUSIVE lock lasts
that statement only (bounded by lock_timeout while it waits); every statement is re-runnable.

Revision ID: e5a7c9d1f305
Revises: e5b7d9f1a306
Create Date: 2026-12-03 09:40:00 UTC
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from negotiation.migration_ops import is_postgresql, outside_transaction

revision: str = "e5a7c9d1f305"
down_revision: str | None = "e5b7d9f1a306"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(12, 2)


def _new_columns() -> dict[str, list[sa.Column[object]]]:
    return {
        "sessions": [sa.Column("profile", sa.String(64), nullable=True)],
        "loads": [sa.Column("profile", sa.String(64), nullable=True)],
        "negotiations": [
            sa.Column("profile", sa.String(64), nullable=True),
            sa.Column("profile_version", sa.Integer(), nullable=True),
            sa.Column("round_limit", MONEY, nullable=True),
            sa.Column("ceiling", MONEY, nullable=True),
        ],
    }


def upgrade() -> None:
    robust = is_postgresql()
    op.create_table(
        "pricing_profiles",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("max_rounds", sa.Integer(), nullable=False),
        sa.Column("max_markup", sa.Numeric(10, 6), nullable=False),
        sa.Column("concession", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name="pk_pricing_profiles"),
        if_not_exists=robust,
    )
    with outside_transaction():
        for table, columns in _new_columns().items():
            for column in columns:
                # SQLite adds a nullable column in place too (ALTER TABLE ADD COLUMN).
                op.add_column(table, column, if_not_exists=robust)


def downgrade() -> None:
    robust = is_postgresql()
    with outside_transaction():
        for table, columns in reversed(_new_columns().items()):
            for column in reversed(columns):
                # SQLite 3.35+ drops a column that no index or constraint uses in place.
                op.drop_column(table, column.name, if_exists=robust)
    op.drop_table("pricing_profiles", if_exists=robust)
