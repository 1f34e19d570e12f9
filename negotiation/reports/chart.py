"""The geometry of the session chart: offers and counters per round against loadboard rate and
ceiling. Pure arithmetic; the templates draw it as inline SVG (no script, no external asset).

Rounds sit in equal slots left to right in session order. Each round's own load gives the
loadboard and ceiling lines over its slot, so a session spanning loads shows steps; a round a
pricing profile decided also shows its limit (what the broker would accept that round).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from negotiation.policy import format_money
from negotiation.reports.schemas import RoundEntry

WIDTH, HEIGHT = 560, 320
LEFT, RIGHT, TOP, BOTTOM = 70, 14, 14, 52
#: Room per character of a dollar label at the largest font the pages use (21 user units, on
#: a phone), so the labels stay inside the viewBox at any width.
LABEL_CHAR_WIDTH = 13


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float
    kind: str
    round_id: int
    label: str


@dataclass(frozen=True, slots=True)
class Segment:
    x1: float
    x2: float
    y: float
    kind: str
    label: str


@dataclass(frozen=True, slots=True)
class Polyline:
    kind: str
    points: str


@dataclass(frozen=True, slots=True)
class Group:
    """A run of rounds of one call, labelled when a session spans several calls."""

    x: float
    label: str


@dataclass(frozen=True, slots=True)
class Tick:
    at: float
    label: str


@dataclass(slots=True)
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM
    points: list[Point] = field(default_factory=list)
    lines: list[Polyline] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    description: str = ""


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / target
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return float(factor * magnitude)
    return float(10 * magnitude)


def _values(entries: Sequence[RoundEntry]) -> list[Decimal]:
    values: list[Decimal] = []
    for e in entries:
        for v in (e.carrier_offer, e.counter_offer, e.loadboard_rate, e.ceiling, e.round_limit):
            if v is not None:
                values.append(v)
    return values


def build_chart(entries: Sequence[RoundEntry]) -> Chart | None:
    """The chart of ``entries``; ``None`` when no round has an amount to plot."""
    values = _values(entries)
    if not values:
        return None
    chart = Chart()
    low, high = float(min(values)), float(max(values))
    pad = (high - low) * 0.08 or max(high * 0.02, 1.0)
    step = _nice_step(high - low + 2 * pad)
    low = math.floor((low - pad) / step) * step
    high = math.ceil((high + pad) / step) * step

    def y_of(value: Decimal) -> float:
        share = (float(value) - low) / (high - low)
        return round(chart.bottom - share * (chart.bottom - chart.top), 1)

    tick = low
    while tick <= high + step / 2:
        chart.y_ticks.append(Tick(y_of(Decimal(str(tick))), f"${tick:,.0f}"))
        tick += step
    longest = max(len(t.label) for t in chart.y_ticks)
    chart.left = max(LEFT, 12 + LABEL_CHAR_WIDTH * longest)
    slot = (chart.right - chart.left) / len(entries)

    offers_by_call: dict[int | None, list[Point]] = {}
    counters_by_call: dict[int | None, list[Point]] = {}
    several_calls = len({e.call_id for e in entries}) > 1
    for index, e in enumerate(entries):
        if several_calls and (index == 0 or entries[index - 1].call_id != e.call_id):
            label = f"Call {e.call_id}" if e.call_id is not None else "No call"
            chart.groups.append(Group(round(chart.left + slot * index, 1), label))
        x = round(chart.left + slot * (index + 0.5), 1)
        name = f"Round {e.round_number}" + (f", call {e.call_id}" if e.call_id is not None else "")
        chart.x_ticks.append(Tick(x, str(e.round_number)))
        x1, x2 = round(chart.left + slot * index, 1), round(chart.left + slot * (index + 1), 1)
        if e.loadboard_rate is not None:
            label = f"Loadboard rate {format_money(e.loadboard_rate)}"
            _extend(chart.segments, Segment(x1, x2, y_of(e.loadboard_rate), "loadboard", label))
        if e.ceiling is not None:
            label = f"Ceiling {format_money(e.ceiling)}"
            _extend(chart.segments, Segment(x1, x2, y_of(e.ceiling), "ceiling", label))
        if e.round_limit is not None:
            label = (
                f"{name}: limit {format_money(e.round_limit)} ({e.profile} v{e.profile_version})"
            )
            chart.segments.append(Segment(x1, x2, y_of(e.round_limit), "limit", label))
        if e.carrier_offer is not None:
            kind = "agreed" if e.decision == "accept" else "offer"
            verb = "agreed at" if kind == "agreed" else "carrier offered"
            label = f"{name}: {verb} {format_money(e.carrier_offer)}"
            point = Point(x, y_of(e.carrier_offer), kind, e.id, label)
            chart.points.append(point)
            offers_by_call.setdefault(e.call_id, []).append(point)
        if e.counter_offer is not None:
            label = f"{name}: broker countered {format_money(e.counter_offer)}"
            point = Point(x, y_of(e.counter_offer), "counter", e.id, label)
            chart.points.append(point)
            counters_by_call.setdefault(e.call_id, []).append(point)
    for kind, groups in (("offer", offers_by_call), ("counter", counters_by_call)):
        for group in groups.values():
            if len(group) > 1:
                chart.lines.append(Polyline(kind, " ".join(f"{p.x},{p.y}" for p in group)))
    chart.description = _describe(entries)
    return chart


def _extend(segments: list[Segment], segment: Segment) -> None:
    """Add ``segment``, merged into the previous one of its kind when it continues it."""
    for i in range(len(segments) - 1, -1, -1):
        last = segments[i]
        if last.kind == segment.kind:
            if last.x2 == segment.x1 and last.y == segment.y:
                segments[i] = Segment(last.x1, segment.x2, last.y, last.kind, last.label)
                return
            break
    segments.append(segment)


def _describe(entries: Sequence[RoundEntry]) -> str:
    offers = sum(1 for e in entries if e.carrier_offer is not None)
    counters = sum(1 for e in entries if e.counter_offer is not None)
    return (
        f"{len(entries)} rounds: {offers} carrier offers and {counters} broker counters, "
        "plotted against each load's loadboard rate and ceiling and each round's limit."
    )
