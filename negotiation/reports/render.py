"""Reports as Markdown, CSV, JSON or a self-contained HTML file."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Literal

from negotiation.reports.chart import build_chart
from negotiation.reports.render_csv import session_csv, summary_csv
from negotiation.reports.schemas import Difference, SessionReport, SummaryReport
from negotiation.templating import (
    DASH,
    duration,
    environment,
    money,
    percent,
    period,
    profile,
    rate,
    signed_money,
    text,
    when,
)

Format = Literal["md", "csv", "json", "html"]
FORMATS: tuple[Format, ...] = ("md", "csv", "json", "html")


def _md(value: object) -> str:
    """A Markdown table cell: HTML-escaped (renderers pass raw HTML through), pipes escaped."""
    cell = html.escape(text(value), quote=False).replace("|", "\\|")
    return " ".join(cell.split())


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], right: set[int]) -> str:
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---:" if i in right else "---" for i in range(len(headers))) + "|")
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _facts(rows: Iterable[tuple[str, object]]) -> str:
    return _table(("Fact", "Value"), rows, set())


def _versus(diff: Difference | None) -> str:
    if diff is None:
        return DASH
    return f"{signed_money(diff.amount)} ({percent(diff.percent)}) against {money(diff.reference)}"


def session_markdown(report: SessionReport) -> str:
    s = report.session
    facts: list[tuple[str, object]] = [
        ("Status", s.status if s else "no session record (rounds only)"),
    ]
    if s is not None:
        facts += [
            ("Client", s.client_id),
            ("Pricing profile", s.profile or "none chosen: the load's, else standard"),
            ("Created", when(s.created_at)),
            ("Last activity", when(s.last_activity)),
        ]
    facts += [
        ("Outcome", report.outcome),
        ("Agreed rate", money(report.agreed_rate)),
        ("vs loadboard rate", _versus(report.vs_loadboard)),
        ("vs ceiling", _versus(report.vs_ceiling)),
        ("First round", when(report.started_at)),
        ("Last round", when(report.ended_at)),
        ("Duration", duration(report.duration_seconds)),
        (
            "Rounds",
            f"{report.round_count} ({report.rounds_with_offer} with an offer, "
            f"{report.rounds_without_offer} without; {report.decisions.none} without a decision)",
        ),
    ]
    rounds = _table(
        (
            "#",
            "Call",
            "Round",
            "Time",
            "Since previous",
            "Offer",
            "Profile",
            "Limit",
            "Ceiling",
            "Decision",
            "Counter",
            "Agreed",
            "Concession",
            "Response",
            "Notes",
        ),
        (
            (
                i,
                r.call_id,
                r.round_number,
                when(r.timestamp),
                duration(r.seconds_since_previous),
                money(r.carrier_offer),
                profile(r.profile, r.profile_version),
                money(r.round_limit),
                money(r.ceiling),
                (r.decision or "none (legacy)") + (" (booked the load)" if r.booked_load else ""),
                money(r.counter_offer),
                money(r.agreed_rate),
                signed_money(r.concession),
                r.system_response,
                r.notes,
            )
            for i, r in enumerate(report.rounds, 1)
        ),
        {0, 1, 2, 4, 5, 7, 8, 10, 11, 12},
    )
    negotiations = _table(
        (
            "Call",
            "Profile",
            "Rounds",
            "Outcome",
            "Opening",
            "Agreed",
            "Total concession",
            "vs loadboard",
            "vs ceiling",
        ),
        (
            (
                n.call_id,
                profile(n.profile, n.profile_version),
                n.rounds,
                n.outcome,
                money(n.opening_rate),
                money(n.agreed_rate),
                signed_money(n.total_concession),
                _versus(n.vs_loadboard),
                _versus(n.vs_ceiling),
            )
            for n in report.negotiations
        ),
        {0, 2, 4, 5, 6},
    )
    calls = _table(
        ("Call", "Carrier", "Load", "Lane", "Loadboard", "Ceiling", "Call outcome", "Final rate"),
        (
            (
                c.call_id,
                c.carrier_mc_number,
                c.load.load_id if c.load else None,
                f"{c.load.origin} → {c.load.destination}" if c.load else None,
                money(c.load.loadboard_rate if c.load else None),
                money(c.load.ceiling if c.load else None),
                c.outcome,
                money(c.final_rate_agreed),
            )
            for c in report.calls
        ),
        {0, 4, 5, 7},
    )
    return (
        "\n\n".join(
            [
                f"# Session {report.session_id}",
                f"Report generated {when(report.generated_at)}.",
                _facts(facts),
                "## Rounds",
                rounds,
                "## Negotiations",
                negotiations,
                "## Calls and loads",
                calls,
            ]
        )
        + "\n"
    )


PROFILE_COLUMNS = (
    "Profile",
    "Negotiations",
    "Rounds",
    "Acceptance",
    "Avg rounds to agreement",
    "Avg agreed",
    "Avg over loadboard",
    "Margin kept below ceiling",
)


def summary_markdown(report: SummaryReport) -> str:
    f, a = report.filters, report.agreed_rates
    facts: list[tuple[str, object]] = [
        ("Period", period(f.since, f.until)),
    ]
    if f.load_id:
        facts.append(("Load", f.load_id))
    if f.carrier_mc_number:
        facts.append(("Carrier", f.carrier_mc_number))
    facts += [
        ("Sessions", report.sessions),
        ("Calls", report.calls),
        ("Negotiations", report.negotiations),
        ("Bookings", f"{report.bookings} booked, {report.releases} released"),
        (
            "Rounds",
            f"{report.rounds} ({report.rounds_with_offer} with an offer, "
            f"{report.rounds_without_offer} without; {report.decisions.none} without a decision)",
        ),
        ("Acceptance rate", rate(report.acceptance_rate)),
        ("First-offer acceptance rate", rate(report.first_offer_acceptance_rate)),
        ("Average rounds to agreement", report.average_rounds_to_agreement),
        ("Agreements with a load", a.count),
        ("Average agreed rate", money(a.average_agreed_rate)),
        ("Average loadboard rate", money(a.average_loadboard_rate)),
        ("Average ceiling", money(a.average_ceiling)),
        (
            "Average over loadboard",
            f"{signed_money(a.average_over_loadboard)} ({percent(a.over_loadboard_percent)})",
        ),
        (
            "Average margin kept below ceiling",
            f"{money(a.average_margin_kept)} ({text(a.margin_kept_percent)}"
            f"{'%' if a.margin_kept_percent is not None else ''} of the negotiable range)",
        ),
    ]
    by_round = _table(
        ("Round", "Rounds", "Accept", "Counter", "Reject", "No decision"),
        (
            (r.round_number, r.total, r.accept, r.counter, r.reject, r.none)
            for r in report.decisions_by_round
        ),
        {0, 1, 2, 3, 4, 5},
    )
    by_profile = _table(
        PROFILE_COLUMNS,
        (
            (
                p.profile,
                p.negotiations,
                p.rounds,
                rate(p.acceptance_rate),
                p.average_rounds_to_agreement,
                money(p.agreed_rates.average_agreed_rate),
                signed_money(p.agreed_rates.average_over_loadboard),
                money(p.agreed_rates.average_margin_kept),
            )
            for p in report.by_profile
        ),
        {1, 2, 3, 4, 5, 6, 7},
    )
    negotiation_outcomes = _table(
        ("Negotiation outcome", "Count"), report.outcomes.negotiations.items(), {1}
    )
    call_outcomes = _table(("Call outcome", "Count"), report.outcomes.calls.items(), {1})
    return (
        "\n\n".join(
            [
                "# Negotiation summary",
                f"Report generated {when(report.generated_at)}.",
                _facts(facts),
                "## By pricing profile",
                by_profile,
                "## Decisions per round number",
                by_round,
                "## Outcomes",
                negotiation_outcomes,
                call_outcomes,
            ]
        )
        + "\n"
    )


def render_session(report: SessionReport, fmt: Format) -> str:
    """The session report in ``fmt``."""
    if fmt == "json":
        return report.model_dump_json(indent=2) + "\n"
    if fmt == "csv":
        return session_csv(report)
    if fmt == "md":
        return session_markdown(report)
    template = environment().get_template("report_session.html")
    return template.render(report=report, chart=build_chart(report.rounds))


def render_summary(report: SummaryReport, fmt: Format) -> str:
    """The summary report in ``fmt``."""
    if fmt == "json":
        return report.model_dump_json(indent=2) + "\n"
    if fmt == "csv":
        return summary_csv(report)
    if fmt == "md":
        return summary_markdown(report)
    return environment().get_template("report_summary.html").render(report=report)
