"""One session's history: a read unit that gathers its rounds, calls and loads and derives figures.

A session holds few rows (rounds of a handful of calls), so the figures that depend on order
(time since the previous round, the broker's concession per round) are derived in Python from
the rows in round-id order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, select

from negotiation import policy
from negotiation.queries import bookings, calls, loads, rounds, sessions
from negotiation.reports.schemas import (
    CallSummary,
    DecisionCounts,
    Difference,
    LoadSummary,
    NegotiationOutcome,
    NegotiationSummary,
    RoundEntry,
    SessionInfo,
    SessionOutcome,
    SessionReport,
)
from negotiation.sessions import derived_status

PERCENT = Decimal("0.01")


def difference(value: Decimal, reference: Decimal) -> Difference:
    """``value`` against ``reference``: the amount and its percent of the reference."""
    amount = value - reference
    percent = (amount * 100 / reference).quantize(PERCENT) if reference else None
    return Difference(reference=reference, amount=amount, percent=percent)


def _calls_with_loads(
    conn: Connection, call_ids: Sequence[int], max_markup: Decimal
) -> list[CallSummary]:
    if not call_ids:
        return []
    query = (
        select(
            calls.c.id,
            calls.c.carrier_mc_number,
            calls.c.external_id,
            calls.c.outcome,
            calls.c.initial_rate_offered,
            calls.c.final_rate_agreed,
            calls.c.call_start_time,
            calls.c.call_end_time,
            calls.c.call_duration,
            loads.c.load_id,
            loads.c.origin,
            loads.c.destination,
            loads.c.equipment_type,
            loads.c.loadboard_rate,
            loads.c.max_rate,
        )
        .select_from(calls.outerjoin(loads, loads.c.load_id == calls.c.load_id))
        .where(calls.c.id.in_(call_ids))
        .order_by(calls.c.id)
    )
    return [_call_summary(row, max_markup) for row in conn.execute(query)]


def _call_summary(row: Any, max_markup: Decimal) -> CallSummary:
    load = None
    if row.load_id is not None and row.loadboard_rate is not None:
        load = LoadSummary(
            load_id=row.load_id,
            origin=row.origin,
            destination=row.destination,
            equipment_type=row.equipment_type,
            loadboard_rate=row.loadboard_rate,
            max_rate=row.max_rate,
            ceiling=policy.ceiling(row.loadboard_rate, row.max_rate, max_markup),
        )
    return CallSummary(
        call_id=row.id,
        carrier_mc_number=row.carrier_mc_number,
        external_id=row.external_id,
        outcome=row.outcome,
        initial_rate_offered=row.initial_rate_offered,
        final_rate_agreed=row.final_rate_agreed,
        call_start_time=row.call_start_time,
        call_end_time=row.call_end_time,
        call_duration=row.call_duration,
        load=load,
    )


def _booking_rounds(conn: Connection, round_ids: Sequence[int]) -> set[int]:
    """Which of these rounds booked their load."""
    if not round_ids:
        return set()
    query = select(bookings.c.round_id).where(
        bookings.c.round_id.in_(round_ids), bookings.c.event == "booked"
    )
    return set(conn.execute(query).scalars())


def _round_entries(
    round_rows: Iterable[Row[Any]], by_call: dict[int, CallSummary], booking: Collection[int]
) -> list[RoundEntry]:
    """Rounds in order, with the time since the previous round and the broker's concession."""
    entries: list[RoundEntry] = []
    previous_time: dt.datetime | None = None
    # The broker's last position per negotiation (call, session): starts at the opening rate.
    positions: dict[int | None, Decimal | None] = {}
    for row in round_rows:
        call = by_call.get(row.call_id) if row.call_id is not None else None
        load = call.load if call is not None else None
        if row.call_id not in positions:
            positions[row.call_id] = call.initial_rate_offered if call is not None else None
        decision = row.decision if row.decision in ("accept", "counter", "reject") else None
        agreed = row.carrier_offer if decision == "accept" else None
        position = row.counter_offer if decision == "counter" else agreed
        concession = None
        if position is not None:
            previous = positions[row.call_id]
            concession = position - previous if previous is not None else None
            positions[row.call_id] = position
        since = None
        if row.timestamp is not None and previous_time is not None:
            since = (row.timestamp - previous_time).total_seconds()
        if row.timestamp is not None:
            previous_time = row.timestamp
        entries.append(
            RoundEntry(
                id=row.id,
                call_id=row.call_id,
                load_id=load.load_id if load is not None else None,
                round_number=row.round_number,
                carrier_offer=row.carrier_offer,
                decision=decision,
                counter_offer=row.counter_offer,
                agreed_rate=agreed,
                system_response=row.system_response,
                notes=row.notes,
                timestamp=row.timestamp,
                seconds_since_previous=since,
                concession=concession,
                loadboard_rate=load.loadboard_rate if load is not None else None,
                ceiling=row.ceiling if row.ceiling is not None else load.ceiling if load else None,
                profile=row.profile,
                profile_version=row.profile_version,
                round_limit=row.round_limit,
                booked_load=row.id in booking,
            )
        )
    return entries


