"""The pages through the HTTP client: login and redirects, escaping, the create form, filters."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import Connection, update

from negotiation.db import Database
from negotiation.queries import sessions
from negotiation.schemas import SessionCreate
from negotiation.service import utcnow
from negotiation.sessions import create_session
from negotiation.settings import Settings
from tests.conftest import API_KEY

SCRIPT = "<script>alert('owned')</script>"


@pytest.fixture
def browser(client: AsyncTestClient[Litestar]) -> AsyncTestClient[Litestar]:
    """The test client as a person's browser: redirects are not followed, and its API-key
    header does not count for the pages (one client: a second one would start the app twice).
    """
    client.follow_redirects = False
    return client


async def _login(client: AsyncTestClient[Litestar]) -> None:
    r = await client.post("/ui/login", data={"api_key": API_KEY, "next": "/ui/sessions"})
    assert r.status_code == 303, r.text


async def _create(client: AsyncTestClient[Litestar], **form: str) -> Any:
    return await client.post("/ui/sessions", data=form)


def _row_ids(page: str) -> list[str]:
    return re.findall(r'<th scope="row" class="id"><a href="[^"]+">([^<]+)</a>', page)


@pytest.mark.parametrize(
    "path",
    ["/ui/sessions", "/ui/sessions/sess_x", "/ui/", "/ui/sessions?status=closed&q=a"],
)
async def test_pages_redirect_to_login_without_a_valid_key(
    browser: AsyncTestClient[Litestar], path: str
) -> None:
    r = await browser.get(path, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/ui/login?next=%2Fui")
    browser.cookies.set("negotiation_ui_login", "not-a-login", path="/ui")
    r = await browser.get(path, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
    # The API key header is for the API; the pages want the login cookie.
    r = await browser.get(path, headers={"X-API-Key": API_KEY}, follow_redirects=False)
    assert r.status_code == 303


async def test_post_without_login_changes_nothing(
    browser: AsyncTestClient[Litestar], client: AsyncTestClient[Litestar]
) -> None:
    r = await _create(browser, session_id="sess_sneaky")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
    assert (await client.get("/api/reports/sessions/sess_sneaky")).status_code == 404


async def test_login_sets_a_strict_httponly_cookie(browser: AsyncTestClient[Litestar]) -> None:
    r = await browser.get("/ui/login?next=%2Fui%2Fsessions%3Fstatus%3Dactive")
    assert r.status_code == 200
    assert '<label for="api_key">API key</label>' in r.text
    assert 'name="next" value="/ui/sessions?status=active"' in r.text

    r = await browser.post("/ui/login", data={"api_key": "wrong", "next": "/ui/sessions"})
    assert r.status_code == 401
    assert "That API key is not valid." in r.text
    assert "set-cookie" not in r.headers

    r = await browser.post(
        "/ui/login", data={"api_key": API_KEY, "next": "/ui/sessions?status=active"}
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/sessions?status=active"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("negotiation_ui_login=") and API_KEY not in cookie
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/ui", "Max-Age=43200"):
        assert attribute in cookie
    assert (await browser.get("/ui/sessions")).status_code == 200
    # Logged in, the login page sends people on.
    r = await browser.get("/ui/login", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/ui/sessions")

    r = await browser.post("/ui/logout")
    assert (r.status_code, r.headers["location"]) == (303, "/ui/login")
    assert "negotiation_ui_login=null" in r.headers["set-cookie"]
    assert (await browser.get("/ui/sessions", follow_redirects=False)).status_code == 303
    browser.cookies.clear()
    assert (await browser.get("/ui/sessions", follow_redirects=False)).status_code == 303


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example", "/api/loads"])
async def test_login_never_redirects_off_the_pages(
    browser: AsyncTestClient[Litestar], target: str
) -> None:
    r = await browser.post("/ui/login", data={"api_key": API_KEY, "next": target})
    assert (r.status_code, r.headers["location"]) == (303, "/ui/sessions")


async def test_user_supplied_text_is_escaped(
    browser: AsyncTestClient[Litestar], client: AsyncTestClient[Litestar], make_call: Any
) -> None:
    await _login(browser)
    r = await _create(browser, session_id="sess_esc", client_id=SCRIPT)
    assert r.status_code == 303
    call = await make_call()
    r = await client.post(
        f"/api/calls/{call['id']}/negotiate",
        json={"carrier_offer": 2500, "session_id": "sess_esc", "notes": SCRIPT},
    )
    assert r.status_code == 201
    escaped = "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;"
    for path in ("/ui/sessions", "/ui/sessions/sess_esc", f"/ui/sessions?q={SCRIPT}"):
        page = (await browser.get(path)).text
        assert "<script" not in page, path
        assert escaped in page, path
    # An id that is not a valid session id (it can only come from a URL) shows as text too.
    missing = await browser.get("/ui/sessions/%3Cscript%3Ex")
    assert missing.status_code == 404
    assert "<script" not in missing.text and "&lt;script&gt;x" in missing.text


async def test_create_form(
    browser: AsyncTestClient[Litestar], client: AsyncTestClient[Litestar]
) -> None:
    await _login(browser)
    page = (await browser.get("/ui/sessions")).text
    for field in ("session_id", "client_id", "ttl_seconds"):
        assert f'<label for="{field}">' in page and f'id="{field}"' in page

    r = await _create(browser, session_id="crm_user_12345", client_id="crm", ttl_seconds="120")
    assert (r.status_code, r.headers["location"]) == (303, "/ui/sessions/crm_user_12345?created=1")
    shown = await browser.get(r.headers["location"])
    assert shown.status_code == 200 and "Session created." in shown.text
    report = (await client.get("/api/reports/sessions/crm_user_12345")).json()["session"]
    assert report["client_id"] == "crm" and report["status"] == "active"
    created = dt.datetime.fromisoformat(report["created_at"])
    assert dt.datetime.fromisoformat(report["expires_at"]) - created == dt.timedelta(seconds=120)

    r = await _create(browser, session_id="crm_user_12345")
    assert r.status_code == 409
    assert (
        "Session ID &#39;crm_user_12345&#39; already exists. Please use a different ID or omit "
        "it for auto-generation." in r.text
    )
    assert 'value="crm_user_12345"' in r.text  # the form keeps what was typed

    r = await _create(browser, session_id="has spaces!")
    assert r.status_code == 422
    assert "&#39;has spaces!&#39;" in r.text and "1-128 characters" in r.text

    for ttl in ("0", "-5", "soon", "999999999"):
        r = await _create(browser, session_id="sess_ttl", ttl_seconds=ttl)
        assert r.status_code == 422 and "Time to live must be" in r.text
    assert (await client.get("/api/reports/sessions/sess_ttl")).status_code == 404

    r = await _create(browser, session_id="  ", client_id="")
    assert r.status_code == 303
    generated = re.fullmatch(
        r"/ui/sessions/(sess_\d{14}_[0-9a-f]{20})\?created=1", r.headers["location"]
    )
    assert generated is not None
    assert (await client.get(f"/api/reports/sessions/{generated.group(1)}")).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://testserver.local"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
async def test_cross_site_form_posts_are_refused(
    browser: AsyncTestClient[Litestar], client: AsyncTestClient[Litestar], headers: dict[str, str]
) -> None:
    await _login(browser)
    r = await browser.post("/ui/sessions", data={"session_id": "sess_csrf"}, headers=headers)
    assert r.status_code == 403
    assert "submitted from another site" in r.text
    assert (await client.get("/api/reports/sessions/sess_csrf")).status_code == 404
    r = await browser.post("/ui/logout", headers=headers)
    assert r.status_code == 403
    # The same form from this site's own page goes through.
    same = {"Origin": "http://testserver.local", "Sec-Fetch-Site": "same-origin"}
    r = await browser.post("/ui/sessions", data={"session_id": "sess_csrf"}, headers=same)
    assert r.status_code == 303


def _set_state(conn: Connection, session_id: str, **values: Any) -> None:
    conn.execute(update(sessions).where(sessions.c.session_id == session_id).values(**values))


async def test_filter_search_and_pages(
    browser: AsyncTestClient[Litestar], settings: Settings
) -> None:
    db = Database(settings)
    now = utcnow()
    try:
        for i in range(53):
            await db.write(
                create_session,
                SessionCreate(session_id=f"sess_list_{i:02d}", ttl_seconds=3600),
                default_ttl=3600,
                now=now - dt.timedelta(minutes=i),
            )
        await db.write(_set_state, "sess_list_01", status="closed")
        await db.write(_set_state, "sess_list_02", expires_at=now - dt.timedelta(seconds=1))
    finally:
        await db.dispose()
    await _login(browser)

    page = (await browser.get("/ui/sessions")).text
    first = _row_ids(page)
    assert first == [f"sess_list_{i:02d}" for i in range(50)]  # newest activity first
    older = re.search(r'<a href="([^"]+)" rel="next">Older sessions</a>', page)
    assert older is not None
    rest = _row_ids((await browser.get(older.group(1).replace("&amp;", "&"))).text)
    assert rest == ["sess_list_50", "sess_list_51", "sess_list_52"]

    closed = (await browser.get("/ui/sessions", params={"status": "closed"})).text
    assert _row_ids(closed) == ["sess_list_01"]
    assert '<option value="closed" selected>' in closed
    assert _row_ids((await browser.get("/ui/sessions?status=expired")).text) == ["sess_list_02"]
    active = _row_ids((await browser.get("/ui/sessions?status=active")).text)
    assert "sess_list_01" not in active and "sess_list_02" not in active and len(active) == 50

    found = _row_ids((await browser.get("/ui/sessions", params={"q": "LIST_1"})).text)
    assert found == [f"sess_list_{i}" for i in range(10, 20)]
    assert _row_ids((await browser.get("/ui/sessions", params={"q": "%"})).text) == []
    none = (await browser.get("/ui/sessions", params={"q": "zzz"})).text
    assert "No sessions match" in none


async def test_session_page_shows_rounds_and_chart(
    browser: AsyncTestClient[Litestar], client: AsyncTestClient[Litestar], make_call: Any
) -> None:
    call = await make_call()
    for offer in (2500, 2150, 2190):
        r = await client.post(
            f"/api/calls/{call['id']}/negotiate",
            json={"carrier_offer": offer, "session_id": "sess_page"},
        )
        assert r.status_code == 201
    await _login(browser)
    r = await browser.get("/ui/sessions/sess_page")
    assert r.status_code == 200
    assert r.headers["X-Session-ID"] == "sess_page"
    page = r.text
    assert page.count('<tr class="round"') == 3
    assert page.count('class="point offer"') == 2 and page.count('class="point agreed"') == 1
    assert page.count('class="point counter"') == 2
    assert '<svg class="plot" xmlns="http://www.w3.org/2000/svg"' in page and 'role="img"' in page
    assert '<html lang="en">' in page and 'name="viewport"' in page
    row = _row_ids((await browser.get("/ui/sessions")).text)
    assert row == ["sess_page"]
    listing = (await browser.get("/ui/sessions")).text
    assert '<td class="num">3</td>' in listing and "o-accepted" in listing

    missing = await browser.get("/ui/sessions/sess_nobody")
    assert missing.status_code == 404 and "There is no session sess_nobody." in missing.text


async def test_create_form_offers_the_profiles(
    browser: AsyncTestClient[Litestar], client: AsyncTestClient[Litestar]
) -> None:
    body = {"name": "tight", "max_rounds": 2, "max_markup": 0.05, "concession": "early"}
    assert (await client.post("/api/profiles", json=body)).status_code == 201
    await _login(browser)
    page = (await browser.get("/ui/sessions")).text
    assert '<label for="profile">' in page
    options = re.findall(
        r'<option value="([^"]*)"[^>]*>([^<]*)</option>', page.split('id="profile"')[1]
    )
    assert options == [
        ("", "None (the load's, else standard)"),
        ("standard", "standard (v1: 3 rounds, 10% markup, linear)"),
        ("tight", "tight (v1: 2 rounds, 5% markup, early)"),
    ]

    r = await _create(browser, session_id="sess_tight", profile="tight")
    assert r.status_code == 303, r.text
    shown = (await browser.get(r.headers["location"])).text
    assert "<dt>Pricing profile</dt><dd>tight</dd>" in shown
    assert (await client.get("/api/sessions/sess_tight")).json()["profile"] == "tight"

    for name, code in (("nope", 422), ("legacy", 422)):
        r = await _create(browser, session_id="sess_nope", profile=name)
        assert r.status_code == code and "pricing profile" in r.text.lower(), r.text
    assert (await client.get("/api/sessions/sess_nope")).status_code == 404
