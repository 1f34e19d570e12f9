"""``/metrics`` under ``negotiation serve --workers 2``: every scrape, whichever worker answers
it, counts the requests that every worker served (prometheus-client's multiprocess mode)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests import dbutil
from tests.server import running_server
from tests.test_metrics import parse, value

pytestmark = pytest.mark.slow

KEY = "workers-test-key"
ROUTE = "/api/loads/{load_id}"
BATCH = 16


def _get_load(base: str) -> int:
    # A new connection each time, so the workers take turns accepting them.
    r = httpx.get(f"{base}/api/loads/LD-W", headers={"X-API-Key": KEY}, timeout=10)
    return r.status_code


def _served(base: str) -> float:
    r = httpx.get(f"{base}/metrics", headers={"X-API-Key": KEY}, timeout=10)
    assert r.status_code == 200, r.text
    samples = parse(r.text)
    return value(
        samples, "negotiation_http_requests_total", method="GET", route=ROUTE, status="404"
    )


def _worker_pids(metrics_dir: Path) -> set[str]:
    """The pids of the processes that wrote counters (files ``counter_<pid>.db``)."""
    return {p.stem.split("_")[-1] for p in metrics_dir.glob("counter_*.db")}


@pytest.mark.parametrize(
    ("own_dir", "by_setting"),
    [(False, False), (True, False), (True, True)],
    ids=["temporary-dir", "operator-dir", "operator-dir-NEGOTIATION_WORKERS"],
)
def test_every_scrape_sums_all_workers(
    sqlite_template: Path,
    tmp_path: Path,
    own_dir: bool,
    by_setting: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = dbutil.copy_sqlite(sqlite_template, tmp_path / "loads.db")
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    if own_dir:
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    else:
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    settings = {"database_url": url, "api_keys": KEY}
    if by_setting:  # serve's --workers left to its default, which reads the setting
        settings["workers"] = "2"
    with (
        (tmp_path / "server.log").open("wb") as log,
        running_server(settings, log, args=[] if by_setting else ["--workers", "2"]) as server,
        ThreadPoolExecutor(8) as pool,
    ):
        sent = 0
        for _ in range(10):  # until both workers have served (they usually do at once)
            statuses = list(pool.map(_get_load, [server.base_url] * BATCH))
            assert set(statuses) == {404}
            sent += BATCH
            if not own_dir or len(_worker_pids(metrics_dir)) >= 2:
                break
        if own_dir:
            assert len(_worker_pids(metrics_dir)) == 2, "one worker served every request"
        scrapes = [_served(server.base_url) for _ in range(6)]
    assert scrapes == [sent] * 6, f"{sent} requests sent; the scrapes counted {scrapes}"
    if not own_dir:
        assert not os.listdir(metrics_dir)  # the server made and removed a directory of its own
