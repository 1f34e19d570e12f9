"""Only the served app freezes the objects built at start; an app built in a test does not."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from negotiation.app import create_app, create_served_app
from negotiation.settings import Settings
from tests import dbutil


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    return dbutil.copy_sqlite(sqlite_template, tmp_path / "loads.db")


async def test_an_app_built_by_create_app_leaves_the_collector_alone(sqlite_url: str) -> None:
    gc.unfreeze()
    async with AsyncTestClient(create_app(Settings(database_url=sqlite_url))) as client:
        assert (await client.get("/health")).status_code == 200
        assert gc.get_freeze_count() == 0


async def test_the_served_app_freezes_what_start_built(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEGOTIATION_DATABASE_URL", sqlite_url)
    gc.unfreeze()
    try:
        async with AsyncTestClient(create_served_app()) as client:
            assert (await client.get("/health")).status_code == 200
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
