"""Load from a separate process: ``wrk`` with the Lua scripts beside this file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


class WrkMissing(RuntimeError):
    """wrk is not installed and could not be installed."""


def ensure_wrk(*, install: bool = True) -> str:
    """The path of ``wrk``, installing Debian's package with apt-get when it is missing."""
    found = shutil.which("wrk")
    if found or not install:
        if found:
            return found
        raise WrkMissing("wrk is not installed (Debian package 'wrk')")
    apt = shutil.which("apt-get")
    if apt is None:
        raise WrkMissing("wrk is not installed and there is no apt-get to install it")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "wrk"]):
        result = subprocess.run([*sudo, *command], env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise WrkMissing(
                f"wrk is not installed and '{' '.join(command)}' failed: "
                f"{(result.stderr or result.stdout).strip()[-300:]}"
            )
    found = shutil.which("wrk")
    if found is None:
        raise WrkMissing("apt-get installed the 'wrk' package but no wrk is on PATH")
    return found


def wrk_version(wrk: str) -> str:
    result = subprocess.run([wrk, "--version"], capture_output=True, text=True)
    return (result.stdout or result.stderr).splitlines()[0].strip() if result else "?"


@dataclass
class LoadResult:
    """What one wrk run measured (latencies in milliseconds)."""

    requests: int
    seconds: float
    rps: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    status_errors: int
    socket_errors: int

    @property
    def errors(self) -> int:
        return self.status_errors + self.socket_errors

    def as_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "errors": self.errors}


def run_wrk(
    wrk: str,
    base_url: str,
    script: str,
    args: list[str],
    *,
    api_key: str,
    connections: int,
    duration: float,
    threads: int = 2,
) -> LoadResult:
    """Run ``wrk`` with ``script`` (a file here) and return the summary its ``done()`` printed."""
    command = [
        wrk,
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(duration, 1):.0f}s",
        "--timeout",
        "5s",
        "-s",
        str(HERE / script),
        base_url,
        "--",
        *args,
    ]
    env = {**os.environ, "BENCH_API_KEY": api_key, "BENCH_LUA_DIR": str(HERE)}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=duration + 60)
    line = next((s for s in result.stdout.splitlines() if s.startswith("BENCH_JSON ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stdout}{result.stderr}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = raw["duration_us"] / 1e6
    return LoadResult(
        requests=raw["requests"],
        seconds=round(seconds, 2),
        rps=round(raw["requests"] / seconds, 1) if seconds else 0.0,
        mean_ms=round(raw["mean_us"] / 1000, 2),
        p50_ms=round(raw["p50_us"] / 1000, 2),
        p90_ms=round(raw["p90_us"] / 1000, 2),
        p99_ms=round(raw["p99_us"] / 1000, 2),
        max_ms=round(raw["max_us"] / 1000, 2),
        status_errors=raw["status_errors"],
        socket_errors=sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors"))
        + raw["timeouts"],
    )
