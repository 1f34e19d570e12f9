"""Shaping lists of rounds into responses (shared by the call and session round listings)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from litestar import Request, Response

from negotiation.pagination import next_link
from negotiation.responses import JsonResponse
from negotiation.schemas import RoundRead, round_json


def rounds_response(
    request: Request[Any, Any, Any], rows: Sequence[Any], limit: int, max_rounds: int
) -> Response[list[RoundRead]]:
    """The first ``limit`` rows as a JSON array, with ``Link: rel="next"`` when more remain."""
    items = [round_json(r, max_rounds) for r in rows[:limit]]
    headers = {"Link": next_link(request.url, items[-1]["id"])} if len(rows) > limit else {}
    # The dicts encode exactly as list[RoundRead] would (tests/test_round_views.py).
    return JsonResponse(cast("list[RoundRead]", items), headers=headers)
