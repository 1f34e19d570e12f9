"""Adopt a legacy SQLite ``loads.db`` (or upgrade one already under Alembic) without risking it.

``scripts/migrate_add_session_id.sh PATH`` runs :func:`main`. One run:

1. refuses a missing file, a file that is not SQLite, and a schema it does not recognise (the
   legacy schema without ``alembic_version``, or exactly the schema of the revision that
   ``alembic_version`` names);
2. opens ``BEGIN IMMEDIATE`` on the file: from here on no other connection can write, readers
   keep reading;
3. takes a backup ``PATH.backup.YYYYMMDD_HHMMSS`` with SQLite's online backup API and checks it
   (``PRAGMA integrity_check``, row counts equal to the file's);
4. stamps a legacy file at the first revision and upgrades to head, through Alembic, inside that
   same transaction;
5. verifies: ``negotiations.session_id`` and both session indexes, the whole schema equal to a
   fresh head database's, every table's row count unchanged, ``PRAGMA integrity_check`` ok,
   ``PRAGMA foreign_key_check`` with no new violation;
6. commits only if all of that held.

Why this design: any failure before the commit rolls the transaction back, and SQLite's journal
restores the file byte for byte, even when the process is killed (the next opener rolls the hot
journal back). Migrating a copy and swapping it in would instead lose whatever a running service
wrote meanwhile, and leave that service writing to the unlinked old file. Here a running service's
writes wait (its busy timeout) or fail with "database is locked"; none is lost.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool

from negotiation import sqlite_checks as checks
from negotiation.migration_report import Report, format_report

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
#: Page cache (KiB) for the checks: integrity_check probes every index entry, and a 64 MB cache
#: halves its time at a bounded memory cost (peak about 140 MB for a million rounds).
VERIFY_CACHE_KIB = 65536
EXIT_FAILED = 1
EXIT_REFUSED = 2


class MigrationError(Exception):
    """The run stopped; the database is as it was. ``refused``: nothing was even attempted."""

    def __init__(self, message: str, *, backup: Path | None = None, refused: bool = False):
        super().__init__(message)
        self.backup = backup
        self.refused = refused


class Migrator:
    """One migration run over the SQLite file at ``path``."""

    def __init__(
        self,
        path: Path,
        *,
        migrations: Path = MIGRATIONS,
        busy_timeout: float = 30.0,
        now: Callable[[], dt.datetime] = dt.datetime.now,
    ) -> None:
        self.path = path
        self.migrations = migrations
        self.busy_timeout = busy_timeout
        self.now = now
        self.script = ScriptDirectory.from_config(self._config())
        self._expected: dict[str, checks.Schema] = {}
        self._backup: Path | None = None

    def _config(self, connection: Connection | None = None) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(self.migrations))
        cfg.attributes["configure_logger"] = False
        if connection is not None:
            cfg.attributes["connection"] = connection
        return cfg

    def run(self) -> Report:
        """Migrate the file to head; raise :class:`MigrationError` with the file unchanged."""
        started = time.perf_counter()
        problem = checks.sqlite_file_problem(self.path)
        if problem is not None:
            raise MigrationError(problem, refused=True)
        engine = self._engine()
        try:
            with engine.connect() as conn:
                try:
                    conn.begin()
                except DBAPIError as exc:
                    raise MigrationError(
                        f"could not start a write transaction on {self.path} "
                        f"(waited up to {self.busy_timeout:g} s): {exc.orig}",
                        refused=True,
                    ) from exc
                try:
                    report = self._run_locked(conn)
                except MigrationError as exc:
                    conn.rollback()
                    exc.backup = exc.backup or self._backup
                    raise
                except Exception as exc:
                    conn.rollback()
                    raise MigrationError(
                        f"{type(exc).__name__}: {exc}", backup=self._backup
                    ) from exc
                if report.already_at_head:
                    conn.rollback()
                else:
                    conn.commit()
        finally:
            engine.dispose()
        report.seconds["total"] = time.perf_counter() - started
        return report

    def _engine(self) -> Engine:
        engine = create_engine(
            f"sqlite:///{self.path}",
            poolclass=StaticPool,
            connect_args={"timeout": self.busy_timeout},
        )

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
            # Transactions are ours (BEGIN IMMEDIATE below), DDL included: the driver must not
            # begin or commit on its own. Batch table rebuilds need foreign keys off.
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA foreign_keys = OFF")

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def _run_locked(self, conn: Connection) -> Report:
        raw = conn.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        head = self.script.get_current_head()
        assert head is not None
        start = self._identify(raw)
        report = Report(path=str(self.path), head=head, start=start)
        if report.already_at_head:
            report.rows = checks.row_counts(raw)
            return report

        before = checks.row_counts(raw)
        self._check_disk_space()
        clock = time.perf_counter()
        report.backup = str(self._take_backup(before))
        report.seconds["backup"] = time.perf_counter() - clock

        clock = time.perf_counter()
        cfg = self._config(conn)
        if start is None:
            report.stamped = self._first_revision()
            command.stamp(cfg, report.stamped)
        base = start or report.stamped
        report.applied = [
            (r.revision, r.doc) for r in reversed(list(self.script.iterate_revisions(head, base)))
        ]
        command.upgrade(cfg, "head")
        report.seconds["upgrade"] = time.perf_counter() - clock

        clock = time.perf_counter()
        report.rows, report.preexisting_fk_violations = self._verify(raw, head, before)
        report.new_tables = sorted(set(report.rows) - set(before))
        report.seconds["verify"] = time.perf_counter() - clock
        return report

    def _first_revision(self) -> str:
        bases = self.script.get_bases()
        assert len(bases) == 1
        return bases[0]

    def _expected_schema(self, revision: str) -> checks.Schema:
        """The schema Alembic builds for ``revision`` in a fresh in-memory database."""
        if revision not in self._expected:
            engine = create_engine("sqlite://", poolclass=StaticPool)
            with engine.connect() as conn:
                command.upgrade(self._config(conn), revision)
                conn.commit()
                raw = conn.connection.driver_connection
                assert isinstance(raw, sqlite3.Connection)
                self._expected[revision] = checks.schema(raw)
            engine.dispose()
        return self._expected[revision]

    def _identify(self, raw: sqlite3.Connection) -> str | None:
        """The file's revision (None: legacy); refuse anything unrecognised."""
        revisions = checks.alembic_revisions(raw)
        actual = checks.schema(raw)
        if not revisions:
            if not actual:
                raise MigrationError(
                    f"{self.path} has no tables: nothing to adopt "
                    "(a new database is created by `alembic upgrade head`)",
                    refused=True,
                )
            legacy = self._expected_schema(self._first_revision())
            if actual != legacy:
                raise MigrationError(
                    f"unrecognised schema in {self.path}: it has no alembic_version table and is "
                    f"not the legacy loads.db schema ({checks.schema_difference(actual, legacy)})",
                    refused=True,
                )
            return None
        if len(revisions) != 1:
            raise MigrationError(
                f"unrecognised alembic_version in {self.path}: several revisions {revisions}",
                refused=True,
            )
        revision = revisions[0]
        try:
            self.script.get_revision(revision)
        except CommandError:
            raise MigrationError(
                f"unrecognised revision {revision!r} in {self.path}: not one of this project's "
                "migrations (written by a newer version of the service?)",
                refused=True,
            ) from None
        expected = self._expected_schema(revision)
        if actual != expected:
            raise MigrationError(
                f"unrecognised schema in {self.path}: alembic_version says {revision} but the "
                f"tables differ from that revision ({checks.schema_difference(actual, expected)})",
                refused=True,
            )
        return revision

    def _check_disk_space(self) -> None:
        # Backup (one copy) + rollback journal and rebuilt tables (up to about two more).
        need = 3 * self.path.stat().st_size
        free = shutil.disk_usage(self.path.parent).free
        if free < need:
            raise MigrationError(
                f"not enough free space next to {self.path}: {free / 1e6:.0f} MB free, "
                f"about {need / 1e6:.0f} MB needed (backup, journal, rebuilt tables)",
                refused=True,
            )

    def _take_backup(self, counts: dict[str, int]) -> Path:
        stem = f"{self.path}.backup.{self.now():%Y%m%d_%H%M%S}"
        target = Path(stem)
        n = 1
        while target.exists():
            target = Path(f"{stem}.{n}")
            n += 1
        checks.backup(self.path, target, busy_timeout=self.busy_timeout)
        self._backup = target
        problems, copied = checks.inspect_file(target)
        if problems:
            raise MigrationError(
                f"the backup fails PRAGMA integrity_check ({'; '.join(problems[:3])}): "
                f"{self.path} itself is probably damaged; nothing was migrated"
            )
        if copied != counts:
            raise MigrationError(
                f"the backup's row counts {copied} differ from the file's {counts}"
            )
        return target

    def _verify(
        self, raw: sqlite3.Connection, head: str, before: dict[str, int]
    ) -> tuple[dict[str, int], int]:
        """Check the upgraded (uncommitted) file; return rows per table and old FK violations."""
        raw.execute(f"PRAGMA cache_size = -{VERIFY_CACHE_KIB}")
        problems = checks.session_id_problems(raw)
        if checks.alembic_revisions(raw) != [head]:
            problems.append(f"alembic_version is not {head}")
        actual, expected = checks.schema(raw), self._expected_schema(head)
        if actual != expected:
            problems.append(
                f"schema differs from head: {checks.schema_difference(actual, expected)}"
            )
        after = checks.row_counts(raw)
        for table in sorted(set(before) | set(after)):
            if after.get(table, 0) != before.get(table, 0):
                problems.append(
                    f"{table} had {before.get(table, 0)} rows and now has {after.get(table, 0)}"
                )
        problems += [f"integrity_check: {p}" for p in checks.integrity_problems(raw)[:5]]
        violations = checks.foreign_key_violations(raw)
        old: set[tuple[str, int, str]] = set()
        if violations:  # compare with the untouched backup
            assert self._backup is not None
            copy = sqlite3.connect(self._backup)
            old = checks.foreign_key_violations(copy)
            copy.close()
        new = violations - old
        if new:
            sample = ", ".join(f"{t} rowid {r} -> {p}" for t, r, p in sorted(new)[:5])
            problems.append(f"foreign_key_check: {len(new)} new violations ({sample})")
        if problems:
            raise MigrationError("verification failed: " + "; ".join(problems))
        return after, len(violations)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m negotiation.migrate_sqlite [PATH] [--json]``."""
    parser = argparse.ArgumentParser(
        prog="migrate_add_session_id.sh",
        description="Back up, adopt or upgrade, and verify a SQLite loads.db (all or nothing).",
    )
    parser.add_argument("path", nargs="?", default="./loads.db", type=Path)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--busy-timeout", type=float, default=30.0, help="seconds to wait for other writers"
    )
    parser.add_argument(
        "--migrations", type=Path, default=MIGRATIONS, help="Alembic revisions directory"
    )
    args = parser.parse_args(argv)
    path = args.path.absolute()
    try:
        report = Migrator(path, migrations=args.migrations, busy_timeout=args.busy_timeout).run()
    except MigrationError as exc:
        where = (
            f"The backup taken before the attempt is at {exc.backup}."
            if exc.backup is not None
            else "No backup was needed."
        )
        print(f"error: {exc}\n{path} was not changed. {where}", file=sys.stderr)
        return EXIT_REFUSED if exc.refused else EXIT_FAILED
    if args.json:
        data = asdict(report) | {
            "already_at_head": report.already_at_head,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
        print(json.dumps(data, indent=2))
    else:
        print(format_report(report), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
