"""Money in requests: a JSON number or a plain decimal string, read as an exact amount.

Voice platforms' tool templates send every value as a string, so ``"2300"`` and ``"2300.10"``
are amounts as much as ``2300`` and ``2300.1``. Anything else (``"$2,300"``, ``"2300.123"``,
``"2e3"``, ``true``) is refused with one sentence that shows what a valid amount looks like.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator
from pydantic_core import PydanticCustomError

from negotiation.messages import shorten

MAX_MONEY = Decimal("10000000")
CENT = Decimal("0.01")

#: Digits with at most two decimals: no sign, currency symbol, thousands separator or exponent.
PLAIN_AMOUNT = re.compile(r"[0-9]{1,8}(\.[0-9]{1,2})?")
#: What every refusal of an amount says it should look like.
VALID_AMOUNT = (
    f"an amount like 2300 or 2300.50: more than 0, at most {MAX_MONEY:,}, with at most two "
    "decimals, as a JSON number or a plain decimal string (no currency sign, commas or exponent)"
)


def _shown(value: Any) -> str:
    return shorten(str(value) if isinstance(value, Decimal) else json.dumps(value, default=str))


def _refused(value: Any) -> PydanticCustomError:
    return PydanticCustomError(
        "money", "must be {valid}; got {got}", {"valid": VALID_AMOUNT, "got": _shown(value)}
    )


def parse_money(value: Any) -> Decimal:
    """``value`` (a number, a plain decimal string or a ``Decimal``) as an exact amount.

    Raises :class:`pydantic_core.PydanticCustomError` (a ``ValueError``) for anything that is
    not a positive amount of at most :data:`MAX_MONEY` with at most two decimals.
    """
    if isinstance(value, str):
        if PLAIN_AMOUNT.fullmatch(value) is None:
            raise _refused(value)
        amount = Decimal(value)
    elif isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        try:
            # str() first: a float's shortest repr (2300.1), not its binary expansion.
            amount = value if isinstance(value, Decimal) else Decimal(str(value))
        except InvalidOperation:
            raise _refused(value) from None
    else:
        raise _refused(value)
    if not amount.is_finite() or not 0 < amount <= MAX_MONEY or amount != amount.quantize(CENT):
        raise _refused(value)
    return amount.quantize(CENT)


class MoneyInput:
    """Marks :data:`MoneyIn` so the OpenAPI document shows both accepted forms."""


#: Money in: see :func:`parse_money`. Serialized, like all money, as a JSON number.
MoneyIn = Annotated[
    Decimal,
    PlainValidator(parse_money),
    PlainSerializer(float, return_type=float, when_used="json"),
    MoneyInput(),
]
