"""Request and response bodies. Create schemas validate input; read schemas are built from rows."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError

# Re-exported: request models elsewhere take money from here.
from negotiation.money import MAX_MONEY as MAX_MONEY
from negotiation.money import MoneyIn as MoneyIn
from negotiation.profile_names import ProfileName
from negotiation.session_metadata import MAX_METADATA_BYTES as MAX_METADATA_BYTES
from negotiation.session_metadata import MAX_METADATA_DEPTH as MAX_METADATA_DEPTH
from negotiation.session_metadata import bounded_metadata
from negotiation.text_rules import CONTROL_IN_FREE_TEXT as _CONTROL_IN_FREE_TEXT

T = TypeVar("T")

#: Control characters (Unicode Cc). Free text keeps tab, newline and carriage return.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _single_line(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _free_text(value: str) -> str:
    if _CONTROL_IN_FREE_TEXT.search(value):
        raise ValueError("must not contain control characters other than tab and line breaks")
    return value


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


#: Money out: exact ``Decimal`` inside, a JSON number (``2300.1``) on the wire.
Money = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]
#: Timestamps in: ISO 8601; naive ones are taken as UTC.
UTCDatetime = Annotated[dt.datetime, AfterValidator(_as_utc)]
Text = Annotated[str, Field(max_length=2000), AfterValidator(_free_text)]
ShortText = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_single_line)]

LoadStatus = Literal["available", "booked", "completed"]
Outcome = Literal["negotiating", "accepted", "rejected", "transferred", "abandoned"]
Sentiment = Literal["positive", "neutral", "negative"]
DecisionKind = Literal["accept", "counter", "reject"]
#: What the voice agent does after a round: wait for the carrier's answer to a counter, hand an
#: accepted carrier to a person to book, or end the call after a final reject.
NextAction = Literal["await_offer", "transfer_to_rep", "end_call"]
NEXT_ACTIONS: dict[str, NextAction] = {
    "accept": "transfer_to_rep",
    "counter": "await_offer",
    "reject": "end_call",
}


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` back as ``cursor`` for the next (null: last)."""

    items: list[T]
    next_cursor: str | None


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class RequestBody(BaseModel):
    """The base of every request body: a field the model does not know is refused (422 naming
    it, with the nearest known name), never silently dropped."""

    model_config = ConfigDict(extra="forbid")


class LoadCreate(RequestBody):
    load_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-.:]+$")]
    origin: ShortText
    destination: ShortText
    pickup_datetime: UTCDatetime
    delivery_datetime: UTCDatetime
    equipment_type: ShortText
    loadboard_rate: MoneyIn
    max_rate: MoneyIn | None = None
    notes: Text | None = None
    weight: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    commodity_type: ShortText | None = None
    num_of_pieces: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    miles: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    dimensions: ShortText | None = None
    status: LoadStatus = "available"
    #: The pricing profile for this load's negotiations (a session's own profile wins).
    profile: ProfileName | None = None

    @model_validator(mode="after")
    def _ceiling_not_below_rate(self) -> LoadCreate:
        if self.max_rate is not None and self.max_rate < self.loadboard_rate:
            raise ValueError("max_rate must be at least loadboard_rate")
        if self.delivery_datetime < self.pickup_datetime:
            raise ValueError("delivery_datetime must not be before pickup_datetime")
        return self


class LoadRead(ReadModel):
    load_id: str
    origin: str
    destination: str
    pickup_datetime: dt.datetime
    delivery_datetime: dt.datetime
    equipment_type: str
    loadboard_rate: Money
    max_rate: Money | None
    notes: str | None
    weight: float | None
    commodity_type: str | None
    num_of_pieces: int | None
    miles: float | None
    dimensions: str | None
    status: str | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    #: While the load is booked: the call that booked it and the agreed rate.
    booked_call_id: int | None = None
    booked_rate: Money | None = None

    profile: str | None = None


BookingEventKind = Literal["booked", "released"]


