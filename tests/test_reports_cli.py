"""``negotiation report …`` and ``negotiation export rounds`` run as subprocesses, every format."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import select
import subprocess
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from negotiation.settings import Settings
from tests import reportdata
from tests.clirun import CLI, cli_env, run_cli
from tests.reportdata import S1

pytestmark = pytest.mark.slow


@pytest.fixture
async def env(settings: Settings, database_url: str) -> dict[str, str]:
    await reportdata.build(settings)
    return cli_env(database_url)


def _without_generated_at(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "generated_at"}


def _self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert '<html lang="en">' in page
    assert "<style>" in page and "<svg" not in page.split("<body>")[0]
    # Nothing to fetch: no scripts, stylesheets, images or fonts from anywhere.
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\(|\bsrc=", page)
    assert re.findall(r"https?://[^\s\"'<>]+", page) in ([], ["http://www.w3.org/2000/svg"])


async def test_report_session_every_format(
    env: dict[str, str], client: AsyncTestClient[Litestar], tmp_path: Path
) -> None:
    md = run_cli("report", "session", S1, env=env)
    assert md.code == 0, md.stderr
    assert md.stdout.startswith(f"# Session {S1}\n")
    assert "| Outcome | accepted |" in md.stdout
    assert "| vs loadboard rate | +$190.00 (+9.50%) against $2,000.00 |" in md.stdout
    assert (
        "| 1 | 1 | 1 | 2026-03-01 10:00:00 UTC | — | $2,500.00 | standard v1 | $2,066.66 "
        "| $2,200.00 | counter | $2,066.00 | — | +$66.00 |" in md.stdout
    )
    assert "| legacy | — | $2,200.00 | none (legacy) |" in md.stdout
    # User text cannot inject markup or break the table.
    assert "&lt;script&gt;alert('x')&lt;/script&gt; \\| carrier said so" in md.stdout
    assert "<script>" not in md.stdout

    out = run_cli("report", "session", S1, "--format", "csv", env=env)
    assert out.code == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [(r["round_number"], r["carrier_offer"], r["decision"]) for r in rows] == [
        ("1", "2500.00", "counter"),
        ("2", "2150.00", "counter"),
        ("3", "2190.00", "accept"),
        ("1", "", ""),
        ("2", "2300.00", ""),
    ]
    assert [r["concession"] for r in rows] == ["66.00", "67.00", "57.00", "", ""]
    assert [(r["profile"], r["profile_version"], r["round_limit"]) for r in rows] == [
        ("standard", "1", "2066.66"),
        ("standard", "1", "2133.33"),
        ("standard", "1", "2200.00"),
        ("legacy", "", ""),
        ("legacy", "", ""),
    ]
    assert rows[0]["notes"] == reportdata.NOTE
    assert rows[1]["seconds_since_previous"] == "40.0"

    target = tmp_path / "s1.json"
    out = run_cli("report", "session", S1, "-f", "json", "-o", str(target), env=env)
    assert (out.code, out.stdout) == (0, "")
    api = (await client.get(f"/api/reports/sessions/{S1}")).json()
    assert _without_generated_at(json.loads(target.read_text())) == _without_generated_at(api)

    target = tmp_path / "s1.html"
    out = run_cli("report", "session", S1, "--format", "html", "--output", str(target), env=env)
    assert out.code == 0, out.stderr
    page = target.read_text()
    _self_contained(page)
    assert page.count('<tr class="round"') == 5
    assert page.count('class="point offer"') == 3  # 2500, 2150 and the legacy 2300
    assert page.count('class="point counter"') == 2
    assert page.count('class="point agreed"') == 1
    assert 'class="loadboard"' in page and 'class="ceiling"' in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "<script>" not in page


async def test_report_summary_every_format(
    env: dict[str, str], client: AsyncTestClient[Litestar], tmp_path: Path
) -> None:
    md = run_cli("report", "summary", env=env)
    assert md.code == 0, md.stderr
    assert md.stdout.startswith("# Negotiation summary\n")
    for line in (
        "| Period | all rounds |",
        "| Rounds | 12 (10 with an offer, 2 without; 4 without a decision) |",
        "| Acceptance rate | 50.00% |",
        "| First-offer acceptance rate | 25.00% |",
        "| Average agreed rate | $1,820.00 |",
        "| Average over loadboard | +$70.00 (+4.00%) |",
        "| 1 | 7 | 1 | 3 | 0 | 3 |",
        "| undecided | 2 |",
    ):
        assert line in md.stdout

    filters = ["--since", "2026-03-02", "--carrier-mc-number", "MC200"]
    out = run_cli("report", "summary", *filters, "--format", "csv", env=env)
    assert out.code == 0, out.stderr
    rows = {(r["section"], r["key"]): r["value"] for r in csv.DictReader(io.StringIO(out.stdout))}
    assert rows[("filters", "since")] == "2026-03-02T00:00:00Z"
    assert rows[("totals", "rounds")] == "5"
    assert rows[("totals", "acceptance_rate")] == "0.3333"
    assert rows[("negotiation_outcomes", "rejected")] == "1"

    out = run_cli("report", "summary", *filters, "--format", "json", env=env)
    assert out.code == 0, out.stderr
    api = await client.get(
        "/api/reports/summary",
        params={"since": "2026-03-02T00:00:00Z", "carrier_mc_number": "MC200"},
    )
    assert _without_generated_at(json.loads(out.stdout)) == _without_generated_at(api.json())

    target = tmp_path / "summary.html"
    out = run_cli("report", "summary", "-f", "html", "-o", str(target), env=env)
    assert out.code == 0, out.stderr
    page = target.read_text()
    _self_contained(page)
    assert "<dt>Acceptance rate</dt><dd>50.00%</dd>" in page


def test_export_rounds_csv_and_ndjson(env: dict[str, str], tmp_path: Path) -> None:
    out = run_cli("export", "rounds", env=env)
    assert out.code == 0, out.stderr
    assert out.stderr == ""  # piped: no progress bar, no chatter
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == 12
    assert [int(r["id"]) for r in rows] == sorted(int(r["id"]) for r in rows)
    accepted = [r for r in rows if r["decision"] == "accept"]
    assert sorted(r["agreed_rate"] for r in accepted) == ["1450.00", "2190.00"]

    target = tmp_path / "rounds.ndjson"
    out = run_cli(
        "export", "rounds", "--format", "ndjson", "--since", "2026-03-02T00:00:00Z",
        "-o", str(target), env=env,
    )  # fmt: skip
    assert (out.code, out.stdout) == (0, "")
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(lines) == 5
    first, accepted_s2 = lines[0], lines[1]
    assert first["carrier_offer"] == 1700.0 and isinstance(first["carrier_offer"], float)
    assert (first["session_id"], first["decision"]) == (None, "counter")
    assert accepted_s2["carrier_offer"] == 1450.0
    assert (accepted_s2["session_id"], accepted_s2["decision"], accepted_s2["load_id"]) == (
        reportdata.S2,
        "accept",
        "LD-B",
    )
    assert accepted_s2["timestamp"] == "2026-03-02T09:00:00Z"

    out = run_cli("export", "rounds", "--until", "2026-01-01", "-f", "ndjson", env=env)
    legacy = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(x["carrier_offer"], x["decision"]) for x in legacy] == [(None, None), (2250.0, None)]


def test_export_progress_bar_only_on_a_terminal(env: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "rounds.csv"
    primary, secondary = pty.openpty()
    env = env | {"TERM": "xterm-256color", "COLUMNS": "100"}
    with subprocess.Popen(
        [CLI, "export", "rounds", "-o", str(target)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=secondary,
    ) as process:
        os.close(secondary)
        shown = b""
        while True:
            ready, _, _ = select.select([primary], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            shown += chunk
        assert process.wait(timeout=60) == 0
    os.close(primary)
    screen = shown.decode(errors="replace")
    assert "Exporting rounds" in screen
    assert "12/12" in screen
    assert "12 rounds exported to" in screen
    assert len(target.read_text().splitlines()) == 13


def test_cli_errors(env: dict[str, str], tmp_path: Path) -> None:
    out = run_cli("report", "session", "sess_unknown", env=env)
    assert (out.code, out.stdout, out.stderr) == (1, "", "error: session sess_unknown not found\n")
    target = tmp_path / "never.md"
    out = run_cli("report", "session", "sess_unknown", "-o", str(target), env=env)
    assert out.code == 1 and not target.exists()
    for args in (
        ("report", "session", "bad id!"),
        ("report", "session"),
        ("report", "summary", "--since", "last tuesday"),
        ("report", "summary", "--since", "2026-03-02", "--until", "2026-03-01"),
        ("report", "summary", "--format", "pdf"),
        ("export", "rounds", "--format", "xlsx"),
        ("export", "nothing"),
        ("report", "session", S1, "--bogus"),
    ):
        out = run_cli(*args, env=env)
        assert out.code == 2, (args, out.stderr)
        assert out.stdout == ""


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///{tmp}/missing.db",
        "postgresql://postgres@127.0.0.1:1/nothing_listens_here",
        "mysql://localhost/db",
    ],
)
def test_cli_unreachable_database(url: str, tmp_path: Path) -> None:
    env = cli_env(url.format(tmp=tmp_path))
    for args in (
        ("report", "session", S1),
        ("report", "summary"),
        ("export", "rounds", "-o", str(tmp_path / "x.csv")),
    ):
        out = run_cli(*args, env=env)
        assert out.code == 1, (args, out.stderr)
        assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr
        assert out.stdout == ""
    assert not (tmp_path / "missing.db").exists()
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize(
    "command",
    [(), ("report",), ("report", "session"), ("report", "summary"), ("export",),
     ("export", "rounds"), ("serve",)],
)  # fmt: skip
def test_help_on_every_command(command: tuple[str, ...], tmp_path: Path) -> None:
    out = run_cli(*command, "--help", env=cli_env(f"sqlite:///{tmp_path}/none.db"))
    assert out.code == 0, out.stderr
    assert "Usage: negotiation" in out.stdout
