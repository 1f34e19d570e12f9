"""Bookings: a load is booked once, by one call, and every booking and release is kept.

* ``loads`` gains ``booked_call_id`` and ``booked_rate`` (nullable, no default): which call
  booked the load and at what rate, while it is ``booked``.
* New table ``load_bookings``: one row per booking or release of a load (time, call, the round
  that booked it, rate, reason), read by ``GET /api/loads/{load_id}`` and the reports.

On PostgreSQL the two new columns are catalog-only (each ACCESS EXCLUSIVE lock on ``loads``
lasts one statement, bounded by lock_timeout); creating ``load_bookings`` with its foreign keys
takes a SHARE ROW EXCLUSIVE lock on ``loads`` and ``calls`` for that one statement (writes wait,
reads go on). Nothing is rewritten or backfilled; every statement is re-runnable.

Revision ID: d4f6b8c0e204
Revises: c3e5a7b9d103
Create Date: 2026-12-03 09:00:00 UTC
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from negotiation.migration_ops import is_postgresql, outside_transaction

revision: str = "d4f6b8c0e204"
down_revision: str | None = "c3e5a7b9d103"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(12, 2)
INDEXES = (("ix_load_bookings_load_id", "load_id"), ("ix_load_bookings_created_at", "created_at"))


def _load_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("booked_call_id", sa.Integer(), nullable=True),
        sa.Column("booked_rate", MONEY, nullable=True),
    ]


def upgrade() -> None:
    robust = is_postgresql()  # re-runnable after an interruption
    # The new table and its indexes in the revision's transaction: nobody can see them yet.
    op.create_table(
        "load_bookings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("load_id", sa.String(), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=True),
        sa.Column("round_id", sa.Integer(), nullable=True),
        sa.Column("rate", MONEY, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["load_id"], ["loads.load_id"]),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"]),
        sa.PrimaryKeyConstraint("id", name="pk_load_bookings"),
        if_not_exists=robust,
    )
    for name, indexed in INDEXES:
        op.create_index(name, "load_bookings", [indexed], if_not_exists=robust)
    with outside_transaction():
        for column in _load_columns():
            op.add_column("loads", column, if_not_exists=robust)


def downgrade() -> None:
    robust = is_postgresql()
    with outside_transaction():
        for column in reversed(_load_columns()):
            if robust:
                op.drop_column("loads", column.name, if_exists=True)
            else:
                with op.batch_alter_table("loads") as batch:
                    batch.drop_column(column.name)
    for name, _ in reversed(INDEXES):
        op.drop_index(name, "load_bookings", if_exists=robust)
    op.drop_table("load_bookings", if_exists=robust)
