"""The five tools: each validates its arguments with the HTTP API's models and runs the same
unit of work as the matching HTTP handler, answering the HTTP body plus a one-line summary."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from negotiation import recording
from negotiation.agents.schemas import (
    CallResult,
    EndCallArgs,
    LoadsFound,
    RecordOfferArgs,
    SearchLoadsArgs,
    SessionHistory,
    SessionHistoryArgs,
    StartCallArgs,
)
from negotiation.controllers.params import RequestContext
from negotiation.errors import not_found
from negotiation.pagination import MAX_LIMIT
from negotiation.queries import loads_page, session_pages
from negotiation.schemas import CallRead, CallUpdate, LoadRead, RoundRead, round_json
from negotiation.service import check_session_id, create_call, update_call, utcnow

#: The most loads one search answers.
SEARCH_LIMIT = 10

#: What a tool answers: the structured result (the HTTP body) and a one-line summary.
Answer = tuple[dict[str, Any], str]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool: its name, what an LLM reads about it, its argument and result models, its work."""

    name: str
    description: str
    args: type[BaseModel]
    result: type[BaseModel]
    run: Callable[[RequestContext, Any, str | None], Awaitable[Answer]]
    read_only: bool = False


def _money(value: Any) -> str:
    return f"${value:,.2f}"


async def search_loads(ctx: RequestContext, args: SearchLoadsArgs, _: str | None) -> Answer:
    rows = await ctx.db.read(
        loads_page,
        origin=args.origin,
        destination=args.destination,
        equipment_type=args.equipment_type,
        status="available",
        after_load_id=None,
        limit=SEARCH_LIMIT,
        pickup_on=args.pickup_date,
    )
    items = [LoadRead.model_validate(r).model_dump(mode="json") for r in rows[:SEARCH_LIMIT]]
    listed = "; ".join(
        f"{i['load_id']} {i['origin']} -> {i['destination']} {_money(i['loadboard_rate'])}"
        for i in items
    )
    summary = f"{len(items)} available load(s)" + (f": {listed}" if items else ".")
    return {"session_id": args.session_id, "items": items}, summary


async def start_call(ctx: RequestContext, args: StartCallArgs, _: str | None) -> Answer:
    row = await ctx.db.write(create_call, args, utcnow())
    body = CallRead.model_validate(row).model_dump(mode="json")
    summary = f"Call {body['id']} started on load {body['load_id']}."
    return {**body, "session_id": args.session_id}, summary


async def record_offer(ctx: RequestContext, args: RecordOfferArgs, header: str | None) -> Answer:
    # As over HTTP: without a session_id argument, the X-Session-ID header names the session.
    session_id = args.session_id if args.session_id is not None else header
    check_session_id(session_id)
    offer = recording.Offer(
        args.call_id, args.carrier_offer, session_id, args.notes, ctx.policy, ctx.now
    )
    row = await recording.record_offer(ctx.db, offer)
    body = round_json(row, ctx.policy.max_rounds)
    counter = body["counter_offer"]
    summary = f"Round {body['round_number']}: {body['decision']}" + (
        f" at {_money(counter)}. " if counter is not None else ". "
    )
    summary += str(body["system_response"])
    if body.get("next_action"):
        summary += f" Next: {body['next_action']}."
    return body, summary


async def session_history(ctx: RequestContext, args: SessionHistoryArgs, _: str | None) -> Answer:
    rows = await ctx.db.read_shared(session_pages, (args.session_id, None, MAX_LIMIT))
    if rows is None:
        raise not_found("SESSION_NOT_FOUND", "Session", args.session_id)
    rounds = [round_json(r, ctx.policy.max_rounds) for r in rows[:MAX_LIMIT]]
    last = rounds[-1] if rounds else None
    summary = f"Session {args.session_id}: {len(rounds)} round(s)" + (
        f", last {last['decision']} on call {last['call_id']}." if last else "."
    )
    return {"session_id": args.session_id, "rounds": rounds}, summary


async def end_call(ctx: RequestContext, args: EndCallArgs, _: str | None) -> Answer:
    fields = args.model_dump(exclude_unset=True, include={"outcome", "sentiment", "notes"})
    update = CallUpdate.model_validate({**fields, "call_end_time": ctx.now})
    row = await ctx.db.write(update_call, args.call_id, update, ctx.now)
    body = CallRead.model_validate(row).model_dump(mode="json")
    summary = f"Call {body['id']} ended: {body['outcome']}."
    return {**body, "session_id": args.session_id}, summary


_SESSION = (
    " Pass your conversation's session_id on every call; every result echoes it."
    " A refusal comes back as a tool error whose text starts with the API's error code."
)

TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            "search_loads",
            "Find loads a carrier can haul, before starting a call about one: up to "
            f"{SEARCH_LIMIT} available loads matching the exact origin, destination, equipment "
            "type and pickup date you give (all optional), with their loadboard_rate (the "
            "starting rate the broker posts)." + _SESSION,
            SearchLoadsArgs,
            LoadsFound,
            search_loads,
            read_only=True,
        ),
        ToolSpec(
            "start_call",
            "Start a call once the carrier has picked a load (load_id from search_loads) and "
            "given their MC number; external_id is your platform's own call id. Returns the "
            "call; keep its id for record_offer and end_call." + _SESSION,
            StartCallArgs,
            CallResult,
            start_call,
        ),
        ToolSpec(
            "record_offer",
            "Record the carrier's asking rate (carrier_offer, a number or a decimal string such "
            'as "2300" or "2300.50"; above 0, at most 10,000,000, at most two decimals) as the '
            "next round of the call and get the broker's decision: accept, counter "
            "(counter_offer) or reject. Say system_response to the carrier. next_action says "
            "what to do now: await_offer (a counter was given: wait for the carrier's answer "
            "and record it), transfer_to_rep (accepted: hand the carrier to a person to book), "
            "end_call (final reject: close politely, then call end_call). rounds_remaining "
            "says how many offers are left." + _SESSION,
            RecordOfferArgs,
            RoundRead,
            record_offer,
        ),
        ToolSpec(
            "get_session_history",
            "Every round recorded in a session, across its calls, oldest first (at most "
            f"{MAX_LIMIT}): use it to resume a conversation or recall the last counter offer."
            + _SESSION,
            SessionHistoryArgs,
            SessionHistory,
            session_history,
            read_only=True,
        ),
        ToolSpec(
            "end_call",
            "End the call when the conversation is over, with its outcome: accepted, rejected, "
            "transferred or abandoned, the carrier's sentiment and notes. Returns the call."
            + _SESSION,
            EndCallArgs,
            CallResult,
            end_call,
        ),
    )
}
