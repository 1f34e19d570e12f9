"""Security: every route needs a key (checked by walking the route table), key handling,
production refusing the development key, security headers and opt-in CORS.
"""

from __future__ import annotations

import hmac
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar, get
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from negotiation import auth
from negotiation.app import create_app
from negotiation.settings import ConfigurationError, Settings
from tests import dbutil
from tests.conftest import API_KEY
from tests.helpers import with_settings
from tests.server import CLI, running_server, server_env

#: The only routes anyone may call without a key: liveness, the API description, the UI's
#: login page and static files. Everything else, including routes added later, needs a key.
PUBLIC = re.compile(r"^/(health|schema(/.*)?|ui/login|(ui/)?static(/.*)?)$")
SAMPLES = {"int": "1", "str": "sample", "path": "sample/x", "uuid": "0" * 32}


def sample_path(template: str) -> str:
    """A concrete path for a route template: ``/api/calls/{call_id:int}`` -> ``/api/calls/1``."""
    return re.sub(r"\{[^}:]+:(\w+)\}", lambda m: SAMPLES.get(m.group(1), "sample"), template)


def protected_routes(app: Litestar) -> Iterator[tuple[str, str]]:
    """(method, route template) of every route of the app that is not public."""
    for route in app.routes:
        if isinstance(route, HTTPRoute) and not PUBLIC.match(route.path):
            for method in sorted(route.methods):
                yield method, route.path


def refuses(response: httpx.Response) -> bool:
    """A refusal for want of a key: 401, or for a page a redirect to the login page."""
    if response.status_code == 401:
        is_json = response.headers.get("content-type", "").startswith("application/json")
        return not is_json or bool(response.json()["error"]["code"] == "UNAUTHORIZED")
    return response.is_redirect and "/ui/login" in response.headers.get("location", "")


def unprotected(app: Litestar, key: str = API_KEY) -> list[str]:
    """Routes that answer without a valid key, or that refuse even a valid one."""
    problems = []
    with TestClient(app) as client:
        for method, template in protected_routes(app):
            path = sample_path(template)
            for headers in ({}, {"X-API-Key": "wrong-key"}, {"X-API-Key": key.upper()}):
                if not refuses(
                    client.request(method, path, headers=headers, follow_redirects=False)
                ):
                    problems.append(f"{method} {template} answers with {headers or 'no key'}")
            # The API takes the key as a header (pages may want their login cookie instead).
            valid = {"X-API-Key": key}
            response = client.request(method, path, headers=valid, follow_redirects=False)
            if template.startswith("/api") and refuses(response):
                problems.append(f"{method} {template} refuses a valid key")
    return problems


def test_every_route_needs_a_valid_key(app: Litestar) -> None:
    assert list(protected_routes(app)), "the walk found routes"
    assert unprotected(app) == []


def test_the_walk_catches_a_route_added_without_the_guard(settings: Settings) -> None:
    app = create_app(settings)

    @get("/leak", sync_to_thread=False)
    def leak() -> dict[str, str]:
        return {"secret": "no key needed"}

    @get("/ui/report-page", sync_to_thread=False)
    def page() -> str:
        return "<p>unprotected page</p>"

    @get("/api/added-later", sync_to_thread=False)
    def added() -> dict[str, str]:
        return {"secret": "the key is checked before routing"}

    app.register(leak)
    app.register(page)
    app.register(added)
    found = unprotected(app)
    assert {p.split(" ")[1] for p in found} == {"/leak", "/ui/report-page"}
    assert "GET /leak answers with no key" in found


def test_public_routes_need_no_key(app: Litestar) -> None:
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/schema/openapi.json").status_code == 200


def test_several_keys_work_at_once_for_rotation(settings: Settings) -> None:
    app = create_app(with_settings(settings, api_keys=("old-key-1", "new-key-2")))
    with TestClient(app) as client:
        for key in ("old-key-1", "new-key-2"):
            assert client.get("/api/sessions", headers={"X-API-Key": key}).status_code == 200
        for key in ("", "old-key-", "old-key-12", " old-key-1", "default-api-key"):
            r = client.get("/api/sessions", headers={"X-API-Key": key})
            assert r.status_code == 401, key
            assert r.json()["error"]["code"] == "UNAUTHORIZED"
        assert unprotected(app, key="new-key-2") == []


