"""The benchmark harness (scripts/bench) runs end to end: one very short run of each scenario.

It starts the real server and drives it with wrk, so it is slow and needs the ``wrk`` binary:
the harness installs it with apt-get when missing. Where that is impossible the test skips with
the harness's reason, except under CI (``CI`` set), where it fails instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from negotiation.settings import default_workers
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
    tables = _markdown(report_path)
    assert tables.returncode == 0, tables.stderr
    for name in SCENARIOS:
        assert re.search(rf"^\| sqlite \| {name} \| [\d,]+ \| ", tables.stdout, re.M), name


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


def _markdown(*reports: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(BENCH), "--markdown", *map(str, reports)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)


def _run_bench(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(BENCH), "--rounds", "3000", "--duration", "1", "--repeat", "1"]
    command += ["--warmup", "0", "--connections", "8", *arguments]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if result.returncode == EXIT_NO_WRK and not os.environ.get("CI"):
        pytest.skip(f"the benchmark needs wrk: {result.stderr.strip()}")
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.slow
def test_peer_comparison_reports_both_sides_and_their_ratios(tmp_path: Path) -> None:
    report_path = tmp_path / "peer.json"
    result = _run_bench(
        "--peer", "--sqlite-path", str(tmp_path / "bench.db"), "--json", str(report_path)
    )
    report = json.loads(report_path.read_text())
    # ./scripts/serve's defaults: as many workers as negotiation serve starts unless told.
    assert report["kind"] == "peer" and report["settings"]["workers"] == default_workers()
    for side in ("service", "peer"):
        assert set(report["runs"][side]) == {"record", "overlap", "session"}, side
        for name, (run,) in report["runs"][side].items():
            assert run["requests"] > 0 and run["rps"] > 0, (side, name)
            if name != "session":
                assert run["rounds_stored"] > 0 and run["rounds_per_s"] > 0, (side, name)
    service = report["median"]["service"]
    assert all(m["errors"] == 0 and m["duplicated_rounds"] == 0 for m in service.values())
    assert report["checks"]["service"]["duplicated_round_numbers"] == 0
    assert all(r["throughput"] and r["throughput"] > 0 for r in report["ratios"].values())
    assert "Targets (issue 22)" in result.stdout and "[peer   ] overlap" in result.stdout
    refused = _markdown(report_path)  # its summary is printed by the run
    assert refused.returncode == 2 and "a 'peer' report" in refused.stderr, refused.stderr


@pytest.mark.slow
def test_inprocess_baseline_answers_the_same_json(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "scripts.bench.inprocess", "--scenario", "session"]
    command += ["--baseline", "--requests", "30", "--runs", "1", "--rounds", "600"]
    command += ["--db-url", f"sqlite:///{tmp_path / 'inprocess.db'}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no-DB handler run 1: " in result.stdout and "statuses {200: 30}" in result.stdout
    assert "the same JSON (identical bytes)" in result.stdout, result.stdout
    ratio = result.stdout.splitlines()[-1]
    assert ratio.startswith("session / no-DB handler: ") and float(ratio.split()[4][:-1]) > 0


@pytest.mark.slow
def test_inprocess_takes_parts_away_and_still_answers(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "scripts.bench.inprocess", "--scenario", "call"]
    command += ["--without", "access-line,metrics,statement,read-unit", "--baseline"]
    command += ["--requests", "30", "--runs", "2", "--rounds", "600"]
    command += ["--db-url", f"sqlite:///{tmp_path / 'inprocess.db'}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for part in ("access-line", "metrics", "statement", "read-unit"):
        assert f"without {part}: " in result.stdout, result.stdout
    assert result.stdout.count("call run ") == 2 and "statuses {200: 30}" in result.stdout
    refused = [sys.executable, "-m", "scripts.bench.inprocess", "--scenario", "record"]
    refused += ["--without", "metrics"]
    result = subprocess.run(refused, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--without takes" in result.stderr, result.stderr


@pytest.mark.slow
@pytest.mark.postgres
def test_pgbench_comparison_runs_the_captured_round(postgres_url: str, tmp_path: Path) -> None:
    if shutil.which("pgbench") is None and not os.environ.get("CI"):
        pytest.skip("pgbench is not installed (PostgreSQL's packages)")
    server = dbutil.postgres_server_url()
    assert server is not None
    base = make_url(server).set(database=dbutil.database_name("bench")).render_as_string(False)
    report_path = tmp_path / "pgbench.json"
    try:
        result = _run_bench("--pgbench", "--postgres-url", base, "--json", str(report_path))
    finally:
        dbutil.drop_postgres_database(server, dbutil.database_name("bench") + "_pgbench")
    report = json.loads(report_path.read_text())
    for side in ("service", "pgbench"):
        (run,) = report["runs"][side]
        assert run["rounds_stored"] > 0 and run["rounds_per_s"] > 0, (side, run)
    (pgbench,) = report["runs"]["pgbench"]
    # Every pgbench transaction recorded its round: the captured write's guards held.
    assert pgbench["failed"] == 0 and pgbench["rounds_stored"] == pgbench["transactions"]
    assert report["duplicated_round_numbers"] == 0 and report["ratio"] > 0
    assert "\\gset ctx_" in report["script"] and "service / pgbench" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_scaling_study_times_plans_and_serves_each_size(kind: str, tmp_path: Path) -> None:
    report_path = tmp_path / "scaling.json"
    sizes = ["--sizes", "600,1200", "--json", str(report_path), "--db", kind]
    if kind == "sqlite":
        result = _run_bench("--scaling", *sizes, "--sqlite-path", str(tmp_path / "scale.db"))
    else:
        server = dbutil.postgres_server_url()
        assert server is not None
        name = dbutil.database_name("bench")
        base = make_url(server).set(database=name).render_as_string(False)
        try:
            result = _run_bench("--scaling", *sizes, "--postgres-url", base)
        finally:
            dbutil.drop_postgres_database(server, name + "_scale")
    report = json.loads(report_path.read_text())
    assert [(e["database"], e["rounds"]) for e in report["results"]] == [(kind, 600), (kind, 1200)]
    for entry in report["results"]:
        for name in ("session", "call", "query"):
            http, queries = entry["http"][name], entry["queries"][name]
            assert http["errors"] == 0 and http["p50_ms"] > 0, (name, http)
            assert queries["in_process_p50_ms"] > 0 and queries["plans"], (name, queries)
        # A round's statements are planned on a call of its own (every seeded call has ended).
        assert entry["queries"]["record"]["plans"], entry["queries"]["record"]
    assert "EXPLAIN plans" in result.stdout
    tables = _markdown(report_path)
    assert tables.returncode == 0, tables.stderr
    assert re.search(rf"^\| {kind} \| 1,200 \| session \| [\d.]+ \| ", tables.stdout, re.M)


#: The other benchmarks, each at a small size; the line each database's run prints; how it is
#: given PostgreSQL: ``--postgres-url``, or NEGOTIATION_TEST_POSTGRES_URL, which it reads itself
#: (set in CI), or not at all (the migration's is of a legacy SQLite loads.db).
OTHER_BENCHMARKS = {
    "session_stats": (
        ["-m", "scripts.bench.session_stats", "--rounds", "2000"],
        r"^\w+ +stats\(3 rounds\) +[\d.]+ ms \| stats\(2000 rounds\) +[\d.]+ ms \| list 100",
        "env",
    ),
    "idempotency": (
        ["-m", "scripts.bench.idempotency", "--requests", "60"],
        r"^  replay of a stored key +\d+ req/s ",
        "env",
    ),
    "reports": (
        ["scripts/bench_reports.py", "--rows", "2000"],
        r'^\{"rows": 2000, "database": "\w+", .*"export_peak_rss_mib": [\d.]+\}$',
        "--postgres-url",
    ),
    "mcp": (
        ["scripts/bench_mcp.py", "--rounds", "60", "--clients", "4", "--repeat", "1"],
        r"^  MCP/HTTP: [\d.]+x server CPU per round",
        "--postgres-url",
    ),
    "migration": (
        ["scripts/bench_migration.py", "--rows", "5000", "--runs", "1"],
        r"^median of 1: backup [\d.]+ s, upgrade [\d.]+ s",
        None,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(OTHER_BENCHMARKS))
def test_other_benchmarks_run(name: str) -> None:
    arguments, line, postgres = OTHER_BENCHMARKS[name]
    server = dbutil.postgres_server_url() if postgres else None
    if server and postgres == "--postgres-url":
        arguments = [*arguments, postgres, server]
    result = subprocess.run(
        [sys.executable, *arguments], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    runs = 2 if server else 1
    assert len(re.findall(line, result.stdout, re.MULTILINE)) == runs, result.stdout


@pytest.mark.slow
@pytest.mark.postgres
def test_migration_writers_benchmark_runs(postgres_url: str) -> None:
    command = [sys.executable, str(ROOT / "scripts" / "bench_migration_writers.py")]
    command += ["--rows", "20000", "--database", dbutil.database_name("bench_mig_writers")]
    env = {**os.environ, dbutil.POSTGRES_URL_ENV: postgres_url}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^rows 20,000, writers 4: migration [\d.]+ s$", result.stdout, re.M)
    assert re.search(r"^inserts during it [\d,]+: median .* max [\d.]+ ms", result.stdout, re.M)
