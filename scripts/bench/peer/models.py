"""The peer's tables: the original service's SQLAlchemy models (tests/fixtures/
legacy_loads_schema.sql) with the columns the benchmark's rounds carry since sessions existed.

Money is FLOAT and there is no unique constraint on a round's number, as in the original. The
columns the lookups filter on are indexed (``index=True``, as its models declared ``id``), so the
comparison measures the stack rather than a missing index. ``scripts/bench/dataset.py`` seeds
these tables with the same rows as the service's.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import declarative_base

Base = declarative_base()


class Load(Base):
    __tablename__ = "loads"
    load_id = Column(String, primary_key=True, index=True)
    origin = Column(String, nullable=False)
    destination = Column(String, nullable=False)
    pickup_datetime = Column(DateTime, nullable=False)
    delivery_datetime = Column(DateTime, nullable=False)
    equipment_type = Column(String, nullable=False)
    loadboard_rate = Column(Float, nullable=False)
    max_rate = Column(Float)
    notes = Column(Text)
    status = Column(String)
    created_at = Column(DateTime)
    updated_at = Column(DateTime)


class Call(Base):
    __tablename__ = "calls"
    id = Column(Integer, primary_key=True, index=True)
    carrier_mc_number = Column(String)
    load_id = Column(String, ForeignKey("loads.load_id"))
    call_start_time = Column(DateTime)
    call_end_time = Column(DateTime)
    outcome = Column(String)
    initial_rate_offered = Column(Float)
    final_rate_agreed = Column(Float)
    negotiation_rounds = Column(Integer)
    notes = Column(Text)
    transferred_to_rep = Column(Boolean)


class NegotiationSession(Base):
    __tablename__ = "sessions"
    session_id = Column(String, primary_key=True, index=True)
    client_id = Column(String)
    status = Column(String)
    ttl_seconds = Column(Integer)
    created_at = Column(DateTime)
    last_activity = Column(DateTime)
    expires_at = Column(DateTime)


class Negotiation(Base):
    __tablename__ = "negotiations"
    id = Column(Integer, primary_key=True, index=True)
    call_id = Column(Integer, ForeignKey("calls.id"), index=True)
    session_id = Column(String, index=True)
    round_number = Column(Integer, nullable=False)
    carrier_offer = Column(Float)
    decision = Column(String)
    counter_offer = Column(Float)
    system_response = Column(String)
    notes = Column(Text)
    timestamp = Column(DateTime, default=dt.datetime.utcnow)


def create(url: str) -> None:
    """A new, empty SQLite file at ``url`` with the peer's tables (any old one deleted)."""
    path = Path(make_url(url).database or "")
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()


def default_journal(url: str) -> None:
    """Back to SQLite's default rollback journal after the bulk seed left the file in WAL mode:
    the original opened its file with SQLAlchemy's defaults and set no pragma."""
    engine = create_engine(url)
    with engine.connect() as conn:
        conn.execute(text("PRAGMA journal_mode = DELETE"))
    engine.dispose()
