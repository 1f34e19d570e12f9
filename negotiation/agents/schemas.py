"""The tools' arguments and results: the HTTP API's request and read schemas, plus ``session_id``.

Arguments reuse the HTTP request models (same fields, limits and messages) and forbid unknown
names; results are the HTTP bodies, each with the caller's ``session_id`` echoed.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from negotiation.controllers.params import INT_MAX
from negotiation.money import MoneyIn
from negotiation.schemas import (
    CallCreate,
    CallRead,
    LoadRead,
    OfferCreate,
    RoundRead,
    Sentiment,
    ShortText,
    Text,
)

SESSION_ID_HELP = (
    "Your conversation's session id (1-128 characters of letters, digits, '_', '-', '.', ':'). "
    "Pass the same one on every tool call of a conversation; it is echoed in every result."
)

SessionIdArg = Annotated[str | None, Field(description=SESSION_ID_HELP)]
CallIdArg = Annotated[
    int, Field(ge=1, le=INT_MAX, description="The call's id, as start_call returned it.")
]
#: The outcomes that end a call (``negotiating`` is where a call starts, not how it ends).
EndOutcome = Literal["accepted", "rejected", "transferred", "abandoned"]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchLoadsArgs(_Args):
    origin: ShortText | None = Field(None, description="Exact origin, e.g. 'Chicago, IL'.")
    destination: ShortText | None = Field(None, description="Exact destination.")
    equipment_type: ShortText | None = Field(None, description="Exact type, e.g. 'Dry Van'.")
    pickup_date: dt.date | None = Field(
        None, description="Only loads picked up on this UTC date (YYYY-MM-DD)."
    )
    session_id: SessionIdArg = None


class StartCallArgs(CallCreate):
    model_config = ConfigDict(extra="forbid")

    session_id: SessionIdArg = None


#: What the money validator accepts, as JSON Schema (pydantic cannot derive it from a plain
#: validator): a number or a plain decimal string, above 0, at most 10,000,000, two decimals.
MONEY_SCHEMA = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "maximum": 10_000_000},
        {"type": "string", "pattern": r"^[0-9]+(\.[0-9]{1,2})?$"},
    ]
}


class RecordOfferArgs(OfferCreate):
    model_config = ConfigDict(extra="forbid")

    carrier_offer: Annotated[MoneyIn, WithJsonSchema(MONEY_SCHEMA)]

    #: Required here; over HTTP the body may echo the path's call id.
    call_id: CallIdArg


class SessionHistoryArgs(_Args):
    session_id: str = Field(description=SESSION_ID_HELP)


class EndCallArgs(_Args):
    call_id: CallIdArg
    outcome: EndOutcome = Field(
        description="accepted (rate agreed), rejected (no agreement), transferred (handed to a "
        "person), abandoned (the carrier hung up)."
    )
    sentiment: Sentiment | None = None
    notes: Text | None = None
    session_id: SessionIdArg = None


class LoadsFound(BaseModel):
    session_id: str | None
    items: list[LoadRead]


class CallResult(CallRead):
    session_id: str | None


class SessionHistory(BaseModel):
    session_id: str
    rounds: list[RoundRead]
