"""The Python service API: record a round without going through HTTP."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from negotiation.db import Database
from negotiation.service import PolicySettings, record_round, utcnow
from negotiation.settings import Settings, get_settings


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
            offer=Decimal(str(carrier_offer)),
            session_id=session_id,
            notes=None,
            cfg=cfg,
            now=utcnow(),
        )
    finally:
        await db.dispose()
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
