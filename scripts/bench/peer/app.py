"""The peer: FastAPI as the original system used it, for the benchmark to measure the service
against (``scripts/bench/run --peer``).

Plain ``def`` endpoints (FastAPI runs them in its thread pool), a synchronous SQLAlchemy ORM
``Session`` per request from a ``Depends`` generator, a SQLite file opened with SQLAlchemy's
defaults, the round number counted in Python (the call's rounds in this session, ``len() + 1``),
pydantic response models. It serves the two operations the benchmark's wrk scripts hit, with
the service's paths and JSON shapes; its pricing rule only resembles the service's policy.

    PEER_DATABASE_URL=sqlite:///peer.db PEER_API_KEY=... \\
        uvicorn peer.app:app --app-dir scripts/bench --port 8001
"""

# FastAPI's documented style, as the original wrote it: dependencies as argument defaults.
# ruff: noqa: B008

from __future__ import annotations

import datetime as dt
import math
import os
import secrets
import uuid
from collections.abc import Iterator

from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel, ConfigDict
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from peer.models import Call, Load, Negotiation, NegotiationSession

MAX_ROUNDS = 3
SESSION_TTL = dt.timedelta(hours=1)

engine = create_engine(
    os.environ.get("PEER_DATABASE_URL", "sqlite:///./peer.db"),
    connect_args={"check_same_thread": False},
)
SessionLocal = sessionmaker(autocommit=False, autoflush=False, bind=engine)
app = FastAPI(title="negotiation peer")


def get_db() -> Iterator[Session]:
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()


def verify_api_key(x_api_key: str | None = Header(default=None)) -> None:
    expected = os.environ.get("PEER_API_KEY", "default-api-key")
    if x_api_key is None or not secrets.compare_digest(x_api_key, expected):
        raise HTTPException(status_code=401, detail="Invalid or missing API key")


class OfferIn(BaseModel):
    carrier_offer: float
    session_id: str | None = None
    notes: str | None = None


class RoundOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    call_id: int | None
    session_id: str | None
    round_number: int
    carrier_offer: float | None
    decision: str | None
    counter_offer: float | None
    agreed_rate: float | None
    accepted: bool
    is_final: bool
    rounds_remaining: int
    next_action: str | None
    system_response: str | None
    notes: str | None
    profile: str | None
    profile_version: int | None
    round_limit: float | None
    ceiling: float | None
    timestamp: dt.datetime | None


def round_out(row: Negotiation, profile: dict[str, object] | None = None) -> RoundOut:
    """The service's round shape for a stored row (the flags follow from the decision)."""
    final = row.decision in ("accept", "reject")
    actions = {"accept": "transfer_to_rep", "reject": "end_call", "counter": "await_offer"}
    profile = profile or {}
    stamp = row.timestamp.replace(tzinfo=dt.UTC) if row.timestamp else None
    return RoundOut(
        id=row.id,
        call_id=row.call_id,
        session_id=row.session_id,
        round_number=row.round_number,
        carrier_offer=row.carrier_offer,
        decision=row.decision,
        counter_offer=row.counter_offer,
        agreed_rate=row.carrier_offer if row.decision == "accept" else None,
        accepted=row.decision == "accept",
        is_final=final,
        rounds_remaining=0 if final else max(0, MAX_ROUNDS - row.round_number),
        next_action=actions.get(row.decision or ""),
        system_response=row.system_response,
        notes=row.notes,
        profile=profile.get("profile"),
        profile_version=profile.get("profile_version"),
        round_limit=profile.get("round_limit"),
        ceiling=profile.get("ceiling"),
        timestamp=stamp,
    )


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/api/calls/{call_id}/negotiate", status_code=201, response_model=RoundOut)
def negotiate(
    call_id: int,
    offer: OfferIn,
    db: Session = Depends(get_db),
    _: None = Depends(verify_api_key),
) -> RoundOut:
    call = db.query(Call).filter(Call.id == call_id).first()
    if call is None:
        raise HTTPException(status_code=404, detail=f"Call {call_id} not found")
    load = db.query(Load).filter(Load.load_id == call.load_id).first()
    session_id = offer.session_id or f"sess_{uuid.uuid4().hex}"
    now = dt.datetime.utcnow()
    session = (
        db.query(NegotiationSession).filter(NegotiationSession.session_id == session_id).first()
    )
    if session is None:
        session = NegotiationSession(
            session_id=session_id,
            status="active",
            ttl_seconds=int(SESSION_TTL.total_seconds()),
            created_at=now,
        )
        db.add(session)
    session.last_activity = now
    session.expires_at = now + SESSION_TTL

    previous = (
        db.query(Negotiation)
        .filter(Negotiation.call_id == call_id, Negotiation.session_id == session_id)
        .order_by(Negotiation.id)
        .all()
    )
    if previous and previous[-1].decision in ("accept", "reject"):
        raise HTTPException(status_code=409, detail="This negotiation is closed")
    round_number = len(previous) + 1

    rate = load.loadboard_rate if load else call.initial_rate_offered or 0.0
    ceiling = (load.max_rate if load else None) or rate * 1.1
    limit = math.floor((rate + (ceiling - rate) * round_number / MAX_ROUNDS) * 100) / 100
    counter = None
    if offer.carrier_offer <= limit:
        decision, message = "accept", f"${offer.carrier_offer:,.2f} works, let's book it."
        call.outcome, call.final_rate_agreed = "accepted", offer.carrier_offer
    elif round_number >= MAX_ROUNDS:
        decision = "reject"
        message = f"Sorry, ${offer.carrier_offer:,.2f} is more than we can pay for this load."
        call.outcome = "rejected"
    else:
        decision, counter = "counter", float(math.floor(limit))
        message = f"We can do ${counter:,.2f} on this load."
    row = Negotiation(
        call_id=call_id,
        session_id=session_id,
        round_number=round_number,
        carrier_offer=offer.carrier_offer,
        decision=decision,
        counter_offer=counter,
        system_response=message,
        notes=offer.notes,
        timestamp=now,
    )
    db.add(row)
    call.negotiation_rounds = round_number
    db.commit()
    db.refresh(row)
    profile = {"profile": "standard", "profile_version": 1, "round_limit": limit}
    return round_out(row, profile | {"ceiling": ceiling})


@app.get("/api/negotiations/session/{session_id}", response_model=list[RoundOut])
def session_rounds(
    session_id: str,
    db: Session = Depends(get_db),
    _: None = Depends(verify_api_key),
) -> list[RoundOut]:
    rows = (
        db.query(Negotiation)
        .filter(Negotiation.session_id == session_id)
        .order_by(Negotiation.id)
        .all()
    )
    if not rows:
        known = db.query(NegotiationSession).filter_by(session_id=session_id).first()
        if known is None:
            raise HTTPException(status_code=404, detail=f"Session {session_id} not found")
    return [round_out(row) for row in rows]
