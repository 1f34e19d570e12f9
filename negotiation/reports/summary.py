"""Totals over a period, computed by the database with aggregates (GROUP BY), never row by row.

Money is summed in whole cents (``CAST(ROUND(x * 100) AS BIGINT)``) so SQLite, which keeps
NUMERIC values as binary floats, and PostgreSQL return the same exact figures; the averages are
the exact quotients of those sums, rounded half-up to the cent.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    FromClause,
    and_,
    case,
    cast,
    distinct,
    func,
    literal,
    select,
)

from negotiation.profile_names import LEGACY
from negotiation.queries import bookings, calls, loads, rounds
from negotiation.reports.schemas import (
    AgreedRates,
    DecisionCounts,
    Outcomes,
    ProfileSummary,
    RoundNumberDecisions,
    SummaryFilters,
    SummaryReport,
    ratio,
)

CENT = Decimal("0.01")


def _cents(column: Any) -> ColumnElement[int]:
    return cast(func.round(column * 100), BigInteger)


def _ceiling_cents(max_markup: Decimal) -> ColumnElement[int]:
    """The ceiling a round was decided with, as it recorded it; for a legacy round
    ``policy.ceiling`` in SQL: ``max_rate`` (never below the loadboard rate), else the
    loadboard rate x (1 + markup) rounded down to the cent, in exact integer arithmetic."""
    numerator, denominator = Decimal(max_markup).as_integer_ratio()
    loadboard, maximum = _cents(loads.c.loadboard_rate), _cents(loads.c.max_rate)
    marked_up = (loadboard * literal(denominator + numerator, BigInteger)) // literal(
        denominator, BigInteger
    )
    return case(
        (rounds.c.ceiling.is_not(None), _cents(rounds.c.ceiling)),
        (loads.c.max_rate.is_(None), marked_up),
        (maximum > loadboard, maximum),
        else_=loadboard,
    )


def _count_if(condition: ColumnElement[bool], value: Any = 1) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, value), else_=0)), 0)


def _scope(filters: SummaryFilters) -> tuple[FromClause, ColumnElement[bool]]:
    """Rounds joined to their calls and loads, and the filter over them."""
    joined = rounds.outerjoin(calls, calls.c.id == rounds.c.call_id).outerjoin(
        loads, loads.c.load_id == calls.c.load_id
    )
    conditions: list[ColumnElement[bool]] = []
    if filters.since is not None:
        conditions.append(rounds.c.timestamp >= filters.since)
    if filters.until is not None:
        conditions.append(rounds.c.timestamp < filters.until)
    if filters.load_id is not None:
        conditions.append(calls.c.load_id == filters.load_id)
    if filters.carrier_mc_number is not None:
        conditions.append(calls.c.carrier_mc_number == filters.carrier_mc_number)
    return joined, and_(True, *conditions)


def _booking_events(conn: Connection, filters: SummaryFilters) -> dict[str, int]:
    """Bookings and releases under ``filters`` (time range on the event's time), by event."""
    query = (
        select(bookings.c.event, func.count().label("n"))
        .select_from(bookings.outerjoin(calls, calls.c.id == bookings.c.call_id))
        .group_by(bookings.c.event)
    )
    if filters.since is not None:
        query = query.where(bookings.c.created_at >= filters.since)
    if filters.until is not None:
        query = query.where(bookings.c.created_at < filters.until)
    if filters.load_id is not None:
        query = query.where(bookings.c.load_id == filters.load_id)
    if filters.carrier_mc_number is not None:
        query = query.where(calls.c.carrier_mc_number == filters.carrier_mc_number)
    return {row.event: int(row.n) for row in conn.execute(query)}


def _per_cent(cents: int, count: int) -> Decimal | None:
    if not count:
        return None
    return (Decimal(cents) / count / 100).quantize(CENT, rounding=ROUND_HALF_UP)


def _percent(part: int, whole: int) -> Decimal | None:
    if not whole:
        return None
    return (Decimal(part) * 100 / whole).quantize(CENT, rounding=ROUND_HALF_UP)


def _agreed_rates(totals: Any) -> AgreedRates:
    n = int(totals.priced_accepts)
    agreed, loadboard, ceiling = (
        int(totals.agreed_cents),
        int(totals.loadboard_cents),
        int(totals.ceiling_cents),
    )
    return AgreedRates(
        count=n,
        average_agreed_rate=_per_cent(agreed, n),
        average_loadboard_rate=_per_cent(loadboard, n),
        average_ceiling=_per_cent(ceiling, n),
        average_over_loadboard=_per_cent(agreed - loadboard, n),
        over_loadboard_percent=_percent(agreed - loadboard, loadboard) if n else None,
        average_margin_kept=_per_cent(ceiling - agreed, n),
        margin_kept_percent=_percent(ceiling - agreed, ceiling - loadboard) if n else None,
    )


def _per_negotiation(joined: FromClause, where: ColumnElement[bool], max_markup: Decimal) -> Any:
    """One row per negotiation (call, session) in scope, with its rounds' counts and sums."""
    decision = rounds.c.decision
    accepted = decision == "accept"
    priced = and_(
        accepted, loads.c.loadboard_rate.is_not(None), rounds.c.carrier_offer.is_not(None)
    )
    first = rounds.c.round_number == 1
    return (
        select(
            rounds.c.call_id,
            rounds.c.session_id,
            # A negotiation's rounds share one profile (legacy rounds have none).
            func.max(rounds.c.profile).label("profile"),
            func.count().label("rounds"),
            func.count(rounds.c.carrier_offer).label("with_offer"),
            func.count(decision).label("decided"),
            _count_if(accepted).label("accept"),
            _count_if(decision == "counter").label("counter"),
            _count_if(decision == "reject").label("reject"),
            _count_if(and_(first, decision.is_not(None))).label("first_decided"),
            _count_if(and_(first, accepted)).label("first_accepted"),
            _count_if(accepted, rounds.c.round_number).label("accept_round_sum"),
            _count_if(priced).label("priced_accepts"),
            _count_if(priced, _cents(rounds.c.carrier_offer)).label("agreed_cents"),
            _count_if(priced, _cents(loads.c.loadboard_rate)).label("loadboard_cents"),
            _count_if(priced, _ceiling_cents(max_markup)).label("ceiling_cents"),
        )
        .select_from(joined)
        .where(where)
        .group_by(rounds.c.call_id, rounds.c.session_id)
        .subquery("negotiation")
    )


SUMMED = (
    "rounds",
    "with_offer",
    "accept",
    "counter",
    "reject",
    "first_decided",
    "first_accepted",
    "accept_round_sum",
    "priced_accepts",
    "agreed_cents",
    "loadboard_cents",
    "ceiling_cents",
)


def _by_profile(conn: Connection, n: Any) -> list[ProfileSummary]:
    """Acceptance, rounds to agreement and margin per profile, from the negotiations ``n``."""
    profile = func.coalesce(n.c.profile, literal(LEGACY))
    rows = conn.execute(
        select(
            profile.label("profile"),
            func.count().label("negotiations"),
            *(func.coalesce(func.sum(n.c[name]), 0).label(name) for name in SUMMED),
            _count_if(n.c.accept > 0).label("accepted"),
            _count_if(n.c.decided > 0).label("decided"),
        )
        .group_by(profile)
        .order_by(profile)
    ).all()
    return [
        ProfileSummary(
            profile=row.profile,
            negotiations=int(row.negotiations),
            rounds=int(row.rounds),
            acceptance_rate=ratio(int(row.accepted), int(row.decided)),
            average_rounds_to_agreement=ratio(int(row.accept_round_sum), int(row.accept), "0.01"),
            agreed_rates=_agreed_rates(row),
        )
        for row in rows
    ]


def summary_report(
    conn: Connection, filters: SummaryFilters, *, max_markup: Decimal, now: dt.datetime
) -> SummaryReport:
    """Totals over the rounds that match ``filters`` (time range on the round's timestamp).

    Rounds are aggregated per negotiation, then negotiations are aggregated: one scan of the
    rounds for the totals and outcomes, one for the decisions per round number, one for the
    calls' outcomes.
    """
    joined, where = _scope(filters)
    n = _per_negotiation(joined, where, max_markup)
    totals = conn.execute(
        select(
            func.count().label("negotiations"),
            func.count(distinct(n.c.session_id)).label("sessions"),
            func.count(distinct(n.c.call_id)).label("calls"),
            *(func.coalesce(func.sum(n.c[name]), 0).label(name) for name in SUMMED),
            _count_if(n.c.accept > 0).label("accepted"),
            _count_if(and_(n.c.accept == 0, n.c.reject > 0)).label("rejected"),
            _count_if(and_(n.c.accept == 0, n.c.reject == 0, n.c.decided > 0)).label("open"),
            _count_if(n.c.decided == 0).label("undecided"),
        )
    ).one()

    decision = rounds.c.decision
    by_round = conn.execute(
        select(
            rounds.c.round_number,
            func.count().label("total"),
            _count_if(decision == "accept").label("accept"),
            _count_if(decision == "counter").label("counter"),
            _count_if(decision == "reject").label("reject"),
        )
        .select_from(joined)
        .where(where)
        .group_by(rounds.c.round_number)
        .order_by(rounds.c.round_number)
    ).all()
    by_profile = _by_profile(conn, n)
    negotiation_outcomes = {
        name: int(getattr(totals, name)) for name in ("accepted", "rejected", "open", "undecided")
    }
    in_scope = select(rounds.c.call_id).select_from(joined).where(where)
    call_outcomes = dict(
        sorted(
            ((row.outcome or "unknown"), int(row.n))
            for row in conn.execute(
                select(calls.c.outcome, func.count().label("n"))
                .where(calls.c.id.in_(in_scope))
                .group_by(calls.c.outcome)
            )
        )
    )

    events = _booking_events(conn, filters)
    accept, counter, reject = int(totals.accept), int(totals.counter), int(totals.reject)
    negotiations = sum(negotiation_outcomes.values())
    decided = negotiations - negotiation_outcomes.get("undecided", 0)
    with_offer = int(totals.with_offer)
    return SummaryReport(
        filters=filters,
        sessions=int(totals.sessions),
        calls=int(totals.calls),
        negotiations=negotiations,
        rounds=int(totals.rounds),
        rounds_with_offer=with_offer,
        rounds_without_offer=int(totals.rounds) - with_offer,
        decisions=DecisionCounts(
            accept=accept,
            counter=counter,
            reject=reject,
            none=int(totals.rounds) - accept - counter - reject,
        ),
        acceptance_rate=ratio(negotiation_outcomes.get("accepted", 0), decided),
        first_offer_acceptance_rate=ratio(int(totals.first_accepted), int(totals.first_decided)),
        average_rounds_to_agreement=ratio(int(totals.accept_round_sum), accept, "0.01"),
        agreed_rates=_agreed_rates(totals),
        decisions_by_round=[
            RoundNumberDecisions(
                round_number=row.round_number,
                total=int(row.total),
                accept=int(row.accept),
                counter=int(row.counter),
                reject=int(row.reject),
                none=int(row.total) - int(row.accept) - int(row.counter) - int(row.reject),
            )
            for row in by_round
        ],
        by_profile=by_profile,
        outcomes=Outcomes(
            negotiations={
                k: negotiation_outcomes.get(k, 0)
                for k in ("accepted", "rejected", "open", "undecided")
            },
            calls=call_outcomes,
        ),
        bookings=events.get("booked", 0),
        releases=events.get("released", 0),
        generated_at=now,
    )
