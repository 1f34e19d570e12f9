"""``negotiation copy-database SOURCE_URL TARGET_URL``: copy a database at head into an empty one.

:mod:`~negotiation.copydb.plan` reads what to copy from the models' metadata,
:mod:`~negotiation.copydb.ends` opens and talks to either kind of database, and
:mod:`~negotiation.copydb.run` runs the copy with its checks. docs/MIGRATIONS.md, "Moving from
SQLite to PostgreSQL", describes it for operators.
"""

from negotiation.copydb.run import CopyFailed, CopyRefused, CopyReport, copy_database

__all__ = ["CopyFailed", "CopyRefused", "CopyReport", "copy_database"]
