"""Add negotiations.session_id (TEXT, nullable) and the indexes that find rounds by session.

A nullable column without a default is a catalog-only change on both databases. On PostgreSQL
the indexes are built with CREATE INDEX CONCURRENTLY, outside a transaction, so writers are
never blocked while they build.

Revision ID: 8b2d4f6a9c02
Revises: 5e1a0c3b7d01
Create Date: 2026-11-21 12:01:00 UTC
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8b2d4f6a9c02"
down_revision: str | None = "5e1a0c3b7d01"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "idx_negotiations_session_id": ["session_id"],
    "idx_negotiations_call_session": ["call_id", "session_id"],
}


def upgrade() -> None:
    op.add_column("negotiations", sa.Column("session_id", sa.Text(), nullable=True))
    if op.get_context().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            for name, columns in INDEXES.items():
                op.create_index(
                    name,
                    "negotiations",
                    columns,
                    postgresql_concurrently=True,
                    if_not_exists=True,
                )
    else:
        for name, columns in INDEXES.items():
            op.create_index(name, "negotiations", columns)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            for name in INDEXES:
                op.drop_index(
                    name,
                    table_name="negotiations",
                    postgresql_concurrently=True,
                    if_exists=True,
                )
    else:
        for name in INDEXES:
            op.drop_index(name, table_name="negotiations")
    with op.batch_alter_table("negotiations") as batch:
        batch.drop_column("session_id")
