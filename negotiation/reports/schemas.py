"""Read schemas of the reports. Money and figures are exact ``Decimal`` inside, JSON numbers out."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from pydantic import BaseModel

from negotiation.schemas import Money

#: A figure that is not money (a percentage, a ratio, an average count): exact inside, a number out.
Number = Money

NegotiationOutcome = Literal["accepted", "rejected", "open", "undecided"]
SessionOutcome = Literal["accepted", "rejected", "open", "abandoned", "undecided", "no_rounds"]


class Difference(BaseModel):
    """An amount against a reference: ``amount = value - reference``, ``percent`` of reference."""

    reference: Money
    amount: Money
    percent: Number | None


class LoadSummary(BaseModel):
    load_id: str
    origin: str | None
    destination: str | None
    equipment_type: str | None
    loadboard_rate: Money
    max_rate: Money | None
    #: The most the broker pays: as the call's latest round recorded it, else ``max_rate``,
    #: else loadboard rate x (1 + MAX_MARKUP) today.
    ceiling: Money


class CallSummary(BaseModel):
    call_id: int
    carrier_mc_number: str | None
    external_id: str | None
    outcome: str | None
    initial_rate_offered: Money | None
    final_rate_agreed: Money | None
    call_start_time: dt.datetime | None
    call_end_time: dt.datetime | None
    call_duration: int | None
    load: LoadSummary | None


class RoundEntry(BaseModel):
    """One round as the report shows it, in the session's order (by round id)."""

    id: int
    call_id: int | None
    load_id: str | None
    round_number: int
    carrier_offer: Money | None
    #: ``None`` for legacy rows recorded before the service decided rounds.
    decision: Literal["accept", "counter", "reject"] | None
    counter_offer: Money | None
    agreed_rate: Money | None
    system_response: str | None
    notes: str | None
    timestamp: dt.datetime | None
    seconds_since_previous: float | None
    #: The broker's move this round: its new position (counter, or the agreed rate on an accept)
    #: minus its previous one (the previous counter, else the call's opening rate).
    concession: Money | None
    loadboard_rate: Money | None
    #: The ceiling the round was decided with (for a legacy round: the load's today).
    ceiling: Money | None
    #: This accepted round booked its load (see ``load_bookings``).
    booked_load: bool = False
    #: The pricing profile version that decided the round and its limit (null: legacy).
    profile: str | None
    profile_version: int | None
    round_limit: Money | None


class NegotiationSummary(BaseModel):
    """The rounds of one (call, session) pair."""

    call_id: int | None
    load_id: str | None
    #: The pricing profile and version that decided it (null: legacy).
    profile: str | None
    profile_version: int | None
    rounds: int
    outcome: NegotiationOutcome
    agreed_rate: Money | None
    opening_rate: Money | None
    total_concession: Money | None
    vs_loadboard: Difference | None
    vs_ceiling: Difference | None


class SessionInfo(BaseModel):
    status: Literal["active", "closed", "expired"]
    client_id: str | None
    metadata: dict[str, Any] | None
    created_at: dt.datetime
    last_activity: dt.datetime
    expires_at: dt.datetime
    #: The pricing profile chosen for the session (null: the load's, else standard).
    profile: str | None = None


class DecisionCounts(BaseModel):
    accept: int = 0
    counter: int = 0
    reject: int = 0
    #: Rounds without a decision (legacy rows).
    none: int = 0


class SessionReport(BaseModel):
    session_id: str
    #: ``None`` when rounds carry the id but no session row exists (never created).
    session: SessionInfo | None
    outcome: SessionOutcome
    agreed_rate: Money | None
    vs_loadboard: Difference | None
    vs_ceiling: Difference | None
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    #: Seconds from the first round to the last.
    duration_seconds: float | None
    round_count: int
    rounds_with_offer: int
    rounds_without_offer: int
    decisions: DecisionCounts
    calls: list[CallSummary]
    negotiations: list[NegotiationSummary]
    rounds: list[RoundEntry]
    generated_at: dt.datetime


class SummaryFilters(BaseModel):
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    load_id: str | None = None
    carrier_mc_number: str | None = None


class RoundNumberDecisions(BaseModel):
    round_number: int
    total: int
    accept: int
    counter: int
    reject: int
    none: int


class AgreedRates(BaseModel):
    """Accepted rounds against their loads (only those whose call has a load)."""

    count: int
    average_agreed_rate: Money | None
    average_loadboard_rate: Money | None
    average_ceiling: Money | None
    #: Average of (agreed - loadboard); percent is of the summed loadboard rates.
    average_over_loadboard: Money | None
    over_loadboard_percent: Number | None
    #: Average of (ceiling - agreed): the margin the broker kept below its limit.
    average_margin_kept: Money | None
    #: Share of the negotiable range (ceiling - loadboard) the broker did not give away.
    margin_kept_percent: Number | None


class ProfileSummary(BaseModel):
    """The negotiations one pricing profile decided (any of its versions): the comparison a
    broker needs to choose between styles."""

    #: The profile's name; ``legacy`` for negotiations recorded before profiles.
    profile: str
    negotiations: int
    rounds: int
    #: Accepted negotiations / negotiations with at least one decided round (0..1).
    acceptance_rate: Number | None
    average_rounds_to_agreement: Number | None
    agreed_rates: AgreedRates


class Outcomes(BaseModel):
    negotiations: dict[str, int]
    calls: dict[str, int]


class SummaryReport(BaseModel):
    filters: SummaryFilters
    sessions: int
    calls: int
    negotiations: int
    rounds: int
    rounds_with_offer: int
    rounds_without_offer: int
    decisions: DecisionCounts
    #: Accepted negotiations / negotiations with at least one decided round (0..1).
    acceptance_rate: Number | None
    #: Accepts among decided first rounds (0..1).
    first_offer_acceptance_rate: Number | None
    average_rounds_to_agreement: Number | None
    agreed_rates: AgreedRates
    decisions_by_round: list[RoundNumberDecisions]
    #: Acceptance, rounds to agreement and margin per pricing profile, by name.
    by_profile: list[ProfileSummary]
    outcomes: Outcomes
    #: Loads booked and released in the period (by the event's time).
    bookings: int = 0
    releases: int = 0
    generated_at: dt.datetime


def ratio(part: int, whole: int, places: str = "0.0001") -> Decimal | None:
    """``part / whole`` rounded half-up to ``places``; ``None`` when ``whole`` is zero."""
    if not whole:
        return None
    return (Decimal(part) / Decimal(whole)).quantize(Decimal(places), rounding=ROUND_HALF_UP)