class BookingEvent(ReadModel):
    """A booking or a release of a load."""

    event: BookingEventKind
    call_id: int | None
    #: The accepted round that booked the load; null when a PATCH to the call booked it.
    round_id: int | None
    rate: Money | None
    reason: str | None
    at: dt.datetime = Field(validation_alias="created_at")


class LoadDetail(LoadRead):
    """A load with its bookings and releases, oldest first."""

    bookings: list[BookingEvent]


class LoadRelease(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Why the booking fell through (kept on the release event).
    reason: Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_free_text)]


class CallCreate(RequestBody):
    load_id: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_single_line)]
    carrier_mc_number: (
        Annotated[str, Field(min_length=1, max_length=32), AfterValidator(_single_line)] | None
    ) = None
    external_id: ShortText | None = None
    initial_rate_offered: MoneyIn | None = None
    call_start_time: UTCDatetime | None = None
    notes: Text | None = None


class CallUpdate(RequestBody):
    outcome: Outcome | None = None
    sentiment: Sentiment | None = None
    final_rate_agreed: MoneyIn | None = None
    call_end_time: UTCDatetime | None = None
    transferred_to_rep: bool | None = None
    notes: Text | None = None
    call_transcript: (
        Annotated[str, Field(max_length=200_000), AfterValidator(_free_text)] | None
    ) = None


class CallRead(ReadModel):
    id: int
    load_id: str | None
    carrier_mc_number: str | None
    external_id: str | None
    outcome: str | None
    sentiment: str | None
    initial_rate_offered: Money | None
    final_rate_agreed: Money | None
    negotiation_rounds: int
    call_start_time: dt.datetime | None
    call_end_time: dt.datetime | None
    call_duration: int | None
    transferred_to_rep: bool
    notes: str | None
    #: The status of the call's load (``booked`` once any call booked it).
    load_status: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_nulls(cls, data: Any) -> Any:
        # Legacy rows may hold NULL counters and flags; the API always shows numbers/booleans.
        if not isinstance(data, dict):
            data = {name: getattr(data, name, None) for name in cls.model_fields}
        data = dict(data)
        data["negotiation_rounds"] = data.get("negotiation_rounds") or 0
        data["transferred_to_rep"] = bool(data.get("transferred_to_rep"))
        return data


class CallDetail(CallRead):
    last_decision: DecisionKind | None = None
    agreed_rate: Money | None = None
    call_transcript: str | None = None


def _call_id_echo(value: Any) -> int | str | None:
    if value is None or (isinstance(value, int | str) and not isinstance(value, bool)):
        return value
    raise PydanticCustomError("call_id", "must be the call's id, as a number or a string")


class OfferCreate(RequestBody):
    #: Optional echo of the URL's call id; a number or a string, compared as text.
    call_id: Annotated[int | str | None, PlainValidator(_call_id_echo)] = None
    carrier_offer: MoneyIn
    #: Validated by the service (422 ``INVALID_SESSION_ID`` rather than a generic error).
    session_id: str | None = None
    notes: Text | None = None


class RoundRead(ReadModel):
    id: int
    call_id: int | None
    session_id: str | None
    round_number: int
    carrier_offer: Money | None
    decision: DecisionKind | None
    counter_offer: Money | None
    agreed_rate: Money | None
    accepted: bool
    is_final: bool
    rounds_remaining: int
    #: What the voice agent does now; null only for legacy rounds without a decision.
    next_action: NextAction | None
    system_response: str | None
    notes: str | None
    #: The pricing profile version that decided the round and its numbers (null: legacy).
    profile: str | None
    profile_version: int | None
    round_limit: Money | None
    ceiling: Money | None
    timestamp: dt.datetime | None

    @classmethod
    def from_row(cls, row: Any, max_rounds: int) -> RoundRead:
        """Build from a ``negotiations`` row; the flags follow from the decision."""
        return cls.model_validate(round_fields(row, max_rounds))


