"""Faults: the database goes away and comes back under the running app; clients disconnect.

PostgreSQL is a throwaway cluster of the test's own (stopped and started; never the shared
one). SQLite has no server to stop: its faults are a file that cannot be opened and storage
that refuses writes (the running server's file-size limit set to 0: the test runs as root, for
whom file permissions change nothing).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import resource
import shutil
import threading
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient
from sqlalchemy.engine import make_url

from negotiation.app import create_app
from negotiation.settings import Settings
from tests import dbutil, pgcluster
from tests.conftest import API_KEY, LOAD
from tests.helpers import concurrent_client, hold_until_unlocked, with_settings
from tests.server import running_server
from tests.test_races import held_lock, setup_calls
from tests.waiting import DEADLINE, wait_until

Client = AsyncTestClient[Litestar]
#: The advisory lock a unit of work waits for to keep its connection busy.
HOLD = 4_201


def outage_requests(call_id: int) -> list[tuple[str, str, str, Any]]:
    """(method, route template, path, body) for every core route, on data made before."""
    c = f"/api/calls/{call_id}"
    by_session = "/api/negotiations/session"
    return [
        ("GET", "/api/loads", "/api/loads", None),
        ("POST", "/api/loads", "/api/loads", {**LOAD, "load_id": "LD-NEW"}),
        ("GET", "/api/loads/{load_id:str}", "/api/loads/LD-F", None),
        ("POST", "/api/calls", "/api/calls", {"load_id": "LD-F"}),
        ("GET", "/api/calls/{call_id:int}", c, None),
        ("PATCH", "/api/calls/{call_id:int}", c, {"notes": "down"}),
        ("POST", "/api/calls/{call_id:int}/negotiate", f"{c}/negotiate", {"carrier_offer": 2100}),
        ("GET", "/api/calls/{call_id:int}/negotiations", f"{c}/negotiations", None),
        ("GET", "/api/negotiations", "/api/negotiations", None),
        ("GET", f"{by_session}/{{session_id:str}}", f"{by_session}/s-f", None),
        ("POST", "/api/sessions", "/api/sessions", {"session_id": "s-new"}),
        ("GET", "/api/sessions", "/api/sessions", None),
        ("GET", "/api/sessions/{session_id:str}", "/api/sessions/s-f", None),
        ("DELETE", "/api/sessions/{session_id:str}", "/api/sessions/s-f", None),
    ]


def other_api_gets(app: Litestar, covered: set[tuple[str, str]]) -> list[str]:
    """GET routes under /api that the list above does not name (added later), as sample paths."""
    samples = {"{call_id:int}": "1", "{load_id:str}": "LD-F", "{session_id:str}": "s-f"}
    paths = []
    for route in app.routes:
        if (
            isinstance(route, HTTPRoute)
            and route.path.startswith("/api")
            and "GET" in route.methods
            and ("GET", route.path) not in covered
        ):
            path = route.path
            for template, value in samples.items():
                path = path.replace(template, value)
            paths.append(path)
    return paths


async def assert_outage(c: Client, app: Litestar, call_id: int, idempotency: bool = True) -> None:
    requests = outage_requests(call_id)
    for method, _, path, body in requests:
        headers = {"Idempotency-Key": f"outage-{method}-{path}"} if idempotency else {}
        r = await c.request(method, path, json=body, headers=headers)
        assert r.status_code == 503, (method, path, r.text)
        assert r.json()["error"]["code"] == "DATABASE_UNAVAILABLE", r.text
        assert r.headers["Retry-After"] == "2"
    for path in other_api_gets(app, {(m, t) for m, t, _, _ in requests}):
        r = await c.get(path)
        assert r.status_code in (503, 422), (path, r.text)
    health = await c.get("/health")
    assert health.status_code == 503 and health.headers["Retry-After"]
    assert health.json()["status"] == "unavailable"


async def seed(c: Client) -> int:
    assert (await c.post("/api/sessions", json={"session_id": "s-f"})).status_code == 201
    assert (await c.post("/api/loads", json={**LOAD, "load_id": "LD-F"})).status_code == 201
    call_id: int = (await c.post("/api/calls", json={"load_id": "LD-F"})).json()["id"]
    r = await c.post(f"/api/calls/{call_id}/negotiate", json={"carrier_offer": 2500})
    assert r.status_code == 201 and r.json()["round_number"] == 1
    return call_id


async def assert_recovered(c: Client, call_id: int, round_number: int) -> None:
    health = await c.get("/health")
    assert health.status_code == 200, health.text
    r = await c.post(f"/api/calls/{call_id}/negotiate", json={"carrier_offer": 2450})
    assert r.status_code == 201, r.text
    assert r.json()["round_number"] == round_number, "nothing was recorded during the outage"
    assert len((await c.get(f"/api/calls/{call_id}/negotiations")).json()) == round_number


@pytest.mark.slow
@pytest.mark.postgres
async def test_postgres_stopped_and_restarted_under_the_running_app() -> None:
    if reason := pgcluster.unavailable_reason():
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL outage test: {reason}")
        pytest.skip(reason)
    with pgcluster.ThrowawayCluster() as pg:
        await asyncio.to_thread(dbutil.run_alembic, pg.url)
        await asyncio.to_thread(pg.stop)
        app = create_app(Settings(database_url=pg.url, api_keys=(API_KEY,), db_pool_size=2))
        async with AsyncTestClient(app) as c:
            c.headers["X-API-Key"] = API_KEY
            # Down when the app starts: it starts anyway, and says so on every route.
            await assert_outage(c, app, call_id=1)
            await asyncio.to_thread(pg.start)
            call_id = await seed(c)

            await asyncio.to_thread(pg.stop)  # its pooled connections die with it
            await assert_outage(c, app, call_id)
            await asyncio.to_thread(pg.start)
            await assert_recovered(c, call_id, round_number=2)


@pytest.mark.postgres
async def test_requests_finding_every_connection_busy_are_503_then_served(
    postgres_url: str,
) -> None:
    """The worker's only connection held past DB_POOL_TIMEOUT_MS: a round and a listing answer
    503 DATABASE_BUSY and nothing is written; once it is free both are served."""
    settings = Settings(
        database_url=postgres_url,
        api_keys=(API_KEY,),
        db_pool_size=1,
        db_pool_timeout_ms=100,
        lock_timeout_ms=0,  # the holder waits for the test's lock as long as the test holds it
    )
    app = create_app(settings)
    async with AsyncTestClient(app) as c:
        c.headers["X-API-Key"] = API_KEY
        call_id = await seed(c)
        held = threading.Event()
        # The connection is held until the test releases the advisory lock its holder waits
        # for, not for a fixed time the three requests had to fit in.
        async with dbutil.advisory_lock(postgres_url, HOLD):
            # On the app's own loop (the client's portal thread), as its requests run.
            holder = c.blocking_portal.start_task_soon(
                app.state.db.read, hold_until_unlocked, held, HOLD
            )
            assert await asyncio.to_thread(held.wait, DEADLINE), "the holder never got a connection"
            for method, path, body in [
                ("POST", f"/api/calls/{call_id}/negotiate", {"carrier_offer": 2450}),
                ("GET", f"/api/calls/{call_id}/negotiations", None),
                ("GET", "/api/negotiations/session/s-f", None),
            ]:
                r = await c.request(method, path, json=body)
                assert r.status_code == 503, (method, path, r.text)
                assert r.json()["error"]["code"] == "DATABASE_BUSY", r.text
                assert r.headers["Retry-After"] == "1"
            assert not holder.done()
        await asyncio.wrap_future(holder)
        await assert_recovered(c, call_id, round_number=2)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database that exists but was never migrated."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/empty.db"
        return
    server = dbutil.postgres_server_url()
    if server is None:
        pytest.skip(f"PostgreSQL tests need {dbutil.POSTGRES_URL_ENV}")
    name = f"negotiation_test_{hashlib.sha1(str(dbutil.ROOT).encode()).hexdigest()[:8]}_empty"
    yield dbutil.create_postgres_database(server, name)
    dbutil.drop_postgres_database(server, name)


async def test_a_database_not_migrated_yet_is_503_with_the_reason(unmigrated_url: str) -> None:
    app = create_app(Settings(database_url=unmigrated_url, api_keys=(API_KEY,)))
    async with AsyncTestClient(app) as c:
        c.headers["X-API-Key"] = API_KEY
        await assert_outage(c, app, call_id=1)
        health = (await c.get("/health")).json()
        assert health["database"] == "schema missing: run alembic upgrade head"


@pytest.mark.postgres
@pytest.mark.parametrize("wrong", ["database", "role"])
async def test_a_postgres_url_naming_what_does_not_exist_is_503_everywhere(wrong: str) -> None:
    """A misconfigured URL is the database being unavailable, on hot and plain paths alike."""
    server = dbutil.postgres_server_url()
    if server is None:
        pytest.skip(f"PostgreSQL tests need {dbutil.POSTGRES_URL_ENV}")
    url = make_url(server)
    url = (
        url.set(database="negotiation_no_such_db")
        if wrong == "database"
        else url.set(username="negotiation_no_such_role")
    )
    settings = Settings(database_url=url.render_as_string(hide_password=False), api_keys=(API_KEY,))
    app = create_app(settings)
    async with AsyncTestClient(app) as c:
        c.headers["X-API-Key"] = API_KEY
        await assert_outage(c, app, call_id=1)


async def test_sqlite_file_that_cannot_be_opened_then_appears(
    tmp_path: Path, sqlite_template: Path
) -> None:
    target = tmp_path / "volume-not-mounted" / "loads.db"
    app = create_app(Settings(database_url=f"sqlite:///{target}", api_keys=(API_KEY,)))
    async with AsyncTestClient(app) as c:
        c.headers["X-API-Key"] = API_KEY
        await assert_outage(c, app, call_id=1)
        target.parent.mkdir()
        shutil.copyfile(sqlite_template, target)
        call_id = await seed(c)
        await assert_recovered(c, call_id, round_number=2)


@pytest.mark.slow
def test_sqlite_storage_refusing_writes_under_the_running_server(
    tmp_path: Path, sqlite_template: Path
) -> None:
    url = dbutil.copy_sqlite(sqlite_template, tmp_path / "loads.db")
    with (
        running_server({"database_url": url, "api_keys": API_KEY}) as server,
        httpx.Client(base_url=server.base_url, headers={"X-API-Key": API_KEY}) as c,
    ):
        assert c.post("/api/sessions", json={"session_id": "s-f"}).status_code == 201
        assert c.post("/api/loads", json={**LOAD, "load_id": "LD-F"}).status_code == 201
        call_id = c.post("/api/calls", json={"load_id": "LD-F"}).json()["id"]
        negotiate = f"/api/calls/{call_id}/negotiate"
        assert c.post(negotiate, json={"carrier_offer": 2500}).status_code == 201

        pid = server.process.pid
        limits = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, limits[1]))
        try:
            for method, _, path, body in outage_requests(call_id):
                r = c.request(method, path, json=body)
                if method == "GET":
                    assert r.status_code == 200, (path, r.text)  # reads go on
                    continue
                assert r.status_code == 503, (method, path, r.text)
                assert r.json()["error"]["code"] == "DATABASE_UNAVAILABLE"
                assert r.headers["Retry-After"] == "2"
        finally:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, limits)

        r = c.post(negotiate, json={"carrier_offer": 2450})
        assert r.status_code == 201 and r.json()["round_number"] == 2, r.text
        assert len(c.get(f"/api/calls/{call_id}/negotiations").json()) == 2
        assert c.get("/api/loads/LD-NEW").status_code == 404
        assert c.get("/api/sessions/s-f").json()["status"] == "active"


async def wait_until_blocked(app: Litestar, database_url: str) -> None:
    """Until the app's write is under way and waiting for the lock the test holds."""
    if database_url.startswith("postgresql"):
        await dbutil.wait_for_row(
            database_url,
            "SELECT 1 FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
    else:
        # The write has been handed to the writer thread, which waits for the file lock.

        async def writing() -> bool:
            return bool(app.state.db._writes)

        await wait_until(writing, "the app's write has started")


async def test_a_client_gone_mid_write_leaves_the_whole_round(
    settings: Settings, database_url: str
) -> None:
    app = create_app(with_settings(settings, sqlite_busy_timeout_ms=20_000, lock_timeout_ms=20_000))
    async with concurrent_client(app) as (c, _):
        [call_id] = await setup_calls(c, 1, "LD-GONE")
        body = {"carrier_offer": 2500, "session_id": "gone-1"}
        async with held_lock(database_url, call_id):
            request = asyncio.ensure_future(c.post(f"/api/calls/{call_id}/negotiate", json=body))
            await wait_until_blocked(app, database_url)
            request.cancel()  # the client disconnects while its round is being written
            with suppress(asyncio.CancelledError):
                await request
    # The app has shut down, which waits for writes in progress: the round is whole.
    rows = await dbutil.execute(
        database_url, "SELECT round_number FROM negotiations WHERE call_id = :c", c=call_id
    )
    assert [r[0] for r in rows] == [1]
    counted = await dbutil.execute(
        database_url, "SELECT negotiation_rounds FROM calls WHERE id = :c", c=call_id
    )
    assert counted[0][0] == 1
    session = await dbutil.execute(
        database_url, "SELECT 1 FROM sessions WHERE session_id = 'gone-1'"
    )
    assert session


async def test_disconnects_at_any_moment_leave_whole_rounds_or_none(
    settings: Settings, database_url: str
) -> None:
    app = create_app(settings)
    async with concurrent_client(app) as (c, _):
        calls = await setup_calls(c, 24, "LD-CUT")
        for i, call_id in enumerate(calls):
            body = {"carrier_offer": 2500, "session_id": f"cut-{i}"}
            request = asyncio.ensure_future(c.post(f"/api/calls/{call_id}/negotiate", json=body))
            for _ in range(i):  # cancel after a different number of steps each time
                await asyncio.sleep(0)
            request.cancel()
            with suppress(asyncio.CancelledError):
                await request
    for i, call_id in enumerate(calls):
        rounds = await dbutil.execute(
            database_url, "SELECT count(*) FROM negotiations WHERE call_id = :c", c=call_id
        )
        counted = await dbutil.execute(
            database_url, "SELECT negotiation_rounds FROM calls WHERE id = :c", c=call_id
        )
        session = await dbutil.execute(
            database_url, "SELECT 1 FROM sessions WHERE session_id = :s", s=f"cut-{i}"
        )
        n = rounds[0][0]
        assert n in (0, 1) and counted[0][0] == n and bool(session) == (n == 1), (i, n)


@pytest.mark.postgres
async def test_pooled_connections_killed_while_idle_cost_no_read_and_recover(
    postgres_database: str,
) -> None:
    """Connections are not pinged at checkout: a read on a dead one runs again on a new one."""
    await asyncio.to_thread(dbutil.truncate_postgres, postgres_database)
    app = create_app(Settings(database_url=postgres_database, api_keys=(API_KEY,)))
    async with AsyncTestClient(app) as client:
        client.headers["X-API-Key"] = API_KEY

        async def kill_backends() -> None:
            assert await dbutil.terminate_backends(postgres_database) >= 1

        call_id = await seed(client)  # leaves a pooled connection behind
        await kill_backends()
        got = await client.get(f"/api/calls/{call_id}/negotiations")
        assert got.status_code == 200, got.text
        assert len(got.json()) == 1
        await assert_recovered(client, call_id, round_number=2)
        # A write is not run again (it might have reached the database): 503, then the pool
        # has been replaced and the retry goes through, recorded once.
        await kill_backends()
        offer = await client.post(f"/api/calls/{call_id}/negotiate", json={"carrier_offer": 2400})
        assert offer.status_code == 503, offer.text
        assert offer.json()["error"]["code"] == "DATABASE_UNAVAILABLE"
        await assert_recovered(client, call_id, round_number=3)
