"""The pricing policy: a pure function of the pricing profile's version, the load's rates, the
round, the carrier's offer and the negotiation's last counter.

The broker pays the carrier, so a lower offer is better for the broker. With L the loadboard
rate, C the ceiling (``max_rate``, else ``L * (1 + max_markup)``), N the profile's number of
rounds and r this round's number, the broker's limit in round r is ``L + (C - L) * f(r)``,
rounded down to the cent, where the profile's concession ``f`` rises from 0 toward 1 and
reaches 1 (the limit C) on the last round:

* ``linear``: ``f(r) = r / N``, equal steps (the ``standard`` profile's);
* ``early``:  ``f(r) = 1 - (1 - r / N)^2 = r (2N - r) / N^2``, concedes most in the first
  rounds (never less than linear);
* ``late``:   ``f(r) = (r / N)^2``, holds firm until the last rounds (never more than linear).

* offer <= L, or offer within this round's limit: accept at the offer;
* otherwise, before the last round: counter with the limit rounded down to whole dollars
  (never below L, and L itself when no whole-dollar amount lies in [L, C]); when that counter
  would not be below the offer (rates with cents leave few whole dollars), accept the offer;
* otherwise (last round): reject.

No I/O here: the service layer reads the negotiation's state and records the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Literal

CENT = Decimal("0.01")
DOLLAR = Decimal("1")
#: The pricing profile that decides when no other is named (and of rounds recorded before
#: profiles existed).
DEFAULT_PROFILE = "standard"

DecisionKind = Literal["accept", "counter", "reject"]
Concession = Literal["linear", "early", "late"]
CONCESSIONS: tuple[Concession, ...] = ("linear", "early", "late")


@dataclass(frozen=True, slots=True)
class Profile:
    """One version of a pricing profile: the negotiation style a round is decided by."""

    name: str
    version: int
    max_rounds: int
    max_markup: Decimal
    concession: Concession


@dataclass(frozen=True, slots=True)
class Decision:
    """What the broker says to one offer."""

    decision: DecisionKind
    counter_offer: Decimal | None
    agreed_rate: Decimal | None
    is_final: bool
    rounds_remaining: int
    message: str
    #: The broker's limit this round (see :func:`round_limit`).
    round_limit: Decimal

    @property
    def accepted(self) -> bool:
        return self.decision == "accept"


def ceiling(loadboard_rate: Decimal, max_rate: Decimal | None, max_markup: Decimal) -> Decimal:
    """The most the broker will ever pay for the load."""
    if max_rate is not None:
        return max(max_rate, loadboard_rate)
    return (loadboard_rate * (1 + max_markup)).quantize(CENT, rounding=ROUND_FLOOR)


def concession_share(concession: Concession, round_number: int, max_rounds: int) -> Decimal:
    """``f(r)``: the share of the range ``C - L`` the broker's limit has reached in round ``r``.

    Exact (a quotient of integers), so the limit is rounded only once, to the cent.
    """
    r, n = min(round_number, max_rounds), max_rounds
    if concession == "early":
        return Decimal(r * (2 * n - r)) / Decimal(n * n)
    if concession == "late":
        return Decimal(r * r) / Decimal(n * n)
    return Decimal(r) / Decimal(n)


def round_limit(
    loadboard_rate: Decimal,
    ceiling_rate: Decimal,
    round_number: int,
    max_rounds: int,
    concession: Concession = "linear",
) -> Decimal:
    """The most the broker accepts in ``round_number`` (1-based), in cents, rounded down."""
    if concession == "linear":
        # As before profiles, to the digit: (C - L) * r / N.
        step = (ceiling_rate - loadboard_rate) * min(round_number, max_rounds) / max_rounds
    else:
        step = (ceiling_rate - loadboard_rate) * concession_share(
            concession, round_number, max_rounds
        )
    return min(ceiling_rate, (loadboard_rate + step).quantize(CENT, rounding=ROUND_FLOOR))


def counter_offer(loadboard_rate: Decimal, ceiling_rate: Decimal, limit: Decimal) -> Decimal:
    """The whole-dollar counter for a round whose limit is ``limit``."""
    whole = limit.quantize(DOLLAR, rounding=ROUND_FLOOR)
    if whole >= loadboard_rate:
        return whole.quantize(CENT)
    lowest_whole = loadboard_rate.quantize(DOLLAR, rounding=ROUND_CEILING)
    if lowest_whole <= ceiling_rate:
        return lowest_whole.quantize(CENT)
    return loadboard_rate


def format_money(amount: Decimal) -> str:
    """``Decimal("2150")`` -> ``"$2,150.00"``."""
    return f"${amount.quantize(CENT):,}"


def _accept(offer: Decimal, limit: Decimal) -> Decision:
    return Decision(
        decision="accept",
        counter_offer=None,
        agreed_rate=offer,
        is_final=True,
        rounds_remaining=0,
        message=(
            f"Great, we can book this load at {format_money(offer)}. "
            "Let me transfer you to a rep to finalize it."
        ),
        round_limit=limit,
    )


def decide(
    *,
    offer: Decimal,
    loadboard_rate: Decimal,
    ceiling_rate: Decimal,
    round_number: int,
    max_rounds: int,
    previous_counter: Decimal | None = None,
    concession: Concession = "linear",
) -> Decision:
    """Decide on the carrier's ``offer`` in round ``round_number`` of ``max_rounds``, the
    broker's limit moving by ``concession``.

    ``previous_counter`` is the broker's last counter in this negotiation; counters never go
    below it, so a negotiation's counters never decrease.
    """
    if round_number < 1 or round_number > max_rounds:
        raise ValueError(f"round_number must be within 1..{max_rounds}, got {round_number}")
    limit = round_limit(loadboard_rate, ceiling_rate, round_number, max_rounds, concession)
    already_offered = previous_counter is not None and offer <= min(previous_counter, ceiling_rate)
    if offer <= loadboard_rate or offer <= limit or already_offered:
        return _accept(offer, limit)
    if round_number < max_rounds:
        counter = counter_offer(loadboard_rate, ceiling_rate, limit)
        if previous_counter is not None and previous_counter > counter:
            counter = min(previous_counter, ceiling_rate)
        if counter >= offer:
            # The whole-dollar counter would not be below the carrier's ask: take the ask.
            return _accept(offer, limit)
        remaining = max_rounds - round_number
        return Decision(
            decision="counter",
            counter_offer=counter,
            agreed_rate=None,
            is_final=False,
            rounds_remaining=remaining,
            message=f"We can do {format_money(counter)} on this load.",
            round_limit=limit,
        )
    return Decision(
        decision="reject",
        counter_offer=None,
        agreed_rate=None,
        is_final=True,
        rounds_remaining=0,
        message=(
            f"Sorry, {format_money(offer)} is more than we can pay for this load. "
            "Thanks for calling."
        ),
        round_limit=limit,
    )
