"""One copy: check both ends, migrate the target, copy every table, verify, commit.

The order, and why:

1. Source, in the snapshot it is read in: at head (else refused), no foreign-key orphans (a
   legacy SQLite file may have some; the target's constraints would reject them), totals per
   table (rows, id sums, money sums in cents).
2. Target: refused if any service table holds a row; else ``alembic upgrade head``.
3. One target transaction: lock, check empty again, copy each table in primary-key batches,
   move the id sequences past the copied ids (and past ids the source handed out and then lost
   to a purge), compute the target's totals and compare them with the source's.
4. The source's change marker is read again; if another connection wrote to the source since
   the copy began, the copy is a stale snapshot: refused.
5. Commit. Any failure or refusal before that rolls the target transaction back, so the target
   is left migrated to head and empty, and a rerun starts from scratch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.util.concurrency import await_, greenlet_spawn

from negotiation.copydb import ends
from negotiation.copydb.plan import TablePlan, Totals, table_plans
from negotiation.migrate_sqlite import MIGRATIONS

#: Rows per batch: large enough that per-statement costs vanish, small enough for flat memory.
BATCH = 10_000

#: ``progress(table, rows)`` returns a context manager yielding ``advance(n)``.
Progress = Callable[[str, int], AbstractContextManager[Callable[[int], None] | None]]


class CopyRefused(Exception):
    """The copy was not attempted, or was undone, for a reason the user can fix (exit 2)."""


class CopyFailed(Exception):
    """The copy failed; the target was left empty (exit 1)."""


@dataclass
class TableReport:
    name: str
    totals: Totals
    #: The next id the target hands out for the table's serial column (None: no such column).
    next_id: int | None
    seconds: float


@dataclass
class CopyReport:
    source: str
    target: str
    revision: str
    tables: list[TableReport] = field(default_factory=list)
    seconds: float = 0.0
    #: PostgreSQL target: its foreign-key triggers were skipped (see ``ends.lock_for_copy``).
    skipped_fk_triggers: bool = False

    @property
    def rows(self) -> int:
        return sum(t.totals.rows for t in self.tables)


def _alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["configure_logger"] = False
    if url is not None:
        cfg.attributes["url"] = url
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def _ignore(_rows: int) -> None:
    pass


def _no_progress(_table: str, _rows: int) -> AbstractContextManager[None]:
    return nullcontext()


def copy_database(
    source_url: str,
    target_url: str,
    *,
    progress: Progress | None = None,
    batch_size: int = BATCH,
) -> CopyReport:
    """Copy every table of the database at ``source_url`` into the one at ``target_url``.

    Raises :class:`CopyRefused` or :class:`CopyFailed` (the target then holds no rows),
    SQLAlchemy's ``DBAPIError`` when a database cannot be reached or fails, ``OSError`` for a
    missing source file and ``ValueError`` for an unsupported URL. It runs its own event loop:
    call it from synchronous code (or a thread).
    """
    report = CopyReport(ends.describe(source_url), ends.describe(target_url), head_revision())
    started = time.perf_counter()

    async def run() -> None:
        async with (
            ends.connect(source_url, source=True) as source,
            ends.connect(target_url, source=False) as target,
        ):
            copy = _Copy(source, target, target_url, report, progress or _no_progress, batch_size)
            await greenlet_spawn(copy.run)

    asyncio.run(run())
    report.seconds = time.perf_counter() - started
    return report


@dataclass
class _Copy:
    source: Connection
    target: Connection
    target_url: str
    report: CopyReport
    progress: Progress
    batch_size: int
    plans: list[TablePlan] = field(default_factory=table_plans)

    def run(self) -> None:
        # SQLite: read before the snapshot begins; PostgreSQL: the snapshot's first statement.
        marker = ends.change_marker(self.source)
        self._check_source()
        expected = {p.name: p.totals(self.source) for p in self.plans}
        self._refuse_data_in_target()
        self.target.rollback()
        await_(asyncio.to_thread(command.upgrade, _alembic_config(self.target_url), "head"))

        self.report.skipped_fk_triggers = ends.lock_for_copy(self.target, self.plans)
        self._refuse_data_in_target()
        for plan in self.plans:
            self._copy_table(plan, expected[plan.name])
        self._verify(expected)

        self.source.commit()  # end the snapshot, then look for writes made since it began
        if ends.change_marker(self.source) != marker:
            raise CopyRefused(
                f"{self.report.source} was written to while it was being copied; the target "
                "was left empty. Stop the service (or anything else writing to the source) "
                "and run the copy again."
            )
        self.source.rollback()
        self.target.commit()

    def _check_source(self) -> None:
        found, head = ends.revision(self.source), self.report.revision
        if found != head:
            what = f"is at revision {found}" if found else "has no alembic_version"
            raise CopyRefused(
                f"{self.report.source} {what}, not at head ({head}). Upgrade it first "
                "(SQLite: scripts/migrate_add_session_id.sh PATH; PostgreSQL: alembic upgrade "
                "head), then copy."
            )
        orphans = ends.foreign_key_orphans(self.source)
        if orphans:
            raise CopyRefused(
                f"{self.report.source} has {len(orphans)} rows whose foreign key names a missing "
                f"row ({', '.join(orphans[:5])}), which the target would reject. Delete or "
                "correct them in a copy of the source (PRAGMA foreign_key_check lists them), "
                "then copy that."
            )

    def _refuse_data_in_target(self) -> None:
        filled = ends.tables_with_rows(self.target, self.plans)
        if filled:
            raise CopyRefused(
                f"{self.report.target} already holds data (in {', '.join(filled)}); nothing was "
                "copied. Copy into a new, empty database (e.g. createdb), or drop and recreate "
                "this one if its data is not needed."
            )

    def _copy_table(self, plan: TablePlan, expected: Totals) -> None:
        started = time.perf_counter()
        with self.progress(plan.name, expected.rows) as advance:
            ends.write_table(self.target, plan, self._batches(plan), advance or _ignore)
        next_id = None
        if plan.serial is not None:
            last = ends.serial_high_water(self.source, plan)
            ends.continue_serial(self.target, plan, last)
            next_id = last + 1
        seconds = time.perf_counter() - started
        self.report.tables.append(TableReport(plan.name, expected, next_id, seconds))

    def _batches(self, plan: TablePlan) -> Iterator[list[tuple[Any, ...]]]:
        """The source's rows in key order, as values ready for the target's driver."""
        dialect = self.target.dialect
        processors = [
            (i, p)
            for i, kind in enumerate(plan.transfer_types())
            if (p := kind.dialect_impl(dialect).bind_processor(dialect)) is not None
        ]
        after = None
        while True:
            batch = self.source.execute(plan.batch(after, self.batch_size)).all()
            if not batch:
                return
            after = plan.key_of(batch[-1])
            if not processors:
                yield [tuple(row) for row in batch]
                continue
            rows = [list(row) for row in batch]
            del batch
            for row in rows:
                for i, process in processors:
                    row[i] = process(row[i])
            yield [tuple(row) for row in rows]

    def _verify(self, expected: dict[str, Totals]) -> None:
        problems = []
        for plan in self.plans:
            copied = plan.totals(self.target)
            if copied != expected[plan.name]:
                problems.append(f"{plan.name}: source {expected[plan.name]}, target {copied}")
        if problems:
            raise CopyFailed(
                "verification failed, the target was left empty: " + "; ".join(problems)
            )
