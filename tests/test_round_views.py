"""The round paths send plain dicts (``round_json``) instead of ``RoundRead`` models.

They must be the same JSON, byte for byte, as the documented model, for every kind of row:
each decision (and legacy text the policy never writes), missing money, any round number.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import NamedTuple

from hypothesis import given
from hypothesis import strategies as st
from litestar.plugins.pydantic import PydanticInitPlugin
from litestar.serialization import encode_json, get_serializer

from negotiation.idempotency import encode
from negotiation.schemas import Page, RoundRead, round_fields, round_json


class Row(NamedTuple):
    id: int
    call_id: int | None
    session_id: str | None
    round_number: int
    carrier_offer: Decimal | None
    decision: str | None
    counter_offer: Decimal | None
    system_response: str | None
    notes: str | None
    profile: str | None
    profile_version: int | None
    round_limit: Decimal | None
    ceiling: Decimal | None
    timestamp: dt.datetime | None
    #: The round queries read it with the round (None: a legacy round, counted by the setting).
    profile_max_rounds: int | None = None


money = st.one_of(
    st.none(),
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal("10000000"), places=2),
)
rows = st.builds(
    Row,
    id=st.integers(1, 2**31 - 1),
    call_id=st.one_of(st.none(), st.integers(1, 2**31 - 1)),
    session_id=st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_\-]{1,64}", fullmatch=True)),
    round_number=st.integers(1, 25),
    carrier_offer=money,
    decision=st.sampled_from(["accept", "counter", "reject", None, "ACCEPTED", ""]),
    counter_offer=money,
    system_response=st.one_of(st.none(), st.text(max_size=40)),
    notes=st.one_of(st.none(), st.text(max_size=40)),
    profile=st.one_of(st.none(), st.sampled_from(["standard", "firm"])),
    profile_version=st.one_of(st.none(), st.integers(1, 50)),
    round_limit=money,
    ceiling=money,
    profile_max_rounds=st.one_of(st.none(), st.integers(1, 10)),
    timestamp=st.one_of(
        st.none(),
        st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1)).map(
            lambda d: d.replace(tzinfo=dt.UTC)
        ),
    ),
)
#: What Litestar uses to encode a handler's return value when the pydantic plugin is on.
SERIALIZER = get_serializer(PydanticInitPlugin.encoders())


@given(row=rows, max_rounds=st.integers(1, 20))
def test_round_fields_encode_as_the_model_does(row: Row, max_rounds: int) -> None:
    model = RoundRead.from_row(row, max_rounds)
    as_listed = encode_json([round_json(row, max_rounds)], SERIALIZER)
    assert as_listed == encode_json([model], SERIALIZER)
    # The record path stores and sends encode(dict); a replay must equal the model's JSON too.
    assert encode(round_json(row, max_rounds)) == encode(model)


@given(page=st.lists(rows, max_size=4), cursor=st.one_of(st.none(), st.text(max_size=20)))
def test_a_page_of_round_json_encodes_as_the_page_model(
    page: list[Row], cursor: str | None
) -> None:
    as_sent = {"items": [round_json(r, 3) for r in page], "next_cursor": cursor}
    model = Page[RoundRead](items=[RoundRead.from_row(r, 3) for r in page], next_cursor=cursor)
    assert encode_json(as_sent, SERIALIZER) == encode_json(model, SERIALIZER)


def test_flags_follow_the_decision() -> None:
    base = Row(
        1, 2, "s", 2, Decimal("2100.00"), "accept", None, "ok", None, None, None, None, None, None
    )
    accepted = round_fields(base, 3)
    assert accepted["accepted"] and accepted["is_final"] and accepted["rounds_remaining"] == 0
    assert accepted["agreed_rate"] == Decimal("2100.00")
    countered = round_fields(base._replace(decision="counter", counter_offer=Decimal("2050")), 3)
    assert not countered["is_final"] and countered["rounds_remaining"] == 1
    assert countered["agreed_rate"] is None
    legacy = round_fields(base._replace(decision="ACCEPTED"), 3)
    assert legacy["decision"] is None and not legacy["accepted"]


def test_rounds_remaining_count_by_the_rounds_profile_version() -> None:
    legacy = Row(
        1,
        2,
        "s",
        2,
        Decimal("2300"),
        "counter",
        Decimal("2050"),
        "ok",
        None,
        None,
        None,
        None,
        None,
        None,
    )
    assert round_fields(legacy, 3)["rounds_remaining"] == 1
    decided = legacy._replace(profile="firm", profile_version=2, profile_max_rounds=5)
    fields = round_fields(decided, 3)
    assert fields["rounds_remaining"] == 3
    assert (fields["profile"], fields["profile_version"]) == ("firm", 2)
