"""The pricing policy's invariants as properties over random profiles, rates and offers.

Pure tests of :mod:`negotiation.policy` (no database): L is the loadboard rate, C the ceiling,
N the profile's number of rounds (1-10), its markup 0-1 and its concession any of linear, early
and late. The broker pays, so a lower offer is better for the broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from negotiation.policy import (
    CENT,
    CONCESSIONS,
    Concession,
    Decision,
    ceiling,
    concession_share,
    decide,
    round_limit,
)

PROPERTY = settings(max_examples=200, deadline=None)


def cents(low: int, high: int) -> st.SearchStrategy[Decimal]:
    return st.integers(low, high).map(lambda c: Decimal(c) / 100)


@dataclass(frozen=True)
class Terms:
    loadboard: Decimal
    ceiling: Decimal
    rounds: int
    concession: Concession = "linear"


@st.composite
def terms(draw: st.DrawFn) -> Terms:
    """A random profile on a random load: L from a cent to a million dollars; C from max_rate
    (>= L) or the profile's markup (0-1); N in 1..10; any concession."""
    loadboard = draw(
        st.one_of(cents(1, 500), cents(100_000, 500_000), cents(1, 100_000_000)),
    )
    if draw(st.booleans()):
        spread = draw(st.one_of(cents(0, 300), cents(0, int(loadboard * 300))))
        top = ceiling(loadboard, loadboard + spread, Decimal("0.10"))
    else:
        markup = draw(st.integers(0, 100).map(lambda p: Decimal(p) / 100))
        top = ceiling(loadboard, None, markup)
    return Terms(loadboard, top, draw(st.integers(1, 10)), draw(st.sampled_from(CONCESSIONS)))


@st.composite
def offer_for(draw: st.DrawFn, t: Terms) -> Decimal:
    """Offers spread over the whole range and clustered at the interesting edges."""
    low, high = t.loadboard, t.ceiling
    edges = [low, high, low + CENT, high + CENT, max(low - CENT, CENT), high + 1]
    whole = low.quantize(Decimal(1), rounding=ROUND_CEILING)
    edges += [whole, whole - CENT if whole - CENT > 0 else CENT, whole + CENT]
    top = int(high * 200) + 100
    return draw(st.one_of(st.sampled_from(edges), cents(1, top), cents(int(low * 100), top)))


def _has_whole_dollar(low: Decimal, high: Decimal) -> bool:
    return low.quantize(Decimal(1), rounding=ROUND_CEILING) <= high


def check_counter(t: Terms, offer: Decimal, d: Decision, previous: Decimal | None) -> None:
    counter = d.counter_offer
    assert counter is not None and d.agreed_rate is None and not d.is_final
    assert t.loadboard <= counter <= t.ceiling
    assert counter < offer
    if previous is not None:
        assert counter >= previous
    if _has_whole_dollar(t.loadboard, t.ceiling):
        assert counter == counter.to_integral_value(), counter
    else:
        assert counter == t.loadboard


def play(t: Terms, offers: list[Decimal]) -> list[Decision]:
    """Run a negotiation as the service does and check every invariant on every round."""
    decisions: list[Decision] = []
    previous: Decimal | None = None
    for number, offer in enumerate(offers, start=1):
        d = decide(
            offer=offer,
            loadboard_rate=t.loadboard,
            ceiling_rate=t.ceiling,
            round_number=number,
            max_rounds=t.rounds,
            previous_counter=previous,
            concession=t.concession,
        )
        decisions.append(d)
        assert d.round_limit == round_limit(t.loadboard, t.ceiling, number, t.rounds, t.concession)
        assert d.message
        if offer <= t.loadboard:
            assert d.decision == "accept"
        if d.decision == "accept":
            assert d.agreed_rate == offer and d.agreed_rate <= t.ceiling
            assert d.is_final and d.counter_offer is None and d.rounds_remaining == 0
            return decisions
        if d.decision == "reject":
            assert number == t.rounds
            assert offer > t.ceiling  # on the last round everything up to C is accepted
            assert d.is_final and d.counter_offer is None and d.agreed_rate is None
            return decisions
        assert number < t.rounds
        assert d.rounds_remaining == t.rounds - number
        check_counter(t, offer, d, previous)
        previous = d.counter_offer
    return decisions


@PROPERTY
@given(data=st.data(), t=terms())
def test_negotiations_keep_every_invariant(data: st.DataObject, t: Terms) -> None:
    offers = data.draw(st.lists(offer_for(t), min_size=t.rounds, max_size=t.rounds))
    decisions = play(t, offers)
    assert 1 <= len(decisions) <= t.rounds
    assert decisions[-1].is_final or len(decisions) < t.rounds


@PROPERTY
@given(data=st.data(), t=terms())
def test_carrier_who_never_comes_down_is_refused_on_round_n(data: st.DataObject, t: Terms) -> None:
    above = data.draw(cents(int(t.ceiling * 100) + 1, int(t.ceiling * 100) + 1_000_000))
    decisions = play(t, [above] * t.rounds)
    assert [d.decision for d in decisions] == ["counter"] * (t.rounds - 1) + ["reject"]


