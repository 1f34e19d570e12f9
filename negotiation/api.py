"""The Python service API: record a round without going through HTTP."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError

from negotiation.db import Database
from negotiation.errors import ApiError
from negotiation.metrics import count_round
from negotiation.policy import CENT
from negotiation.recording import PolicySettings, record_round
from negotiation.schemas import MAX_MONEY
from negotiation.service import utcnow
from negotiation.settings import Settings, get_settings

#: The HTTP API's rules for an offer: positive, finite, at most 10,000,000, two decimals.
_OFFER: TypeAdapter[Decimal] = TypeAdapter(
    Annotated[Decimal, Field(gt=0, le=MAX_MONEY, decimal_places=2, allow_inf_nan=False)]
)


def _offer(value: Decimal | float | str) -> Decimal:
    """``value`` as an exact amount, or 422 ``VALIDATION_ERROR`` as the HTTP API would answer."""
    try:
        if isinstance(value, bool):
            raise ValueError("a boolean is not an amount")
        # str() first: a float's shortest repr (2300.1), not its binary expansion.
        return _OFFER.validate_python(Decimal(str(value)).normalize()).quantize(CENT)
    except (ValueError, ArithmeticError, ValidationError):
        raise ApiError(
            422,
            "VALIDATION_ERROR",
            f"carrier_offer must be a positive amount of at most {MAX_MONEY:,} with at most two "
            f"decimals, got {value!r}.",
        ) from None


async def ahandle_negotiation(
    call_id: int,
    carrier_offer: Decimal | float | str,
    session_id: str | None = None,
    *,
    settings: Settings | None = None,
) -> tuple[bool, str, bool]:
    """Async form of :func:`handle_negotiation`."""
    settings = settings or get_settings()
    db = Database(settings)
    try:
        cfg = PolicySettings.from_settings(settings)
        row = await db.write(
            record_round,
            call_id=int(call_id),
            offer=_offer(carrier_offer),
            session_id=session_id,
            notes=None,
            cfg=cfg,
            now=utcnow(),
        )
    finally:
        await db.dispose()
    count_round(row)
    return row.decision == "accept", row.system_response, row.decision in ("accept", "reject")


def handle_negotiation(
    call_id: int,
    carrier_offer: Decimal | float | str,
    session_id: str | None = None,
    *,
    settings: Settings | None = None,
) -> tuple[bool, str, bool]:
    """Record ``carrier_offer`` as the next round of the call's negotiation and decide on it.

    Returns ``(accepted, message, is_final)``; ``message`` is the sentence to say to the carrier.
    Raises :class:`negotiation.errors.ApiError` as the HTTP API would answer (unknown call,
    closed negotiation, …). Uses ``NEGOTIATION_DATABASE_URL`` unless ``settings`` are given.
    Call :func:`ahandle_negotiation` from async code.
    """
    return asyncio.run(ahandle_negotiation(call_id, carrier_offer, session_id, settings=settings))
