"""scripts/migrate_add_session_id.sh: adopting legacy SQLite files, all or nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import create_engine, select

from negotiation import migrate_sqlite
from negotiation.app import create_app
from negotiation.queries import rounds
from negotiation.settings import Settings
from tests import dbutil
from tests.legacy import KNOWN_LOAD, KNOWN_ROUNDS, LEGACY_OUTCOMES, LEGACY_TABLES, create_legacy_db
from tests.waiting import wait_until_sync

SCRIPT = dbutil.ROOT / "scripts" / "migrate_add_session_id.sh"
FIRST, SECOND, SERVICE = "5e1a0c3b7d01", "8b2d4f6a9c02", "c3e5a7b9d103"
#: Later revisions (other changes add theirs) are read from migrations/.
REVISIONS = dbutil.revisions()
HEAD = REVISIONS[-1]
API_KEY = "test-key"
Run = Callable[..., tuple[int, str, str]]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".backup.*"))


def snapshot(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every legacy row, legacy columns only, in primary-key order."""
    conn = sqlite3.connect(path)
    try:
        legacy = sqlite3.connect(":memory:")
        legacy.executescript((dbutil.ROOT / "tests/fixtures/legacy_loads_schema.sql").read_text())
        result = {}
        for table in LEGACY_TABLES:
            columns = ", ".join(f'"{r[1]}"' for r in legacy.execute(f"PRAGMA table_info({table})"))
            key = next(r[1] for r in legacy.execute(f"PRAGMA table_info({table})") if r[5])
            result[table] = conn.execute(f"SELECT {columns} FROM {table} ORDER BY {key}").fetchall()
        return result
    finally:
        conn.close()


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    path = tmp_path / "loads.db"
    create_legacy_db(path, negotiations=5000)
    return path


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run the script's ``main`` in-process: ``(exit status, stdout, stderr)``."""

    def _run(*args: str) -> tuple[int, str, str]:
        status = migrate_sqlite.main(list(args))
        out, err = capsys.readouterr()
        return status, out, err

    return _run


def broken_migrations(tmp_path: Path, body: str) -> Path:
    """A copy of migrations/ with one more revision after head whose upgrade runs ``body``."""
    target = tmp_path / "migrations"
    shutil.copytree(
        dbutil.ROOT / "migrations", target, ignore=shutil.ignore_patterns("__pycache__")
    )
    (target / "versions" / "20261231_0000_f00dfa11ed01_injected.py").write_text(
        f'''"""Injected by the tests."""
import sqlalchemy as sa
from alembic import op

revision = "f00dfa11ed01"
down_revision = "{HEAD}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("negotiations") as batch:
        batch.add_column(sa.Column("doomed", sa.Text()))
    op.execute("DELETE FROM calls WHERE id % 2 = 0")
{body}


def downgrade() -> None:
    pass
'''
    )
    return target


def test_adopts_a_legacy_file_keeping_every_row(legacy: Path, run: Run) -> None:
    before = snapshot(legacy)
    status, out, err = run(str(legacy))
    assert status == 0, err
    assert f"stamped {FIRST}" in out
    applied = re.findall(r"^  applied (\w+): ", out, flags=re.M)
    assert applied == REVISIONS[1:], out
    assert "negotiations 5000" in out and "elapsed: backup" in out
    [backup] = backups(legacy)
    assert re.fullmatch(r"loads\.db\.backup\.\d{8}_\d{6}", backup.name)
    assert f"backup: {backup}" in out
    assert snapshot(backup) == before
    assert snapshot(legacy) == before  # money compares by value: 2150.0 may now be stored as 2150
    conn = sqlite3.connect(legacy)
    assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
    outcomes = {r[0] for r in conn.execute("SELECT DISTINCT outcome FROM calls")}
    assert outcomes == set(LEGACY_OUTCOMES)
    assert (
        conn.execute("SELECT count(*) FROM negotiations WHERE carrier_offer IS NULL").fetchone()[0]
        > 100
    )
    conn.close()


def test_money_reads_back_exact_without_drift(legacy: Path, run: Run) -> None:
    assert run(str(legacy))[0] == 0
    engine = create_engine(f"sqlite:///{legacy}")
    with engine.connect() as conn:
        offers = conn.execute(select(rounds.c.carrier_offer).where(rounds.c.call_id == 1))
        assert list(offers.scalars()) == [
            None,
            Decimal("2300.10"),
            Decimal("2199.99"),
            Decimal("2150.00"),
            Decimal("0.30"),
        ]
    engine.dispose()


