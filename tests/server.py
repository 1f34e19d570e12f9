"""The real server as a subprocess: `negotiation serve` on a free port of this checkout's range."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

from tests.pgcluster import free_port

CLI = str(Path(sys.executable).parent / "negotiation")


class Server:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"


def server_env(**settings: str) -> dict[str, str]:
    """The environment minus any ``NEGOTIATION_*`` of the caller, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEGOTIATION_")}
    env.update({f"NEGOTIATION_{k.upper()}": v for k, v in settings.items()})
    env.setdefault("NEGOTIATION_LOG_LEVEL", "WARNING")
    return env


@contextmanager
def running_server(
    settings: Mapping[str, str],
    log: IO[bytes] | int = subprocess.DEVNULL,
    args: Sequence[str] = (),
) -> Iterator[Server]:
    """Start ``negotiation serve`` with ``settings`` (names without the prefix) until it answers.

    Output goes to ``log`` (default: discarded, which also keeps the server off regular files);
    ``args`` are more options of ``serve`` (``--workers 2``).
    """
    # Each xdist worker its own slice of the range: two workers that probed the same free port
    # at once started two servers on it, and the loser's requests reached the winner.
    # Each checkout its own range too: worktrees on one machine run their suites at once, and a
    # server that lost the race for a port left /health to another checkout's server.
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    checkout = zlib.crc32(str(Path(__file__).resolve().parent.parent).encode()) % 200
    first = 10000 + checkout * 100 + (worker % 10) * 10
    port = free_port(first, first + 9)
    # One worker unless asked: the default (one per CPU) would start several per test server.
    workers = [] if "--workers" in args or "workers" in settings else ["--workers", "1"]
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port), *workers, *args],
        env=server_env(**settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Server(process, port)
    try:
        wait_until_listening(server)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_listening(server: Server, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}")
        try:
            httpx.get(f"{server.base_url}/health", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(f"server on port {server.port} did not start in {seconds}s")
