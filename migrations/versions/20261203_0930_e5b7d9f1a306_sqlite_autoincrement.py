"""Ids are never reused: SQLite's ``calls`` and ``negotiations`` get AUTOINCREMENT.

Without AUTOINCREMENT SQLite gives a new row the largest id in the table plus one, so after a
purge (``DELETE /api/sessions/{id}?purge=true``) removed the newest rounds, new rounds took their
ids again and ``after_id``, cursors and exports could skip or repeat rows. With it, SQLite keeps
the largest id ever used in ``sqlite_sequence`` and never goes below it.

SQLite cannot add AUTOINCREMENT to a table in place: each table is rebuilt once by a batch
(create, copy every row with its id, drop, rename; indexes are re-created), under the migration's
write lock. The copy sets ``sqlite_sequence`` to the largest id present, so ids continue from
there. PostgreSQL is untouched: its sequences never hand out a number twice.

Revision ID: e5b7d9f1a306
Revises: d4f6b8c0e204
Create Date: 2026-12-03 09:30:00 UTC
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from negotiation.migration_ops import is_postgresql

revision: str = "e5b7d9f1a306"
down_revision: str | None = "d4f6b8c0e204"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The tables whose integer ids clients see (and page by).
TABLES = ("calls", "negotiations")


def _rebuild(autoincrement: bool) -> None:
    if is_postgresql():
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)
    if not is_postgresql():
        # The counters' table itself is SQLite's and stays; only these tables' entries go.
        op.execute(
            sa.text("DELETE FROM sqlite_sequence WHERE name IN :names").bindparams(
                sa.bindparam("names", value=list(TABLES), expanding=True)
            )
        )
