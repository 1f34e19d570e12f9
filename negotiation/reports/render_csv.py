"""Reports as CSV: a session's rounds one per row, the summary as ``section,key,value`` rows."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from typing import Any

from negotiation.reports.schemas import SessionReport, SummaryReport
from negotiation.templating import profile


def _csv(rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow(["" if v is None else _plain(v) for v in row])
    return out.getvalue()


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


SESSION_CSV_COLUMNS = (
    "session_id",
    "round_id",
    "call_id",
    "load_id",
    "round_number",
    "timestamp",
    "seconds_since_previous",
    "carrier_offer",
    "decision",
    "counter_offer",
    "agreed_rate",
    "concession",
    "loadboard_rate",
    "ceiling",
    "profile",
    "profile_version",
    "round_limit",
    "system_response",
    "notes",
    "booked_load",
)


def session_csv(report: SessionReport) -> str:
    """The session's rounds, one CSV row each (the session facts are in the other formats)."""
    rows: list[Sequence[Any]] = [SESSION_CSV_COLUMNS]
    rows += [
        (
            report.session_id,
            r.id,
            r.call_id,
            r.load_id,
            r.round_number,
            r.timestamp,
            r.seconds_since_previous,
            r.carrier_offer,
            r.decision,
            r.counter_offer,
            r.agreed_rate,
            r.concession,
            r.loadboard_rate,
            r.ceiling,
            profile(r.profile),
            r.profile_version,
            r.round_limit,
            r.system_response,
            r.notes,
            r.booked_load,
        )
        for r in report.rounds
    ]
    return _csv(rows)


def summary_csv(report: SummaryReport) -> str:
    """The summary in long form: ``section,key,value`` rows."""
    rows: list[Sequence[Any]] = [("section", "key", "value")]
    for key, value in report.filters.model_dump().items():
        rows.append(("filters", key, value))
    for key in (
        "sessions",
        "calls",
        "negotiations",
        "rounds",
        "rounds_with_offer",
        "rounds_without_offer",
        "acceptance_rate",
        "first_offer_acceptance_rate",
        "average_rounds_to_agreement",
        "bookings",
        "releases",
    ):
        rows.append(("totals", key, getattr(report, key)))
    for key, value in report.decisions.model_dump().items():
        rows.append(("decisions", key, value))
    for key, value in report.agreed_rates.model_dump().items():
        rows.append(("agreed_rates", key, value))
    for p in report.by_profile:
        for key in ("negotiations", "rounds", "acceptance_rate", "average_rounds_to_agreement"):
            rows.append((f"profile_{p.profile}", key, getattr(p, key)))
        for key, value in p.agreed_rates.model_dump().items():
            rows.append((f"profile_{p.profile}", key, value))
    for r in report.decisions_by_round:
        for key in ("total", "accept", "counter", "reject", "none"):
            rows.append((f"round_{r.round_number}", key, getattr(r, key)))
    for key, n in report.outcomes.negotiations.items():
        rows.append(("negotiation_outcomes", key, n))
    for key, n in report.outcomes.calls.items():
        rows.append(("call_outcomes", key, n))
    return _csv(rows)
