"""The pages a broker works in: errors at the top linked to their field, close and purge from
the session page, metadata and profile shown."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.test_ui_pages import _create, _login, browser

__all__ = ["browser"]  # the fixture, shared with the other page tests


def _before(page: str, first: str, second: str) -> bool:
    return first in page and second in page and page.index(first) < page.index(second)


async def _session_with_rounds(client: AsyncTestClient[Litestar], make_call: Any, sid: str) -> int:
    created = await client.post(
        "/api/sessions",
        json={"session_id": sid, "metadata": {"lane": "CHI-DAL", "priority": 2}},
    )
    assert created.status_code == 201, created.text
    call = await make_call()
    for offer in (2500, 2150):
        r = await client.post(
            f"/api/calls/{call['id']}/negotiate", json={"carrier_offer": offer, "session_id": sid}
        )
        assert r.status_code == 201, r.text
    call_id: int = call["id"]
    return call_id


async def test_a_failed_create_shows_its_error_first_linked_to_the_field(
    browser: AsyncTestClient[Litestar],
) -> None:
    await _login(browser)
    r = await _create(browser, session_id="sess_ttl", ttl_seconds="soon")
    assert r.status_code == 422
    page = r.text
    assert _before(page, 'class="error-summary"', "<h1>Sessions</h1>")
    assert 'role="alert" tabindex="-1" autofocus' in page
    assert '<a href="#ttl_seconds">Time to live must be' in page
    assert 'id="ttl_seconds" name="ttl_seconds" value="soon"' in page
    assert 'pattern="[0-9]*" aria-invalid="true"' in page

    r = await _create(browser, session_id="has spaces!")
    assert r.status_code == 422
    assert '<a href="#session_id">The session id &#39;has spaces!&#39;' in r.text
    assert "1-128 characters" in r.text
    r = await _create(browser, session_id="sess_ok", client_id="c" * 256)
    assert '<a href="#client_id">Client id must be at most 255 characters.' in r.text


async def test_close_from_the_session_page(
    browser: AsyncTestClient[Litestar], client: AsyncTestClient[Litestar], make_call: Any
) -> None:
    call_id = await _session_with_rounds(client, make_call, "sess_close_me")
    await _login(browser)
    page = (await browser.get("/ui/sessions/sess_close_me")).text
    assert 'action="/ui/sessions/sess_close_me/close"' in page

    r = await browser.post("/ui/sessions/sess_close_me/close")
    assert (r.status_code, r.headers["location"]) == (303, "/ui/sessions/sess_close_me?closed=1")
    page = (await browser.get(r.headers["location"])).text
    assert "Session closed." in page and 'class="badge s-closed"' in page
    assert "/close" not in page  # nothing left to close
    assert (await client.get("/api/sessions/sess_close_me")).json()["status"] == "closed"
    refused = await client.post(
        f"/api/calls/{call_id}/negotiate",
        json={"carrier_offer": 2100, "session_id": "sess_close_me"},
    )
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "SESSION_CLOSED"

    r = await browser.post("/ui/sessions/sess_never_was/close")
    assert r.status_code == 404 and "Session sess_never_was not found" in r.text


async def test_purge_asks_for_the_id_typed(
    browser: AsyncTestClient[Litestar], client: AsyncTestClient[Litestar], make_call: Any
) -> None:
    await _session_with_rounds(client, make_call, "sess_purge_me")
    await _login(browser)

    for typed in ("", "sess_purge", "SESS_PURGE_ME"):
        r = await browser.post("/ui/sessions/sess_purge_me/purge", data={"confirm_id": typed})
        assert r.status_code == 422
        assert _before(r.text, 'class="error-summary"', "<h1>Session sess_purge_me</h1>")
        assert '<a href="#confirm_id">Type the session id sess_purge_me exactly' in r.text
        assert (
            'id="confirm_id" name="confirm_id" autocomplete="off" required aria-invalid' in r.text
        )
    assert (await client.get("/api/sessions/sess_purge_me")).status_code == 200

    r = await browser.post(
        "/ui/sessions/sess_purge_me/purge", data={"confirm_id": " sess_purge_me "}
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/sessions?purged=sess_purge_me&rounds=2"
    listing = (await browser.get(r.headers["location"])).text
    assert "Session sess_purge_me was purged with its 2 rounds." in listing
    assert (await client.get("/api/sessions/sess_purge_me")).status_code == 404
    assert (await client.get("/api/negotiations/session/sess_purge_me")).status_code == 404


async def test_close_and_purge_refuse_cross_site_posts(
    browser: AsyncTestClient[Litestar], client: AsyncTestClient[Litestar], make_call: Any
) -> None:
    await _session_with_rounds(client, make_call, "sess_forged")
    await _login(browser)
    evil = {"Origin": "https://evil.example"}
    r = await browser.post("/ui/sessions/sess_forged/close", headers=evil)
    assert r.status_code == 403
    r = await browser.post(
        "/ui/sessions/sess_forged/purge", data={"confirm_id": "sess_forged"}, headers=evil
    )
    assert r.status_code == 403
    assert (await client.get("/api/sessions/sess_forged")).json()["status"] == "active"


async def test_metadata_and_profile_are_shown(
    browser: AsyncTestClient[Litestar], client: AsyncTestClient[Litestar], make_call: Any
) -> None:
    await _session_with_rounds(client, make_call, "sess_meta")
    await _login(browser)
    page = (await browser.get("/ui/sessions/sess_meta")).text
    assert '<span class="key">lane</span>: CHI-DAL' in page
    assert '<span class="key">priority</span>: 2' in page
    assert "<dt>Pricing profile</dt><dd>standard</dd>" in page
