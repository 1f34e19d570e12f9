"""Fixtures: every API test runs once on SQLite and once on PostgreSQL.

PostgreSQL tests need ``NEGOTIATION_TEST_POSTGRES_URL`` (a server URL whose user may create
databases, e.g. ``postgresql://postgres@127.0.0.1:5432/test``). Without it they skip with that
reason, except under CI (``CI`` set), where a missing URL is an error rather than a silent skip.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from negotiation import errors
from negotiation.app import create_app
from negotiation.settings import Settings
from tests import dbutil
from tests.leaks import internals_in, messages_of

API_KEY = "test-key"


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") and not dbutil.postgres_server_url():
        raise pytest.UsageError(
            f"CI is set but {dbutil.POSTGRES_URL_ENV} is not: the PostgreSQL tests must run in CI"
        )


@pytest.fixture(autouse=True)
def error_messages_are_plain(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every error body the app builds in a test: the test fails if a message shows internals.

    Yields the list of messages seen, for tests that check the check itself.
    """
    seen: list[str] = []
    build = errors.error_body

    def recording(*args: Any, **kwargs: Any) -> dict[str, Any]:
        body = build(*args, **kwargs)
        seen.extend(messages_of(body))
        return body

    monkeypatch.setattr(errors, "error_body", recording)
    yield seen
    leaks = {message: found for message in seen if (found := internals_in(message))}
    assert not leaks, f"error messages show Python or library internals: {leaks}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    dbutil.run_alembic(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A PostgreSQL database migrated to head once per run (per xdist worker)."""
    server = dbutil.postgres_server_url()
    if server is None:
        pytest.skip(
            f"PostgreSQL tests need {dbutil.POSTGRES_URL_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test)"
        )
    # One database per checkout and xdist worker, so parallel runs never share one.
    name = dbutil.database_name("negotiation_test")
    url = dbutil.create_postgres_database(server, name)
    dbutil.run_alembic(url)
    yield url
    dbutil.drop_postgres_database(server, name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, migrated, empty database of each kind."""
    if request.param == "sqlite":
        return dbutil.copy_sqlite(request.getfixturevalue("sqlite_template"), tmp_path / "loads.db")
    url: str = request.getfixturevalue("postgres_database")
    dbutil.truncate_postgres(url)
    return url


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """Only the PostgreSQL database, empty: for tests of what only PostgreSQL can show."""
    dbutil.truncate_postgres(postgres_database)
    return postgres_database


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Settings for the app under test; override fields with ``tests.helpers.with_settings``."""
    return Settings(database_url=database_url, api_keys=(API_KEY,), env="development")


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """An async client for the app, sending the test API key on every request."""
    async with AsyncTestClient(app) as c:
        c.headers["X-API-Key"] = API_KEY
        yield c


class Clock:
    """A clock the test moves by hand (pass it to ``create_app(settings, clock=...)``)."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


LOAD = {
    "origin": "Chicago, IL",
    "destination": "Dallas, TX",
    "pickup_datetime": "2026-12-01T08:00:00Z",
    "delivery_datetime": "2026-12-02T18:00:00Z",
    "equipment_type": "Dry Van",
    "loadboard_rate": 2000.00,
}


@pytest.fixture
def make_load(client: AsyncTestClient[Litestar]) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Create a load through the API: ``await make_load("LD001", loadboard_rate=1500)``."""

    async def _make(load_id: str = "LD001", **fields: Any) -> dict[str, Any]:
        response = await client.post("/api/loads", json={**LOAD, "load_id": load_id, **fields})
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    return _make


@pytest.fixture
def make_call(
    client: AsyncTestClient[Litestar], make_load: Callable[..., Awaitable[dict[str, Any]]]
) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Create a call (and its load, unless ``load_id`` names one) through the API."""

    async def _make(load_id: str | None = None, **fields: Any) -> dict[str, Any]:
        if load_id is None:
            load_id = f"LD{os.urandom(4).hex()}"
            await make_load(load_id)
        response = await client.post(
            "/api/calls", json={"load_id": load_id, "carrier_mc_number": "MC123456", **fields}
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    return _make
