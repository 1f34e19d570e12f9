"""Facts about a SQLite file that the migration script checks before, during and after a run.

All functions take a plain :class:`sqlite3.Connection` and only read, except :func:`backup`,
which writes the copy.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import NamedTuple

SQLITE_HEADER = b"SQLite format 3\x00"
VERSION_TABLE = "alembic_version"
#: What the session-id revision adds: the column, and the indexes with their columns.
SESSION_INDEXES = {
    "idx_negotiations_session_id": ("session_id",),
    "idx_negotiations_call_session": ("call_id", "session_id"),
}


class Column(NamedTuple):
    name: str
    type: str
    notnull: bool
    default: str | None
    pk: int


class IndexShape(NamedTuple):
    name: str
    unique: bool
    origin: str
    partial: bool
    columns: tuple[str | None, ...]


class ForeignKey(NamedTuple):
    table: str
    columns: tuple[str, ...]
    referred: tuple[str | None, ...]


class TableShape(NamedTuple):
    columns: tuple[Column, ...]
    indexes: tuple[IndexShape, ...]
    foreign_keys: tuple[ForeignKey, ...]


#: A database's schema as SQLite reports it, independent of how the DDL text was spelled.
Schema = dict[str, TableShape]


def sqlite_file_problem(path: Path) -> str | None:
    """Why ``path`` is not an existing SQLite database file, or None when it is one."""
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_file():
        return f"{path} is not a regular file"
    with path.open("rb") as f:
        header = f.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        what = "an empty file" if not header else "not a SQLite database"
        return f"{path} is {what} (no 'SQLite format 3' header)"
    return None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def tables(conn: sqlite3.Connection) -> list[str]:
    """User tables, sorted (SQLite's internal ``sqlite_*`` tables excluded)."""
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' "
        "ESCAPE '\\' ORDER BY name"
    )
    return [r[0] for r in rows]


def schema(conn: sqlite3.Connection) -> Schema:
    """Every table but ``alembic_version``: columns, indexes and foreign keys."""
    result: Schema = {}
    for table in tables(conn):
        if table == VERSION_TABLE:
            continue
        q = _quote(table)
        columns = tuple(
            sorted(
                Column(r[1], str(r[2]).upper(), bool(r[3]), r[4], r[5])
                for r in conn.execute(f"PRAGMA table_info({q})")
            )
        )
        indexes = tuple(
            sorted(
                IndexShape(
                    r[1],
                    bool(r[2]),
                    r[3],
                    bool(r[4]),
                    tuple(c[2] for c in conn.execute(f"PRAGMA index_info({_quote(r[1])})")),
                )
                for r in conn.execute(f"PRAGMA index_list({q})")
            )
        )
        keys: dict[int, list[tuple[str, str, str | None]]] = {}
        for r in conn.execute(f"PRAGMA foreign_key_list({q})"):
            keys.setdefault(r[0], []).append((r[2], r[3], r[4]))
        foreign_keys = tuple(
            sorted(
                ForeignKey(parts[0][0], tuple(p[1] for p in parts), tuple(p[2] for p in parts))
                for parts in keys.values()
            )
        )
        result[table] = TableShape(columns, indexes, foreign_keys)
    return result


def schema_difference(actual: Schema, expected: Schema) -> str:
    """A short human description of how ``actual`` differs from ``expected``."""
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    parts = []
    if missing:
        parts.append(f"missing tables {', '.join(missing)}")
    if extra:
        parts.append(f"unexpected tables {', '.join(extra)}")
    for table in sorted(set(actual) & set(expected)):
        a, e = actual[table], expected[table]
        columns = {c.name for c in a.columns} ^ {c.name for c in e.columns}
        if columns:
            parts.append(f"{table}: columns differ ({', '.join(sorted(columns))})")
        elif a.columns != e.columns:
            parts.append(f"{table}: column types or constraints differ")
        if a.indexes != e.indexes:
            names = {i.name for i in a.indexes} ^ {i.name for i in e.indexes}
            parts.append(f"{table}: indexes differ ({', '.join(sorted(names)) or 'definitions'})")
        if a.foreign_keys != e.foreign_keys:
            parts.append(f"{table}: foreign keys differ")
    return "; ".join(parts) or "no difference"


def alembic_revisions(conn: sqlite3.Connection) -> list[str] | None:
    """The revisions in ``alembic_version``, or None when the table does not exist."""
    if VERSION_TABLE not in tables(conn):
        return None
    return [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]


def row_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows per user table (``alembic_version`` excluded)."""
    return {
        # The identifier comes from sqlite_master and is quoted.
        t: int(conn.execute(f"SELECT count(*) FROM {_quote(t)}").fetchone()[0])  # noqa: S608
        for t in tables(conn)
        if t != VERSION_TABLE
    }


def integrity_problems(conn: sqlite3.Connection) -> list[str]:
    """``PRAGMA integrity_check``'s complaints (empty when it says ``ok``)."""
    result = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
    return [] if result == ["ok"] else result


def session_id_problems(conn: sqlite3.Connection) -> list[str]:
    """What is missing of ``negotiations.session_id`` (TEXT) and its two indexes."""
    problems = []
    columns = {r[1]: str(r[2]).upper() for r in conn.execute("PRAGMA table_info(negotiations)")}
    if columns.get("session_id") != "TEXT":
        problems.append("column negotiations.session_id (TEXT) is missing")
    indexes = {
        r[1]: tuple(c[2] for c in conn.execute(f"PRAGMA index_info({_quote(r[1])})"))
        for r in conn.execute("PRAGMA index_list(negotiations)")
    }
    for name, wanted in SESSION_INDEXES.items():
        if indexes.get(name) != wanted:
            problems.append(f"index {name} on negotiations ({', '.join(wanted)}) is missing")
    return problems


def inspect_file(path: Path) -> tuple[list[str], dict[str, int]]:
    """``integrity_check`` complaints and rows per table of the database file at ``path``."""
    conn = sqlite3.connect(path)
    try:
        return integrity_problems(conn), row_counts(conn)
    finally:
        conn.close()


def foreign_key_violations(conn: sqlite3.Connection) -> set[tuple[str, int, str]]:
    """``PRAGMA foreign_key_check`` as ``(table, rowid, referred table)`` triples."""
    return {(r[0], r[1], r[2]) for r in conn.execute("PRAGMA foreign_key_check")}


def backup(source: Path, target: Path, *, busy_timeout: float) -> None:
    """Copy ``source`` to a new file ``target`` with SQLite's online backup API.

    The copy is one consistent snapshot (one backup step under a read lock), so it is safe
    while other connections write. ``target`` must not exist; it gets ``source``'s permissions.
    """
    mode = stat.S_IMODE(source.stat().st_mode)
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
    os.chmod(target, mode)
    src = sqlite3.connect(source, timeout=busy_timeout)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
