"""What one run of the SQLite migration did (:mod:`negotiation.migrate_sqlite`), and its summary."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Report:
    """What a run did, printed by :func:`format_report` (or as JSON with ``--json``)."""

    path: str
    head: str
    #: The revision the file was at; None for a legacy file (no ``alembic_version``).
    start: str | None
    stamped: str | None = None
    applied: list[tuple[str, str]] = field(default_factory=list)
    backup: str | None = None
    rows: dict[str, int] = field(default_factory=dict)
    #: Tables the upgrade created (empty); every other table kept its row count.
    new_tables: list[str] = field(default_factory=list)
    preexisting_fk_violations: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def already_at_head(self) -> bool:
        return self.start == self.head


def format_report(report: Report) -> str:
    """The human summary printed after a successful run."""
    rows = ", ".join(f"{t} {n}" for t, n in report.rows.items())
    if report.already_at_head:
        return (
            f"{report.path}: already at head ({report.head}); nothing to do, no backup taken\n"
            f"  rows: {rows}\n  elapsed: total {report.seconds['total']:.2f} s\n"
        )
    s = report.seconds
    lines = [f"{report.path}: migrated to head ({report.head})"]
    if report.stamped:
        lines.append(f"  legacy schema recognised (no alembic_version): stamped {report.stamped}")
    else:
        lines.append(f"  was at revision {report.start}")
    lines.append(f"  backup: {report.backup} (integrity_check ok, row counts equal)")
    lines += [f"  applied {rev}: {doc.splitlines()[0]}" for rev, doc in report.applied]
    new = f"; new and empty: {', '.join(report.new_tables)}" if report.new_tables else ""
    lines.append(f"  rows: {rows} (every existing table unchanged{new})")
    checked = "session_id column and indexes, schema, integrity_check ok, foreign_key_check clean"
    if report.preexisting_fk_violations:
        checked += f" (apart from {report.preexisting_fk_violations} violations already there)"
    lines.append(f"  verified: {checked}")
    lines.append(
        f"  elapsed: backup {s['backup']:.2f} s, upgrade {s['upgrade']:.2f} s, "
        f"verify {s['verify']:.2f} s, total {s['total']:.2f} s"
    )
    return "\n".join(lines) + "\n"