async def test_legacy_rows_are_readable_through_the_api(legacy: Path, run: Run) -> None:
    assert run(str(legacy))[0] == 0
    settings = Settings(database_url=f"sqlite:///{legacy}", api_keys=(API_KEY,))
    async with AsyncTestClient(create_app(settings)) as client:
        client.headers["X-API-Key"] = API_KEY
        r = await client.get("/api/calls/1/negotiations")
        assert r.status_code == 200, r.text
        expected = [
            {
                "id": id_,
                "round_number": round_number,
                "carrier_offer": None if offer is None else round(offer, 2),
                "system_response": response,
                "timestamp": None if stamp is None else stamp.replace(" ", "T") + "Z",
                "decision": None,
            }
            for id_, round_number, offer, response, stamp in KNOWN_ROUNDS
        ]
        assert [{k: x[k] for k in expected[0]} for x in r.json()] == expected
        load = (await client.get(f"/api/loads/{KNOWN_LOAD[0]}")).json()
        assert load["loadboard_rate"] == 2300.1
        assert dt.datetime.fromisoformat(load["delivery_datetime"]) == dt.datetime(
            2024, 3, 7, 18, 0, 0, 500000, tzinfo=dt.UTC
        )
        # Every legacy round is readable (NULL offers, free text, odd timestamps), page by page.
        seen, cursor = 0, None
        while True:
            params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
            page = await client.get("/api/negotiations", params=params)
            assert page.status_code == 200, page.text
            seen += len(page.json()["items"])
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert seen == 5000
        # The service carries on: a new negotiation on a legacy call that has not ended; one
        # that ended (a terminal outcome) is closed.
        # (On a legacy load marked booked, no other call negotiates.)
        recorded = set()
        for call_id in range(1, 41):
            call = (await client.get(f"/api/calls/{call_id}")).json()
            r = await client.post(
                f"/api/calls/{call_id}/negotiate",
                json={"carrier_offer": 2000, "session_id": f"sess_after_{call_id}"},
            )
            if call["outcome"] in ("accepted", "rejected", "transferred", "abandoned"):
                assert r.status_code == 409 and r.json()["error"]["code"] == "CALL_CLOSED"
            elif call["load_status"] not in (None, "available"):
                assert r.status_code == 409 and r.json()["error"]["code"] == "LOAD_BOOKED"
            elif call["outcome"] == "negotiating":
                assert r.status_code == 201, r.text
                assert r.json()["round_number"] == 1
                recorded.add(call_id)
        assert recorded


def test_second_run_reports_already_at_head_and_changes_nothing(legacy: Path, run: Run) -> None:
    assert run(str(legacy))[0] == 0
    digest, kept = sha256(legacy), backups(legacy)
    status, out, _ = run(str(legacy))
    assert status == 0
    assert "already at head" in out and "no backup taken" in out
    assert sha256(legacy) == digest
    assert backups(legacy) == kept


def test_upgrades_a_file_already_under_alembic(legacy: Path, run: Run) -> None:
    dbutil.run_alembic(f"sqlite:///{legacy}", "stamp", FIRST)
    dbutil.run_alembic(f"sqlite:///{legacy}", "upgrade", SECOND)
    status, out, _ = run(str(legacy))
    assert status == 0
    assert f"was at revision {SECOND}" in out and "stamped" not in out
    assert f"applied {HEAD}" in out and f"applied {SECOND}" not in out


def test_plain_alembic_upgrade_points_a_legacy_file_to_the_script(legacy: Path, run: Run) -> None:
    before = snapshot(legacy)
    with pytest.raises(RuntimeError, match=r"adopt it with scripts/migrate_add_session_id\.sh"):
        dbutil.run_alembic(f"sqlite:///{legacy}")
    assert snapshot(legacy) == before
    # Alembic may have left an empty alembic_version table behind; the script still adopts it.
    status, out, err = run(str(legacy))
    assert status == 0, err
    assert f"stamped {FIRST}" in out


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "text"])
def test_refuses_what_is_not_a_sqlite_file(tmp_path: Path, run: Run, kind: str) -> None:
    path = tmp_path / "loads.db"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.touch()
    elif kind == "text":
        path.write_text("load_id,origin\nLD1,Chicago\n")
    status, _, err = run(str(path))
    assert status == migrate_sqlite.EXIT_REFUSED
    expected = {
        "missing": "does not exist",
        "directory": "not a regular file",
        "empty": "an empty file",
        "text": "not a SQLite database",
    }[kind]
    assert expected in err and "No backup was needed" in err
    assert path.exists() == (kind != "missing")  # nothing created
    assert not backups(path)


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        ("ALTER TABLE loads ADD COLUMN extra TEXT", "loads: columns differ (extra)"),
        ("CREATE TABLE invoices (id INTEGER PRIMARY KEY)", "unexpected tables invoices"),
        ("DROP INDEX ix_calls_id", "calls: indexes differ (ix_calls_id)"),
        (
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL);"
            "INSERT INTO alembic_version VALUES ('0123456789ab')",
            "unrecognised revision '0123456789ab'",
        ),
        (
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL);"
            f"INSERT INTO alembic_version VALUES ('{HEAD}')",
            f"alembic_version says {HEAD} but the tables differ",
        ),
    ],
)
def test_refuses_an_unrecognised_schema(
    legacy: Path, run: Run, mutation: str, message: str
) -> None:
    conn = sqlite3.connect(legacy)
    conn.executescript(mutation)
    conn.close()
    digest = sha256(legacy)
    status, _, err = run(str(legacy))
    assert status == migrate_sqlite.EXIT_REFUSED
    assert "unrecognised" in err and message in err
    assert sha256(legacy) == digest
    assert not backups(legacy)


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('    raise RuntimeError("injected failure")', "RuntimeError: injected failure"),
        # No exception: the checks must catch the lost rows and the dropped index.
        (
            '    op.drop_index("idx_negotiations_session_id", table_name="negotiations")',
            "verification failed",
        ),
    ],
    ids=["exception", "verification"],
)
def test_a_failed_upgrade_leaves_the_file_byte_identical(
    tmp_path: Path, run: Run, journal_mode: str, body: str, message: str
) -> None:
    path = tmp_path / "loads.db"
    counts = create_legacy_db(path, negotiations=3000, journal_mode=journal_mode)
    digest = sha256(path)
    status, out, err = run(str(path), "--migrations", str(broken_migrations(tmp_path, body)))
    assert status == migrate_sqlite.EXIT_FAILED, out
    assert message in err
    if message == "verification failed":
        assert "calls had 750 rows and now has 375" in err
        assert "index idx_negotiations_session_id" in err
    [backup] = backups(path)
    assert f"backup taken before the attempt is at {backup}" in err
    assert sha256(path) == digest
    conn = sqlite3.connect(backup)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in counts} == counts
    conn.close()
    assert not (tmp_path / "loads.db-journal").exists()


