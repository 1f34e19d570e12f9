"""Add negotiations.session_id (TEXT, nullable) and the indexes that find rounds by session.

A nullable column without a default is a catalog-only change on both databases (no row is
rewritten). On PostgreSQL the ALTER commits on its own, so its ACCESS EXCLUSIVE lock lasts only
that statement (bounded by lock_timeout while it waits), and the indexes are built with
CREATE INDEX CONCURRENTLY: writers keep inserting while they build. Every statement is
re-runnable, so an interrupted run is simply run again.

Revision ID: 8b2d4f6a9c02
Revises: 5e1a0c3b7d01
Create Date: 2026-11-21 12:01:00 UTC
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

revision: str = "8b2d4f6a9c02"
down_revision: str | None = "5e1a0c3b7d01"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    IndexSpec("idx_negotiations_session_id", "negotiations", ("session_id",)),
    IndexSpec("idx_negotiations_call_session", "negotiations", ("call_id", "session_id")),
)


def upgrade() -> None:
    with outside_transaction():
        op.add_column(
            "negotiations",
            sa.Column("session_id", sa.Text(), nullable=True),
            if_not_exists=is_postgresql(),
        )
        create_indexes(INDEXES)


def downgrade() -> None:
    with outside_transaction():
        drop_indexes(INDEXES)
        if is_postgresql():
            op.drop_column("negotiations", "session_id", if_exists=True)
            return
    with op.batch_alter_table("negotiations") as batch:
        batch.drop_column("session_id")
