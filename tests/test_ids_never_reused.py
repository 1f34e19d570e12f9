"""Round and call ids are never handed out twice, also after the newest rows were deleted:
SQLite tables use AUTOINCREMENT (revision e5b7d9f1a306), PostgreSQL sequences never go back.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from negotiation import migrate_sqlite
from tests import dbutil
from tests.helpers import Client, offer_ok
from tests.legacy import create_legacy_db


async def test_purged_round_ids_are_not_reused(
    client: Client, make_call: Any, database_url: str
) -> None:
    call = await make_call()
    kept = await offer_ok(client, call["id"], 2500, "keep")
    purged = [(await offer_ok(client, call["id"], 2500, "gone"))["id"] for _ in range(2)]
    response = await client.delete("/api/sessions/gone", params={"purge": "true"})
    assert response.json()["purged_rounds"] == 2
    after = await offer_ok(client, call["id"], 2400, "keep")
    assert after["id"] > max(purged) > kept["id"]
    url = f"/api/calls/{call['id']}/negotiations"
    listed = (await client.get(url, params={"after_id": kept["id"]})).json()
    assert [r["id"] for r in listed] == [after["id"]]


async def test_deleted_call_ids_are_not_reused(make_call: Any, database_url: str) -> None:
    """No route deletes calls; an operator's DELETE must not make ids come back either."""
    first = await make_call()
    last = await make_call()
    await dbutil.execute(database_url, f"DELETE FROM calls WHERE id = {last['id']}")
    assert (await make_call())["id"] > last["id"] > first["id"]


def _sql(path: Path, table: str) -> str:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    return str(row[0])


def test_an_adopted_legacy_file_continues_after_its_largest_ids(tmp_path: Path) -> None:
    legacy = tmp_path / "loads.db"
    create_legacy_db(legacy, negotiations=500)
    with sqlite3.connect(legacy) as conn:
        conn.execute("DELETE FROM negotiations WHERE id > 400")  # the newest rows are gone
        (largest,) = conn.execute("SELECT max(id) FROM negotiations").fetchone()
    assert migrate_sqlite.main([str(legacy)]) == 0
    for table in ("calls", "negotiations"):
        assert "AUTOINCREMENT" in _sql(legacy, table), _sql(legacy, table)
    with sqlite3.connect(legacy) as conn:
        conn.execute(
            "INSERT INTO negotiations (call_id, round_number, carrier_offer) VALUES (1, 99, 2000)"
        )
        conn.execute("DELETE FROM negotiations WHERE round_number = 99")
        conn.execute(
            "INSERT INTO negotiations (call_id, round_number, carrier_offer) VALUES (1, 98, 2000)"
        )
        (new_id,) = conn.execute("SELECT id FROM negotiations WHERE round_number = 98").fetchone()
    assert new_id == largest + 2  # largest + 1 was handed out once, then deleted: never again