def round_fields(row: Any, max_rounds: int) -> dict[str, Any]:
    """The fields of :class:`RoundRead` for a ``negotiations`` row, as a plain dict.

    ``max_rounds`` counts the remaining rounds of a legacy round; a round decided by a profile
    counts by its profile version's, which the round queries read with it
    (``profile_max_rounds``).
    """
    return _round_dict(row, max_rounds, _as_stored)


def round_json(row: Any, max_rounds: int) -> dict[str, Any]:
    """:func:`round_fields` with money as JSON numbers, as :class:`RoundRead` serializes it.

    The round paths send these dicts as they are: Litestar encodes them to the same bytes as
    the model (tests/test_round_views.py) without building and dumping a model per row, which
    cost a tenth of a session read.
    """
    return _round_dict(row, max_rounds, _number)


def _as_stored(amount: Any) -> Any:
    return amount


def _number(amount: Any) -> float | None:
    return amount if amount is None or type(amount) is float else float(amount)


def _round_dict(row: Any, max_rounds: int, money: Callable[[Any], Any]) -> dict[str, Any]:
    decision = row.decision
    if decision not in NEXT_ACTIONS:  # legacy text the policy never writes
        decision = None
    accepted = decision == "accept"
    is_final = accepted or decision == "reject"
    max_rounds = getattr(row, "profile_max_rounds", None) or max_rounds
    offer = money(row.carrier_offer)
    return {
        "id": row.id,
        "call_id": row.call_id,
        "session_id": row.session_id,
        "round_number": row.round_number,
        "carrier_offer": offer,
        "decision": decision,
        "counter_offer": money(row.counter_offer),
        "agreed_rate": offer if accepted else None,
        "accepted": accepted,
        "is_final": is_final,
        "rounds_remaining": 0 if is_final else max(max_rounds - row.round_number, 0),
        "next_action": NEXT_ACTIONS.get(decision) if decision is not None else None,
        "system_response": row.system_response,
        "notes": row.notes,
        "profile": row.profile,
        "profile_version": row.profile_version,
        "round_limit": money(row.round_limit),
        "ceiling": money(row.ceiling),
        "timestamp": row.timestamp,
    }


#: The longest ``ttl_seconds`` a session may ask for: one year.
MAX_SESSION_TTL = 365 * 24 * 3600

SessionStatus = Literal["active", "closed", "expired"]


class SessionCreate(RequestBody):
    #: Validated by the service (422 ``INVALID_SESSION_ID``); omitted: one is generated.
    session_id: str | None = None
    client_id: ShortText | None = None
    metadata: Annotated[dict[str, Any], AfterValidator(bounded_metadata)] | None = None
    ttl_seconds: Annotated[int, Field(ge=1, le=MAX_SESSION_TTL)] | None = None
    #: The pricing profile for this session's negotiations (else the load's, else standard).
    profile: ProfileName | None = None


class SessionRead(BaseModel):
    """A session. The timestamps are null only for a session known solely from legacy rounds."""

    session_id: str
    client_id: str | None
    metadata: dict[str, Any] | None
    status: SessionStatus
    ttl_seconds: int
    created_at: dt.datetime | None
    last_activity: dt.datetime | None
    expires_at: dt.datetime | None
    profile: str | None = None


class SessionSummary(SessionRead):
    round_count: int


class SessionStats(BaseModel):
    round_count: int
    call_ids: list[int]
    last_offer: Money | None
    last_counter_offer: Money | None
    last_decision: DecisionKind | None
    agreed_rate: Money | None


class SessionDetail(SessionRead):
    stats: SessionStats


class SessionClosed(BaseModel):
    session_id: str
    #: Required (no default), so the OpenAPI document tells a closed reply from a purged one.
    status: Literal["closed"]


class SessionPurged(BaseModel):
    session_id: str
    purged_rounds: int


class HealthRead(BaseModel):
    status: Literal["ok", "unavailable"]
    database: str
    version: str