@PROPERTY
@given(data=st.data(), t=terms())
def test_carrier_who_takes_each_counter_is_accepted(data: st.DataObject, t: Terms) -> None:
    opening = data.draw(offer_for(t))
    first = play(t, [opening])[0]
    if first.decision == "counter":
        assert first.counter_offer is not None
        second = play(t, [opening, first.counter_offer])
        assert second[-1].decision == "accept"
        assert second[-1].agreed_rate == first.counter_offer


@PROPERTY
@given(
    t=terms(),
    below=cents(1, 100_000_000),
    number=st.integers(1, 10),
    previous=st.none() | cents(1, 100_000_000),
)
def test_offer_at_or_below_loadboard_is_always_accepted(
    t: Terms, below: Decimal, number: int, previous: Decimal | None
) -> None:
    offer = min(below, t.loadboard)
    d = decide(
        offer=offer,
        loadboard_rate=t.loadboard,
        ceiling_rate=t.ceiling,
        round_number=min(number, t.rounds),
        max_rounds=t.rounds,
        previous_counter=previous,
        concession=t.concession,
    )
    assert d.decision == "accept" and d.agreed_rate == offer


@PROPERTY
@given(t=terms())
def test_limit_rises_from_loadboard_to_ceiling(t: Terms) -> None:
    limits = [
        round_limit(t.loadboard, t.ceiling, r, t.rounds, t.concession)
        for r in range(1, t.rounds + 1)
    ]
    assert limits == sorted(limits)
    assert t.loadboard <= limits[0] and limits[-1] == t.ceiling


@PROPERTY
@given(t=terms())
def test_early_concedes_at_least_linear_and_late_at_most(t: Terms) -> None:
    for r in range(1, t.rounds + 1):
        early, linear, late = (
            round_limit(t.loadboard, t.ceiling, r, t.rounds, c) for c in ("early", "linear", "late")
        )
        assert late <= linear <= early, (r, late, linear, early)
        shares = [concession_share(c, r, t.rounds) for c in ("late", "linear", "early")]
        assert Decimal(0) < shares[0] <= shares[1] <= shares[2] <= Decimal(1)
    if t.rounds > 1 and t.ceiling - t.loadboard >= 1:
        # With a dollar or more to concede, the styles differ where the formulas say they do.
        first = [round_limit(t.loadboard, t.ceiling, 1, t.rounds, c) for c in CONCESSIONS]
        assert first[1] > first[0] or t.ceiling - t.loadboard < t.rounds, first


def test_concession_formulas_by_hand() -> None:
    # L 2000, C 2400 (range 400), four rounds.
    def limits(concession: Concession) -> list[Decimal]:
        return [round_limit(Decimal(2000), Decimal(2400), r, 4, concession) for r in range(1, 5)]

    assert limits("linear") == [Decimal(n) for n in (2100, 2200, 2300, 2400)]
    assert limits("early") == [Decimal(n) for n in (2175, 2300, 2375, 2400)]
    assert limits("late") == [Decimal(n) for n in (2025, 2100, 2225, 2400)]
    # Cents are rounded down, once: 1000 + 100.01 * 1 / 3 = 1033.3366...
    assert round_limit(Decimal(1000), Decimal("1100.01"), 1, 3) == Decimal("1033.33")


@PROPERTY
@given(loadboard=cents(1, 100_000_000), markup=st.integers(0, 1000), max_rate=cents(1, 10**9))
def test_ceiling_is_max_rate_else_markup(
    loadboard: Decimal, markup: int, max_rate: Decimal
) -> None:
    ratio = Decimal(markup) / 1000
    by_markup = ceiling(loadboard, None, ratio)
    assert loadboard <= by_markup <= loadboard * (1 + ratio)
    assert loadboard * (1 + ratio) - by_markup < CENT
    assert ceiling(loadboard, max_rate, ratio) == max(max_rate, loadboard)


def test_round_outside_one_to_n_is_refused() -> None:
    for number in (0, 4):
        with pytest.raises(ValueError, match="round_number"):
            decide(
                offer=Decimal(3000),
                loadboard_rate=Decimal(2000),
                ceiling_rate=Decimal(2200),
                round_number=number,
                max_rounds=3,
            )


@PROPERTY
@example(loadboard=Decimal("1000.50"), spread=Decimal("1.00"), offer=Decimal("1000.90"))
@example(loadboard=Decimal("1000.50"), spread=Decimal("0.30"), offer=Decimal("1000.79"))
@given(loadboard=cents(1, 10_000), spread=cents(0, 200), offer=cents(1, 10_200))
def test_no_counter_at_or_above_the_offer_when_no_whole_dollar_fits_below_it(
    loadboard: Decimal, spread: Decimal, offer: Decimal
) -> None:
    # Rates with cents leave few whole dollars between L and C: a counter must still be below
    # the offer (else the broker would be raising the carrier's own ask).
    t = Terms(loadboard, loadboard + spread, 3)
    play(t, [offer, offer, offer])


def test_messages_are_sentences_with_amounts() -> None:
    def at(offer: str, number: int) -> Decision:
        return decide(
            offer=Decimal(offer),
            loadboard_rate=Decimal(2000),
            ceiling_rate=Decimal(2200),
            round_number=number,
            max_rounds=3,
        )

    assert at("2500", 1).message == "We can do $2,066.00 on this load."
    assert at("1999.5", 2).message == (
        "Great, we can book this load at $1,999.50. Let me transfer you to a rep to finalize it."
    )
    reject = at("2500", 3)
    assert "$2,500.00" in reject.message and reject.message.endswith(".")
