"""``negotiation --help`` and every command's help read as plain text (no reST markup)."""

from __future__ import annotations

import os
import subprocess

import pytest

from negotiation.settings import MAX_DEFAULT_WORKERS, default_workers
from tests.clirun import CLI, cli_env

COMMANDS = [
    [],
    ["serve"],
    ["report"],
    ["report", "session"],
    ["report", "summary"],
    ["export"],
    ["export", "rounds"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "negotiation")
def test_help_is_plain_text(command: list[str]) -> None:
    result = subprocess.run(
        [CLI, *command, "--help"],
        capture_output=True,
        text=True,
        env=cli_env("sqlite:///unused.db"),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: negotiation" in result.stdout
    for markup in ("``", ":func:", ":class:", ":mod:"):
        assert markup not in result.stdout, f"{markup} in: {result.stdout}"


def test_serve_help_tells_how_to_run_in_production() -> None:
    result = subprocess.run(
        [CLI, "serve", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert "--workers" in result.stdout and "one worker per CPU core" in result.stdout


@pytest.mark.parametrize(("cpus", "workers"), [(1, 1), (2, 2), (4, 4), (64, MAX_DEFAULT_WORKERS)])
def test_serve_runs_one_worker_per_cpu_up_to_the_cap(
    cpus: int, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cpus)), raising=False)
    assert default_workers() == workers
