"""The table ``negotiation copy-database`` prints after a verified copy."""

from __future__ import annotations

from negotiation.copydb.run import CopyReport

HEADER = ("table", "rows", "sum of ids", "money", "next id", "seconds")


def _money(cents: tuple[int, ...]) -> str:
    if not cents:
        return "-"
    total = sum(cents)
    sign = "-" if total < 0 else ""
    dollars, rest = divmod(abs(total), 100)
    return f"{sign}${dollars:,}.{rest:02d}"


def format_report(report: CopyReport) -> str:
    """A plain-text summary: one line per table, then what was verified."""
    lines = [
        (
            t.name,
            f"{t.totals.rows:,}",
            f"{sum(t.totals.ids):,}" if t.totals.ids else "-",
            _money(t.totals.cents),
            f"{t.next_id:,}" if t.next_id is not None else "-",
            f"{t.seconds:.2f}",
        )
        for t in report.tables
    ]
    widths = [max(len(row[i]) for row in [HEADER, *lines]) for i in range(len(HEADER))]

    def render(row: tuple[str, ...]) -> str:
        right = [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        cells = [row[0].ljust(widths[0]), *right]
        return "  ".join(cells).rstrip()

    out = [
        f"copied {report.source} -> {report.target} (revision {report.revision})",
        "",
        render(HEADER),
        *(render(row) for row in lines),
        "",
        f"{report.rows:,} rows in {report.seconds:.1f} s.",
        "Verified on both ends: row counts, sums of ids and of money (in cents) per table.",
        "The source was not written to during the copy; new ids continue after the copied ones.",
    ]
    if report.skipped_fk_triggers:
        out.append(
            "Foreign keys were checked on the source, so the target's foreign-key triggers\n"
            "were skipped during the copy (session_replication_role = replica)."
        )
    return "\n".join(out) + "\n"
