"""The Jinja2 environment for HTML reports and web pages, and the formatting they share.

Templates ship in the package (``negotiation/templates``). Autoescaping is on for every
template, so anything user-supplied (session ids, notes, responses) is shown as text.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from negotiation.policy import DEFAULT_PROFILE, format_money
from negotiation.profile_names import LEGACY

DASH = "—"


def money(value: Decimal | None) -> str:
    """``$2,150.00``; a dash for no amount."""
    return DASH if value is None else format_money(value)


def signed_money(value: Decimal | None) -> str:
    """``+$150.00`` / ``-$50.00``."""
    if value is None:
        return DASH
    sign = "-" if value < 0 else "+"
    return sign + format_money(abs(value))


def percent(value: Decimal | None) -> str:
    """A signed percentage: ``+7.50%``."""
    return DASH if value is None else f"{value:+.2f}%"


def rate(value: Decimal | None) -> str:
    """A 0..1 ratio as a percentage: ``66.67%``."""
    return DASH if value is None else f"{value * 100:.2f}%"


def when(value: dt.datetime | None) -> str:
    """``2026-12-01 08:00:05 UTC``."""
    if value is None:
        return DASH
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    """``45.2s``, ``2m 05s``, ``3h 04m``, ``2d 03h``."""
    if seconds is None:
        return DASH
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def period(since: dt.datetime | None, until: dt.datetime | None) -> str:
    """``all rounds``, ``from X``, ``before Y`` or ``from X to before Y``."""
    if since is None and until is None:
        return "all rounds"
    if until is None:
        return f"from {when(since)}"
    if since is None:
        return f"before {when(until)}"
    return f"from {when(since)} to before {when(until)}"


def profile(name: str | None, version: int | None = None) -> str:
    """``firm v2``; ``legacy`` for a round recorded before pricing profiles."""
    if name is None:
        return LEGACY
    return name if version is None else f"{name} v{version}"


def text(value: object) -> str:
    """A cell value as text; a dash for none."""
    return DASH if value is None or value == "" else str(value)


def profile_name(report: Any) -> str:
    """The pricing profile of a session report: the session's, else its last round's, else the
    default (rows recorded before profiles existed name none)."""
    named = getattr(report.session, "profile", None)
    for entry in reversed(report.rounds):
        named = named or getattr(entry, "profile", None)
    return str(named or DEFAULT_PROFILE)


def environment() -> Environment:
    """A new environment: package templates, autoescape on, undefined names are errors."""
    env = Environment(
        loader=PackageLoader("negotiation", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        money=money,
        signed_money=signed_money,
        percent=percent,
        rate=rate,
        when=when,
        duration=duration,
        text=text,
        period=period,
        profile_name=profile_name,
        profile=profile,
    )
    return env
