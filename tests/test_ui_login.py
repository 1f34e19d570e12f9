"""The pages' login: a signed, encrypted, expiring cookie that never holds the API key, and
that ends when its key is removed from the configuration."""

from __future__ import annotations

import time

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from negotiation.app import create_app
from negotiation.settings import Settings
from tests.helpers import with_settings

KEEP, DROP = "key-that-stays", "key-that-goes"
SECRET = "ui-secret-for-tests-0123456789"


async def _login_cookie(app: Litestar, key: str) -> str:
    async with AsyncTestClient(app) as browser:
        r = await browser.post(
            "/ui/login", data={"api_key": key, "next": "/ui/sessions"}, follow_redirects=False
        )
        assert r.status_code == 303, r.text
        value = browser.cookies.get("negotiation_ui_login")
        assert value
        return value


async def _sessions_page(app: Litestar, cookie: str) -> int:
    async with AsyncTestClient(app) as browser:
        browser.cookies.set("negotiation_ui_login", cookie, path="/ui")
        return (await browser.get("/ui/sessions", follow_redirects=False)).status_code


@pytest.fixture
def two_keys(settings: Settings) -> Settings:
    return with_settings(settings, api_keys=f"{KEEP},{DROP}", ui_secret=SECRET)


async def test_the_cookie_holds_neither_the_key_nor_its_hash(two_keys: Settings) -> None:
    import base64
    import hashlib

    cookie = await _login_cookie(create_app(two_keys), DROP)
    raw = base64.b64decode(cookie.strip('"'))
    assert DROP.encode() not in raw and hashlib.sha256(DROP.encode()).hexdigest() not in cookie
    assert hashlib.sha256(DROP.encode()).digest() not in raw
    assert await _sessions_page(create_app(two_keys), cookie) == 200


async def test_removing_a_key_ends_the_logins_made_with_it(two_keys: Settings) -> None:
    dropped = await _login_cookie(create_app(two_keys), DROP)
    kept = await _login_cookie(create_app(two_keys), KEEP)
    after = create_app(with_settings(two_keys, api_keys=KEEP))
    assert await _sessions_page(after, dropped) == 303
    assert await _sessions_page(after, kept) == 200


async def test_another_secret_or_an_edited_cookie_is_no_login(two_keys: Settings) -> None:
    cookie = await _login_cookie(create_app(two_keys), KEEP)
    other_secret = create_app(with_settings(two_keys, ui_secret="another-secret-entirely"))
    assert await _sessions_page(other_secret, cookie) == 303
    body = cookie.strip('"')
    edited = body[:20] + ("A" if body[20] != "A" else "B") + body[21:]
    assert await _sessions_page(create_app(two_keys), edited) == 303


async def test_a_login_expires_after_a_working_day(
    two_keys: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(two_keys)
    cookie = await _login_cookie(app, KEEP)
    started = time.time()
    monkeypatch.setattr(time, "time", lambda: started + 11 * 3600)
    assert await _sessions_page(app, cookie) == 200
    monkeypatch.setattr(time, "time", lambda: started + 12 * 3600 + 5)
    assert await _sessions_page(app, cookie) == 303


async def test_without_a_secret_the_keys_make_one(two_keys: Settings) -> None:
    """Unset ``UI_SECRET``: every copy of the service with the same keys accepts the login."""
    derived = with_settings(two_keys, ui_secret=None)
    cookie = await _login_cookie(create_app(derived), KEEP)
    assert await _sessions_page(create_app(derived), cookie) == 200
    assert Settings(api_keys=KEEP).ui_cookie_secret != Settings(api_keys=DROP).ui_cookie_secret


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_the_cookie_is_secure_over_https(two_keys: Settings, scheme: str) -> None:
    async with AsyncTestClient(create_app(two_keys), base_url=f"{scheme}://testserver.local") as b:
        r = await b.post("/ui/login", data={"api_key": KEEP}, follow_redirects=False)
        assert r.status_code == 303
        cookie = r.headers["set-cookie"]
        assert ("; Secure" in cookie) == (scheme == "https"), cookie
