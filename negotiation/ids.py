"""Session ids: generated (sortable or UUID form) and validated."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import uuid

SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_\-.:]{1,128}")
MAX_SESSION_ID_LENGTH = 128
#: The characters of the rule as a JSON Schema pattern, for parameter checks and the OpenAPI
#: document (with ``min_length=1, max_length=MAX_SESSION_ID_LENGTH``). ``(?!\n)``: Python's
#: ``$`` also matches before a final newline, JSON Schema's only at the end.
SESSION_ID_REGEX = r"^[A-Za-z0-9_\-.:]+$(?!\n)"


def generate_session_id(now: dt.datetime | None = None) -> str:
    """A new id ``sess_YYYYMMDDHHMMSS_<20 hex>``: UTC creation time first, so ids sort by age."""
    now = now or dt.datetime.now(dt.UTC)
    return f"sess_{now.astimezone(dt.UTC):%Y%m%d%H%M%S}_{secrets.token_hex(10)}"


def generate_uuid_session_id() -> str:
    """A new id ``sess_<32 hex>`` from a random UUID."""
    return f"sess_{uuid.uuid4().hex}"


def validate_session_id(session_id: object) -> bool:
    """True for 1-128 characters of ``A-Z a-z 0-9 _ - . :``; ids are case-sensitive."""
    return isinstance(session_id, str) and SESSION_ID_PATTERN.fullmatch(session_id) is not None
