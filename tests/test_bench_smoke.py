"""The benchmark harness (scripts/bench) runs end to end: one very short run of each scenario.

It starts the real server and drives it with wrk, so it is slow and needs the ``wrk`` binary:
the harness installs it with apt-get when missing. Where that is impossible the test skips with
the harness's reason, except under CI (``CI`` set), where it fails instead.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import dbutil

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "scripts" / "bench" / "bench.py"
EXIT_NO_WRK = 3  # bench.EXIT_NO_WRK
SCENARIOS = ("record", "session", "call", "query", "mix")


@pytest.mark.slow
def test_every_scenario_reports_figures_and_no_errors(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    command = [sys.executable, str(BENCH), "--db", "sqlite", "--rounds", "3000"]
    command += ["--duration", "1", "--repeat", "1", "--warmup", "0", "--connections", "8"]
    command += ["--sqlite-path", str(tmp_path / "bench.db"), "--json", str(report_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if result.returncode == EXIT_NO_WRK and not os.environ.get("CI"):
        pytest.skip(f"the benchmark needs wrk: {result.stderr.strip()}")
    assert result.returncode == 0, result.stdout + result.stderr

    report = json.loads(report_path.read_text())
    (sqlite,) = report["databases"]
    assert set(sqlite["runs"]) == set(SCENARIOS)
    for name, (run,) in sqlite["runs"].items():
        assert run["requests"] > 0, name
        assert run["rps"] > 0, name
        assert 0 < run["p50_ms"] <= run["p99_ms"], name
        assert run["errors"] == 0, (name, run)
        assert run["rss_mb"] > 0, name
        assert run["cpu_ms_per_request"] > 0 and run["machine_cpu_ms_per_request"] > 0, run
        assert run["db_cpu_ms_per_request"] is None, (name, run)  # SQLite runs in the server
    # Every recorded round is stored once, numbered within the policy's limit.
    assert sqlite["checks"]["rounds_recorded"] >= sqlite["runs"]["record"][0]["requests"]
    assert sqlite["checks"]["duplicated_round_numbers"] == 0
    assert sqlite["checks"]["rounds_past_limit"] == 0
    assert "record" in result.stdout and "req/s" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["session", "call", "record"])
def test_inprocess_driver_reports_cpu_per_request(tmp_path: Path, scenario: str) -> None:
    command = [sys.executable, "-m", "scripts.bench.inprocess", "--scenario", scenario]
    command += ["--requests", "30", "--runs", "2", "--rounds", "600"]
    command += ["--db-url", f"sqlite:///{tmp_path / 'inprocess.db'}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    success = 201 if scenario == "record" else 200
    assert result.stdout.count(f"statuses {{{success}: 30}}") == 2, result.stdout
    median = result.stdout.splitlines()[-1]
    assert median.startswith(f"{scenario}: median ") and float(median.split()[2]) > 0, median


@pytest.mark.slow
@pytest.mark.postgres
def test_copy_benchmark_runs(postgres_url: str) -> None:
    command = [sys.executable, str(ROOT / "scripts" / "bench_copy.py"), "--rounds", "3000"]
    command += ["--target-db", dbutil.database_name("bench_copy")]
    env = {**os.environ, dbutil.POSTGRES_URL_ENV: postgres_url}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^negotiations +3,000 ", result.stdout, re.MULTILINE), result.stdout
    assert "run 1: " in result.stdout and "peak" in result.stdout