def test_keys_are_compared_in_constant_time_against_every_key(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = ("first-key", "second-key", "third-key")
    multi = with_settings(settings, api_keys=keys)
    compared: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    for presented in ("first-key", "third-key", "nope"):
        compared.clear()
        auth.matching_key(presented, multi)
        assert [b for _, b in compared] == [k.encode() for k in keys], "no early exit"


def test_default_key_only_without_configured_keys(settings: Settings) -> None:
    dev = Settings(database_url=settings.database_url, env="development")
    with TestClient(create_app(dev)) as client:
        assert client.get("/api/sessions", headers={"X-API-Key": "default-api-key"}).is_success
    with TestClient(create_app(settings)) as client:
        r = client.get("/api/sessions", headers={"X-API-Key": "default-api-key"})
        assert r.status_code == 401


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (None, "NEGOTIATION_ENV=production requires NEGOTIATION_API_KEYS"),
        ("default-api-key", "development key 'default-api-key'"),
        ("mine-1234567890,default-api-key", "development key 'default-api-key'"),
    ],
)
def test_production_refuses_the_development_key(
    tmp_path: Path, keys: str | None, message: str
) -> None:
    settings = {"env": "production", "database_url": f"sqlite:///{tmp_path}/x.db"}
    if keys is not None:
        settings["api_keys"] = keys
    done = subprocess.run(
        [CLI, "serve", "--port", "8399"],
        env=server_env(**settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "invalid configuration, the service will not start" in done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "mine-1234567890" not in done.stderr, "key values are never printed"


def test_create_app_from_the_environment_exits_with_the_same_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEGOTIATION_ENV", "production")
    monkeypatch.delenv("NEGOTIATION_API_KEYS", raising=False)
    with pytest.raises(ConfigurationError, match="requires NEGOTIATION_API_KEYS"):
        create_app()


@pytest.mark.slow
def test_production_starts_with_keys_of_its_own(tmp_path: Path, sqlite_template: Path) -> None:
    url = dbutil.copy_sqlite(sqlite_template, tmp_path / "loads.db")
    settings = {"env": "production", "database_url": url, "api_keys": "prod-key-0123456789"}
    with running_server(settings) as server:
        assert httpx.get(f"{server.base_url}/health").status_code == 200
        base = f"{server.base_url}/api/sessions"
        assert httpx.get(base, headers={"X-API-Key": "prod-key-0123456789"}).status_code == 200
        assert httpx.get(base, headers={"X-API-Key": "default-api-key"}).status_code == 401


def assert_security_headers(response: Any, path: str) -> None:
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff", path
    assert headers["X-Frame-Options"] == "DENY", path
    policy = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy, path
    if not path.startswith("/schema"):
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["script-src"] == "'self'", path  # no inline or foreign script
        assert directives["object-src"] == "'none'", path


def test_security_headers_on_every_response(app: Litestar) -> None:
    with TestClient(app) as client:
        client.headers["X-API-Key"] = API_KEY
        seen = [
            ("/health", client.get("/health")),
            ("/api/sessions", client.get("/api/sessions")),
            ("/api/loads/none", client.get("/api/loads/none")),
            ("/no-such-route", client.get("/no-such-route")),
            ("/api/sessions", client.get("/api/sessions", headers={"X-API-Key": "x"})),
            ("/schema", client.get("/schema")),
            ("/schema/openapi.json", client.get("/schema/openapi.json")),
        ]
        # Every page the app serves (e.g. the /ui pages): HTML gets the strict policy.
        for route in app.routes:
            if isinstance(route, HTTPRoute) and "GET" in route.methods:
                path = sample_path(route.path)
                seen.append((path, client.get(path)))
        for path, response in seen:
            assert_security_headers(response, path)
            if response.headers.get("content-type", "").startswith("text/html"):
                assert "X-Frame-Options" in response.headers
        assert client.get("/api/sessions").headers["Cache-Control"] == "no-store"


def test_cors_is_off_unless_configured(app: Litestar, settings: Settings) -> None:
    origin = {"Origin": "https://evil.example"}
    preflight = {**origin, "Access-Control-Request-Method": "POST"}
    with TestClient(app) as client:
        r = client.get("/api/sessions", headers={**origin, "X-API-Key": API_KEY})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        r = client.options("/api/sessions", headers=preflight)
        assert "access-control-allow-origin" not in r.headers

    allowed = "https://broker.example"
    configured = create_app(with_settings(settings, cors_origins=(allowed,)))
    with TestClient(configured) as client:
        r = client.options(
            "/api/calls/1/negotiate",
            headers={
                "Origin": allowed,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key, idempotency-key, content-type",
            },
        )
        assert r.status_code == 204 and r.headers["access-control-allow-origin"] == allowed
        assert "idempotency-key" in r.headers["access-control-allow-headers"].lower()
        r = client.get("/api/sessions", headers={"Origin": allowed, "X-API-Key": API_KEY})
        assert r.headers["access-control-allow-origin"] == allowed
        assert "Idempotent-Replayed" in r.headers["access-control-expose-headers"]
        r = client.get("/api/sessions", headers={**origin, "X-API-Key": API_KEY})
        assert "access-control-allow-origin" not in r.headers
        r = client.options("/api/sessions", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