@pytest.mark.slow
@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_a_killed_run_leaves_the_file_as_it_was(tmp_path: Path, journal_mode: str) -> None:
    path = tmp_path / "loads.db"
    create_legacy_db(path, negotiations=20000, journal_mode=journal_mode)
    digest = sha256(path)
    marker = tmp_path / "reached"
    # The upgrade says it got there, then stays until it is killed.
    body = f"    open({str(marker)!r}, 'w').close()\n    import threading; threading.Event().wait()"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "negotiation.migrate_sqlite",
            str(path),
            "--migrations",
            str(broken_migrations(tmp_path, body)),
        ],
    )

    def reached() -> bool:
        assert proc.poll() is None, f"the migration exited with {proc.returncode}"
        return marker.exists()

    try:
        wait_until_sync(reached, "the migration is in the middle of its upgrade")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # The upgrade had already written: a journal (hot, or WAL frames) is left behind.
    sidecar = tmp_path / ("loads.db-journal" if journal_mode == "delete" else "loads.db-wal")
    assert sidecar.stat().st_size > 0
    # The next opener rolls the interrupted transaction back (hot journal).
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    assert sha256(path) == digest


def test_writes_during_the_migration_wait_and_are_kept(legacy: Path) -> None:
    """A running service's write waits for the migration's lock instead of being lost."""
    blocked, started = threading.Event(), threading.Event()
    written: list[int] = []

    def writer() -> None:
        started.wait(30)
        conn = sqlite3.connect(legacy, timeout=0, isolation_level=None)
        while True:
            try:
                cur = conn.execute(
                    "INSERT INTO negotiations (call_id, round_number, carrier_offer, "
                    "system_response, timestamp) VALUES (2, 7, 1999.5, 'during', "
                    "'2024-05-01 10:00:00')"
                )
                written.append(int(cur.lastrowid or 0))
                break
            except sqlite3.OperationalError as exc:
                assert "locked" in str(exc)
                blocked.set()
                time.sleep(0.01)
        conn.close()

    def clock() -> dt.datetime:
        # Called under the migration's write lock, just before the backup.
        started.set()
        assert blocked.wait(30), "the writer never hit the migration's lock"
        return dt.datetime.now()

    thread = threading.Thread(target=writer)
    thread.start()
    report = migrate_sqlite.Migrator(legacy, now=clock).run()
    thread.join(30)
    assert not thread.is_alive(), "the writer never got its turn after the migration"
    assert report.rows["negotiations"] == 5000  # the writer had to wait for the commit
    conn = sqlite3.connect(legacy)
    assert conn.execute("SELECT count(*) FROM negotiations").fetchone()[0] == 5001
    assert conn.execute(
        "SELECT call_id, carrier_offer, system_response FROM negotiations WHERE id = ?", written
    ).fetchone() == (2, 1999.5, "during")
    conn.close()


@pytest.mark.slow
def test_the_script_runs_as_a_subprocess(legacy: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEGOTIATION_")}
    first = subprocess.run(
        [str(SCRIPT), "loads.db"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    assert f"{legacy}: migrated to head ({HEAD})" in first.stdout
    assert re.search(r"backup: \S+loads\.db\.backup\.\d{8}_\d{6} ", first.stdout)
    second = subprocess.run([str(SCRIPT), str(legacy)], env=env, capture_output=True, text=True)
    assert second.returncode == 0 and "already at head" in second.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = subprocess.run([str(SCRIPT)], cwd=empty, env=env, capture_output=True, text=True)
    assert missing.returncode == migrate_sqlite.EXIT_REFUSED
    assert f"{empty / 'loads.db'} does not exist" in missing.stderr