def _negotiation(
    call_id: int | None, entries: list[RoundEntry], call: CallSummary | None
) -> NegotiationSummary:
    outcome = negotiation_outcome({e.decision for e in entries})
    accepted = next((e for e in entries if e.agreed_rate is not None), None)
    agreed = accepted.agreed_rate if accepted is not None else None
    load = call.load if call is not None else None
    opening = call.initial_rate_offered if call is not None else None
    concessions = [e.concession for e in entries if e.concession is not None]
    decided_by = next((e for e in entries if e.profile is not None), None)
    return NegotiationSummary(
        call_id=call_id,
        load_id=load.load_id if load is not None else None,
        profile=decided_by.profile if decided_by else None,
        profile_version=decided_by.profile_version if decided_by else None,
        rounds=len(entries),
        outcome=outcome,
        agreed_rate=agreed,
        opening_rate=opening,
        total_concession=sum(concessions, Decimal(0)) if concessions else None,
        vs_loadboard=difference(agreed, load.loadboard_rate) if agreed and load else None,
        # Against the ceiling the accepting round was decided with.
        vs_ceiling=(
            difference(agreed, accepted.ceiling)
            if agreed and accepted and accepted.ceiling
            else None
        ),
    )


def negotiation_outcome(decisions: Collection[str | None]) -> NegotiationOutcome:
    """A negotiation's outcome from the decisions of its rounds."""
    if "accept" in decisions:
        return "accepted"
    if "reject" in decisions:
        return "rejected"
    if "counter" in decisions:
        return "open"
    return "undecided"


def session_outcome(outcomes: Collection[str], status: str | None) -> SessionOutcome:
    """A session's outcome from its negotiations' outcomes and the session's status."""
    if not outcomes:
        return "no_rounds"
    if "accepted" in outcomes:
        return "accepted"
    if "open" in outcomes:
        return "abandoned" if status in ("closed", "expired") else "open"
    if "rejected" in outcomes:
        return "rejected"
    return "undecided"


def session_report(
    conn: Connection, session_id: str, *, max_markup: Decimal, now: dt.datetime
) -> SessionReport | None:
    """The history of ``session_id``; ``None`` when the session was never created nor used."""
    session_row = conn.execute(select(sessions).where(sessions.c.session_id == session_id)).first()
    round_rows = conn.execute(
        select(rounds).where(rounds.c.session_id == session_id).order_by(rounds.c.id)
    ).all()
    if session_row is None and not round_rows:
        return None
    call_ids = sorted({r.call_id for r in round_rows if r.call_id is not None})
    call_list = _calls_with_loads(conn, call_ids, max_markup)
    by_call = {c.call_id: c for c in call_list}
    booking = _booking_rounds(conn, [r.id for r in round_rows])
    entries = _round_entries(round_rows, by_call, booking)
    for call in call_list:  # the ceiling its latest round was decided with, when it recorded one
        recorded = [
            e.ceiling for e in entries if e.call_id == call.call_id and e.ceiling and e.profile
        ]
        if call.load is not None and recorded:
            call.load.ceiling = recorded[-1]

    grouped: dict[int | None, list[RoundEntry]] = {}
    for entry in entries:
        grouped.setdefault(entry.call_id, []).append(entry)
    negotiations = [
        _negotiation(cid, group, by_call.get(cid) if cid is not None else None)
        for cid, group in grouped.items()
    ]

    info = None
    if session_row is not None:
        info = SessionInfo(
            status=derived_status(session_row.status, session_row.expires_at, now),
            client_id=session_row.client_id,
            metadata=session_row._mapping["metadata"],
            created_at=session_row.created_at,
            last_activity=session_row.last_activity,
            expires_at=session_row.expires_at,
            profile=session_row.profile,
        )
    accepted = [n for n in negotiations if n.outcome == "accepted"]
    final = accepted[-1] if accepted else None
    times = [e.timestamp for e in entries if e.timestamp is not None]
    started, ended = (min(times), max(times)) if times else (None, None)
    counts = DecisionCounts()
    for entry in entries:
        field = entry.decision or "none"
        setattr(counts, field, getattr(counts, field) + 1)
    with_offer = sum(1 for e in entries if e.carrier_offer is not None)
    return SessionReport(
        session_id=session_id,
        session=info,
        outcome=session_outcome({n.outcome for n in negotiations}, info.status if info else None),
        agreed_rate=final.agreed_rate if final else None,
        vs_loadboard=final.vs_loadboard if final else None,
        vs_ceiling=final.vs_ceiling if final else None,
        started_at=started,
        ended_at=ended,
        duration_seconds=(ended - started).total_seconds() if started and ended else None,
        round_count=len(entries),
        rounds_with_offer=with_offer,
        rounds_without_offer=len(entries) - with_offer,
        decisions=counts,
        calls=call_list,
        negotiations=negotiations,
        rounds=entries,
        generated_at=now,
    )
