"""Reports and pages show which round booked the load; the summary counts bookings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from negotiation.reports.render import render_session, render_summary
from negotiation.reports.schemas import SessionReport, SummaryReport
from tests.conftest import API_KEY
from tests.helpers import Client, offer_ok

Make = Callable[..., Awaitable[dict[str, Any]]]


async def test_reports_and_page_show_the_booking_round(client: Client, make_call: Make) -> None:
    call = await make_call(carrier_mc_number="MC777")
    load_id = call["load_id"]
    await offer_ok(client, call["id"], 2500, "booking-s")
    booked = await offer_ok(client, call["id"], 2100, "booking-s")
    released = await client.post(f"/api/loads/{load_id}/release", json={"reason": "no show"})
    assert released.status_code == 200
    other = (await client.post("/api/calls", json={"load_id": load_id})).json()
    await offer_ok(client, other["id"], 1900, "other-s")

    report = (await client.get("/api/reports/sessions/booking-s")).json()
    assert [(r["id"], r["booked_load"]) for r in report["rounds"]] == [
        (booked["id"] - 1, False),
        (booked["id"], True),
    ]
    parsed = SessionReport.model_validate(report)
    markdown = render_session(parsed, "md")
    assert markdown.count("(booked the load)") == 1
    assert render_session(parsed, "csv").splitlines()[0].endswith(",booked_load")
    assert "booked the load" in render_session(parsed, "html")

    summary = (await client.get("/api/reports/summary")).json()
    assert (summary["bookings"], summary["releases"]) == (2, 1)
    by_carrier = await client.get("/api/reports/summary", params={"carrier_mc_number": "MC777"})
    assert (by_carrier.json()["bookings"], by_carrier.json()["releases"]) == (1, 1)
    summary_md = render_summary(SummaryReport.model_validate(summary), "md")
    assert "2 booked, 1 released" in summary_md

    login = await client.post("/ui/login", data={"api_key": API_KEY, "next": "/ui/sessions"})
    assert login.status_code in (200, 303), login.text
    page = await client.get("/ui/sessions/booking-s")
    assert page.status_code == 200
    assert page.text.count('<strong class="booked">booked the load</strong>') == 1
