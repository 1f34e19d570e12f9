"""The policy's invariants over negotiations resumed on new calls after dropped ones.

A resumed negotiation is rebuilt from what was recorded: the last round's number, decision
and counter (money as the database returns it, in cents). :func:`negotiation.next_round.
next_round` is the pure step the service runs on that state, whichever call the last round
was on; these properties drop the call at random points and check that the negotiation is
exactly the uninterrupted one, under every invariant (counters never below what was already
offered, a reject only on round N, at most N rounds, nothing after a final decision).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from negotiation.errors import ApiError
from negotiation.next_round import Offer, PolicySettings, next_round
from negotiation.policy import Profile
from tests.test_policy import PROPERTY, Terms, offer_for, play, terms

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _call(t: Terms, call_id: int) -> Any:
    return SimpleNamespace(
        id=call_id,
        load_id="LD-P",
        loadboard_rate=t.loadboard,
        max_rate=t.ceiling,  # the ceiling as max_rate: policy.ceiling() gives it back
        outcome="negotiating",
        load_status="available",
        booked_call_id=None,
    )


def _stored(values: dict[str, Any]) -> Any:
    """The round as read back: money quantized to cents, as ``Money`` returns it."""
    counter = values["counter_offer"]
    return SimpleNamespace(
        round_number=values["round_number"],
        decision=values["decision"],
        counter_offer=None if counter is None else Decimal(counter).quantize(Decimal("0.01")),
    )


@PROPERTY
@given(data=st.data(), t=terms())
def test_a_negotiation_resumed_on_new_calls_is_the_uninterrupted_one(
    data: st.DataObject, t: Terms
) -> None:
    offers = data.draw(st.lists(offer_for(t), min_size=t.rounds, max_size=t.rounds))
    # After which rounds the call drops and the carrier calls back (a new call id).
    drops = data.draw(st.sets(st.integers(1, t.rounds)))
    expected = play(t, offers)  # checks every invariant of the uninterrupted negotiation
    cfg = PolicySettings(t.rounds, Decimal("0.10"), 3600, False)
    profile = Profile("standard", 1, t.rounds, Decimal("0.10"), t.concession)
    call_id, last, offered = 1, None, Decimal(0)
    recorded: list[dict[str, Any]] = []
    for number, offer in enumerate(offers, start=1):
        offered_now = Offer(call_id, offer, "s", None, cfg, NOW)
        values = next_round(_call(t, call_id), last, offered_now, profile)
        assert values["round_number"] == number
        if values["counter_offer"] is not None:
            assert values["counter_offer"] >= offered  # never below what was offered before
            offered = values["counter_offer"]
        recorded.append(values)
        last = _stored(values)
        if values["decision"] != "counter":
            break
        if number in drops:
            call_id += 1
    assert [(v["decision"], v["counter_offer"]) for v in recorded] == [
        (d.decision, d.counter_offer) for d in expected
    ]
    assert len(recorded) <= t.rounds
    if recorded[-1]["decision"] == "reject":
        assert len(recorded) == t.rounds
    if recorded[-1]["decision"] != "counter" or len(recorded) == t.rounds:
        # Closed, on the call it ended on and on any callback.
        for call in (call_id, call_id + 1):
            with pytest.raises(ApiError) as closed:
                next_round(
                    _call(t, call), last, Offer(call, offers[0], "s", None, cfg, NOW), profile
                )
            assert closed.value.code == "NEGOTIATION_CLOSED"
