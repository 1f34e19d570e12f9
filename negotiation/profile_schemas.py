"""Request and response bodies of the pricing profiles (negotiation.profiles)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, Field

from negotiation.policy import Concession
from negotiation.profile_names import ProfileName
from negotiation.schemas import Money, RequestBody, Text

MaxRounds = Annotated[int, Field(ge=1, le=10, description="Rounds per negotiation, 1-10")]
MaxMarkup = Annotated[
    Decimal,
    Field(
        ge=0,
        le=1,
        decimal_places=4,
        allow_inf_nan=False,
        description="Ceiling over the loadboard rate when a load has no max_rate, 0-1 (0.1: 10 %)",
    ),
]


class ProfileUpdate(RequestBody):
    """A profile's settings; ``PUT /api/profiles/{name}`` records them as its next version."""

    description: Text | None = None
    max_rounds: MaxRounds
    max_markup: MaxMarkup
    concession: Concession = "linear"


class ProfileCreate(ProfileUpdate):
    """A new profile: its version 1."""

    name: ProfileName


class ProfileRead(BaseModel):
    """One version of a profile."""

    name: str
    description: str | None
    max_rounds: int
    max_markup: Money
    concession: Concession
    version: int
    created_at: dt.datetime


class ProfileList(BaseModel):
    """Every profile at its current version, by name."""

    items: list[ProfileRead]
