"""The next round of a negotiation: what the policy decides on an offer, given the call (with
its load) and the negotiation's last round, or the refusal the client gets instead.

No I/O: :mod:`negotiation.recording` reads the state under the right locks and writes the
result.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from negotiation import policy
from negotiation.booking import check_open
from negotiation.errors import ApiError, not_found
from negotiation.settings import Settings


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """The settings a negotiation round depends on."""

    max_rounds: int
    max_markup: Decimal
    session_ttl_seconds: int
    require_sessions: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> PolicySettings:
        return cls(
            settings.max_rounds,
            settings.max_markup,
            settings.session_ttl_seconds,
            settings.require_sessions,
        )


@dataclass(frozen=True, slots=True)
class Offer:
    """One request to record a round."""

    call_id: int
    offer: Decimal
    session_id: str | None
    notes: str | None
    cfg: PolicySettings
    now: dt.datetime


def checked_call(call: Any | None, call_id: int) -> Any:
    """The call's row, unless it is missing (404) or has no load to negotiate (409)."""
    if call is None:
        raise not_found("CALL_NOT_FOUND", "Call", call_id)
    if call.loadboard_rate is None:
        raise ApiError(
            409, "CALL_HAS_NO_LOAD", f"Call {call_id} has no load, so there is no rate to negotiate"
        )
    return call


def next_round(call: Any, last: Any | None, o: Offer, profile: policy.Profile) -> dict[str, Any]:
    """The round to record after ``last`` (None: the first), with the decision of the policy
    under ``profile`` (the version the negotiation started with)."""
    if last is not None and (
        last.decision in ("accept", "reject") or last.round_number >= profile.max_rounds
    ):
        where = f" in session {o.session_id}" if o.session_id else ""
        raise ApiError(
            409,
            "NEGOTIATION_CLOSED",
            f"The negotiation for call {o.call_id}{where} already reached a final decision",
        )
    check_open(call)
    round_number = 1 if last is None else last.round_number + 1
    loadboard_rate: Decimal = call.loadboard_rate
    ceiling = policy.ceiling(loadboard_rate, call.max_rate, profile.max_markup)
    decision = policy.decide(
        offer=o.offer,
        loadboard_rate=loadboard_rate,
        ceiling_rate=ceiling,
        round_number=round_number,
        max_rounds=profile.max_rounds,
        previous_counter=last.counter_offer if last is not None else None,
        concession=profile.concession,
    )
    return {
        "call_id": o.call_id,
        "session_id": o.session_id,
        "round_number": round_number,
        "carrier_offer": o.offer,
        "decision": decision.decision,
        "counter_offer": decision.counter_offer,
        "system_response": decision.message,
        "notes": o.notes,
        "timestamp": o.now,
        "profile": profile.name,
        "profile_version": profile.version,
        "round_limit": decision.round_limit,
        "ceiling": ceiling,
        "b_max_rounds": profile.max_rounds,
    }
