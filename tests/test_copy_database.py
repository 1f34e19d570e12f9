"""``negotiation copy-database``: SQLite -> PostgreSQL -> SQLite, verified, and every refusal.

The round trip runs the installed command as a subprocess; the cases that need to act in the
middle of a copy (a write to the source, a lost row) call the same function in-process.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, text
from sqlalchemy.engine import make_url

from negotiation.copydb import CopyFailed, CopyRefused, CopyReport, copy_database, ends
from negotiation.copydb.plan import table_plans
from negotiation.copydb.run import head_revision
from tests import dbutil
from tests.clirun import cli_env, run_cli
from tests.conftest import Clock
from tests.copydata import READ_AT, api, fill, reads
from tests.legacy import create_legacy_db

pytestmark = [pytest.mark.slow]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def copy(source: str, target: str, **options: Any) -> CopyReport:
    """The copy in-process, on a thread of its own (it runs its own event loop)."""
    return await asyncio.to_thread(copy_database, source, target, **options)


def copy_cli(source: str, target: str) -> Any:
    return run_cli("copy-database", source, target, env=cli_env("sqlite:///unused.db"))


async def row_counts(url: str) -> dict[str, int]:
    counts = {}
    for table in dbutil.TABLES:
        [(n,)] = await dbutil.execute(url, f"SELECT count(*) FROM {table}")
        counts[table] = int(n)
    return counts


async def max_ids(url: str) -> tuple[int, int]:
    [(rounds, calls)] = await dbutil.execute(
        url, "SELECT (SELECT max(id) FROM negotiations), (SELECT max(id) FROM calls)"
    )
    return int(rounds), int(calls)


@pytest.fixture
def sqlite_source(sqlite_template: Path, tmp_path: Path) -> Path:
    return Path(
        dbutil.copy_sqlite(sqlite_template, tmp_path / "source.db").removeprefix("sqlite:///")
    )


async def new_round_id(url: str) -> tuple[int, int]:
    """Record a call and a round through the API on ``url``; their ids."""
    async with api(url, Clock(READ_AT)) as client:
        call = await client.post("/api/calls", json={"load_id": "LD-1", "carrier_mc_number": "MC9"})
        assert call.status_code == 201, call.text
        call_id = call.json()["id"]
        r = await client.post(f"/api/calls/{call_id}/negotiate", json={"carrier_offer": 2000})
        assert r.status_code == 201, r.text
        return int(r.json()["id"]), int(call_id)


@pytest.mark.postgres
async def test_round_trip_sqlite_postgres_sqlite(
    sqlite_source: Path, postgres_url: str, tmp_path: Path
) -> None:
    source_url = f"sqlite:///{sqlite_source}"
    call_ids = await fill(source_url)
    before, digest = await reads(source_url, call_ids), sha256(sqlite_source)
    counts = await row_counts(source_url)
    assert counts["idempotency_keys"] > 0 and counts["sessions"] == 3  # one was purged
    for status, session in [("active", "crm-1"), ("closed", "closing"), ("expired", "short-lived")]:
        [page] = before[f"sessions {status}"]
        assert [s["session_id"] for s in page["items"]] == [session]

    to_pg = copy_cli(source_url, postgres_url)
    assert to_pg.code == 0, to_pg.stderr
    assert "negotiations" in to_pg.stdout and "Verified on both ends" in to_pg.stdout
    assert "foreign-key triggers\nwere skipped" in to_pg.stdout  # the tests connect as superuser
    back_url = f"sqlite:///{tmp_path / 'back.db'}"
    to_sqlite = copy_cli(postgres_url, back_url)
    assert to_sqlite.code == 0, to_sqlite.stderr

    assert sha256(sqlite_source) == digest
    for copy in (postgres_url, back_url):
        assert await row_counts(copy) == counts
        assert await reads(copy, call_ids) == before
    copied_round, copied_call = await max_ids(source_url)
    for copy in (postgres_url, back_url):
        round_id, call_id = await new_round_id(copy)
        assert round_id > copied_round and call_id > copied_call


@pytest.mark.postgres
async def test_postgres_target_continues_after_purged_ids(
    postgres_url: str, tmp_path: Path
) -> None:
    """A PostgreSQL source remembers ids handed out before a purge; so does the copy."""
    await fill(postgres_url)
    [(next_round,)] = await dbutil.execute(
        postgres_url, "SELECT last_value FROM negotiations_id_seq"
    )
    report = await copy(postgres_url, f"sqlite:///{tmp_path / 'copy.db'}")
    assert {t.name: t.next_id for t in report.tables}["negotiations"] == next_round + 1


async def test_refuses_a_target_holding_data(sqlite_source: Path, tmp_path: Path) -> None:
    source_url = f"sqlite:///{sqlite_source}"
    await fill(source_url)
    target = tmp_path / "target.db"
    first = copy_cli(source_url, f"sqlite:///{target}")
    assert first.code == 0, first.stderr
    digest = sha256(target)
    again = copy_cli(source_url, f"sqlite:///{target}")
    assert again.code == 2
    holding = (
        "idempotency_keys, loads, pricing_profiles, sessions, calls, load_bookings, negotiations"
    )
    assert f"already holds data (in {holding})" in again.stderr
    assert "empty database" in again.stderr
    assert sha256(target) == digest


@pytest.mark.parametrize("revision", ["8b2d4f6a9c02", None])
async def test_refuses_a_source_not_at_head(tmp_path: Path, revision: str | None) -> None:
    source = tmp_path / "old.db"
    if revision is None:
        create_legacy_db(source, negotiations=50)
    else:
        dbutil.run_alembic(f"sqlite:///{source}", revision=revision)
    digest = sha256(source)
    target = tmp_path / "target.db"
    result = copy_cli(f"sqlite:///{source}", f"sqlite:///{target}")
    assert result.code == 2
    found = f"is at revision {revision}" if revision else "has no alembic_version"
    assert found in result.stderr and f"not at head ({head_revision()})" in result.stderr
    assert "migrate_add_session_id.sh" in result.stderr
    assert sha256(source) == digest
    assert not target.exists() or target.stat().st_size == 0


async def test_refuses_foreign_key_orphans(sqlite_source: Path, tmp_path: Path) -> None:
    source_url = f"sqlite:///{sqlite_source}"
    await fill(source_url)
    engine = create_engine(source_url)
    with engine.begin() as conn:  # as a legacy service, which never enforced foreign keys, did
        conn.execute(text("INSERT INTO calls (id, load_id) VALUES (99, 'LD-gone')"))
    engine.dispose()
    result = copy_cli(source_url, f"sqlite:///{tmp_path / 'target.db'}")
    assert result.code == 2
    assert "1 rows whose foreign key names a missing row (calls rowid 99 -> loads)" in result.stderr


@contextmanager
def _writing_to(url: str) -> Iterator[Callable[[str, int], Any]]:
    """A progress hook that, once a copy is under way, records a load in ``url``."""
    wrote: list[str] = []

    @contextmanager
    def progress(table: str, rows: int) -> Iterator[None]:
        if table == "negotiations" and not wrote:
            engine = create_engine(url)
            with engine.begin() as conn:
                conn.execute(text("UPDATE sessions SET client_id = 'changed' WHERE 1 = 1"))
            engine.dispose()
            wrote.append(table)
        yield None

    yield progress
    assert wrote, "the hook never ran"


async def test_refuses_a_sqlite_source_written_during_the_copy(
    sqlite_source: Path, tmp_path: Path
) -> None:
    source_url = f"sqlite:///{sqlite_source}"
    await fill(source_url)
    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    with _writing_to(source_url) as progress, pytest.raises(CopyRefused, match="written to"):
        await copy(source_url, target_url, progress=progress)
    assert set((await row_counts(target_url)).values()) == {0}
    # The target is migrated and empty: the next run, with the source quiet, goes through.
    report = await copy(source_url, target_url)
    assert report.rows == sum((await row_counts(source_url)).values())


@pytest.mark.postgres
async def test_refuses_a_postgres_source_written_during_the_copy(
    postgres_url: str, tmp_path: Path
) -> None:
    await fill(postgres_url)
    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    with pytest.raises(CopyRefused, match="written to"):
        await copy(postgres_url, target_url, progress=_pg_writer(postgres_url))
    assert set((await row_counts(target_url)).values()) == {0}


def _pg_writer(url: str) -> Callable[[str, int], Any]:

    @contextmanager
    def progress(table: str, rows: int) -> Iterator[None]:
        if table == "negotiations":
            # The copy runs on this thread's event loop: write from another thread's.
            statement = "UPDATE calls SET notes = 'changed' WHERE id = (SELECT min(id) FROM calls)"
            worker = threading.Thread(target=asyncio.run, args=(dbutil.execute(url, statement),))
            worker.start()
            worker.join()
        yield None

    return progress


def _lose_a_round(plan: Any, batch: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return batch[:-1]


def _add_a_cent(plan: Any, batch: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    at = plan.column_names.index("carrier_offer")
    first = list(batch[0])
    first[at] = 1234.56 if first[at] is None else first[at] + 0.01
    return [tuple(first), *batch[1:]]


@pytest.mark.parametrize("damage", [_lose_a_round, _add_a_cent])
async def test_a_failed_verification_leaves_the_target_empty(
    sqlite_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: Any
) -> None:
    source_url = f"sqlite:///{sqlite_source}"
    await fill(source_url)
    write = ends.write_table

    def damaged(conn: Any, plan: Any, batches: Iterator[Any], advance: Any) -> None:
        if plan.name == "negotiations":
            batches = (damage(plan, batch) for batch in batches)
        write(conn, plan, batches, advance)

    monkeypatch.setattr(ends, "write_table", damaged)
    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    with pytest.raises(CopyFailed, match=r"verification failed.*negotiations: source Totals"):
        await copy(source_url, target_url)
    assert set((await row_counts(target_url)).values()) == {0}


@pytest.mark.postgres
async def test_postgres_target_without_superuser(sqlite_source: Path, postgres_url: str) -> None:
    """A target user who may not skip foreign-key triggers copies with them, just as well."""
    source_url = f"sqlite:///{sqlite_source}"
    await fill(source_url)
    role = dbutil.database_name("copier")
    grants = [
        f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"',
        f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"',
        f'GRANT USAGE ON SCHEMA public TO "{role}"',
    ]
    if not await _role_exists(postgres_url, role):
        await dbutil.execute(postgres_url, f'CREATE ROLE "{role}" LOGIN')
    for grant in grants:
        await dbutil.execute(postgres_url, grant)
    as_role = make_url(postgres_url).set(username=role).render_as_string(hide_password=False)
    try:
        report = await copy(source_url, as_role)
    finally:
        await dbutil.execute(postgres_url, f'DROP OWNED BY "{role}"')
    assert not report.skipped_fk_triggers
    assert await row_counts(postgres_url) == await row_counts(source_url)


async def _role_exists(url: str, role: str) -> bool:
    return bool(await dbutil.execute(url, "SELECT 1 FROM pg_roles WHERE rolname = :r", r=role))


def test_sqlite_autoincrement_ids_carry_over(tmp_path: Path) -> None:
    """An AUTOINCREMENT table remembers ids lost to deletes; the target remembers them too."""
    metadata = MetaData()
    things = Table(
        "things", metadata, Column("id", Integer, primary_key=True), sqlite_autoincrement=True
    )
    [plan] = table_plans(metadata)
    source, target = (create_engine(f"sqlite:///{tmp_path / name}") for name in ("s.db", "t.db"))
    for engine in (source, target):
        metadata.create_all(engine)
    with source.begin() as conn:
        conn.execute(things.insert(), [{"id": n} for n in range(1, 6)])
        conn.execute(things.delete().where(things.c.id > 3))
        last = ends.serial_high_water(conn, plan)
    assert last == 5
    with target.begin() as conn:
        ends.write_table(conn, plan, iter([[(1,), (2,), (3,)]]), lambda n: None)
        ends.continue_serial(conn, plan, last)
        new_id = conn.execute(things.insert().returning(things.c.id)).scalar_one()
    assert new_id == 6
    source.dispose()
    target.dispose()
