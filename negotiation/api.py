"""The Python service API: record a round without going through HTTP."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from negotiation.db import Database
from negotiation.errors import ApiError, invalid_session_id
from negotiation.ids import validate_session_id
from negotiation.metrics import count_round
from negotiation.money import parse_money
from negotiation.profiles import record_standard_profile
from negotiation.recording import Offer, PolicySettings, record_offer
from negotiation.service import utcnow
from negotiation.settings import Settings, get_settings

#: Refusals that are a business outcome (closed negotiation or call, booked load, closed or
#: expired session), answered with a tuple rather than raised.
_OUTCOMES = (409, 410)


def _offer(value: Decimal | float | str) -> Decimal:
    """``value`` as an exact amount, by the HTTP API's rules, else ``ValueError``."""
    try:
        return parse_money(value)
    except ValueError as exc:
        raise ValueError(f"carrier_offer {exc}.") from None


async def ahandle_negotiation(
    call_id: int,
    carrier_offer: Decimal | float | str,
    session_id: str | None = None,
    *,
    settings: Settings | None = None,
) -> tuple[bool, str, bool]:
    """Async form of :func:`handle_negotiation`."""
    offer = _offer(carrier_offer)
    if session_id is not None and not validate_session_id(session_id):
        raise ValueError(invalid_session_id(str(session_id), "`session_id`").message)
    settings = settings or get_settings()
    db = Database(settings)
    try:
        cfg = PolicySettings.from_settings(settings)
        await record_standard_profile(db, settings)  # as a start of the service does
        row = await record_offer(db, Offer(int(call_id), offer, session_id, None, cfg, utcnow()))
    except ApiError as refused:
        if refused.status_code in _OUTCOMES:
            return False, refused.message, True
        if refused.status_code == 404:
            raise LookupError(refused.message) from None
        raise ValueError(refused.message) from None
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
    Every business outcome is a tuple: a refusal (closed negotiation or call, booked load,
    closed or expired session) is ``(False, <the HTTP API's message>, True)``. Raises only for
    a programming error: ``ValueError`` for an invalid offer or session id, ``LookupError`` for
    an unknown call (or, with ``REQUIRE_SESSIONS``, a session never created), each with the
    HTTP API's message. Uses ``NEGOTIATION_DATABASE_URL`` unless ``settings`` are given.
    Call :func:`ahandle_negotiation` from async code.
    """
    return asyncio.run(ahandle_negotiation(call_id, carrier_offer, session_id, settings=settings))
