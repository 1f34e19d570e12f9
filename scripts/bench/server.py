"""The service under test: ``negotiation serve`` in a subprocess; its memory read from /proc."""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PORTS = range(8100, 8200)
HERE = Path(__file__).resolve().parent


def free_port() -> int:
    """A port in 8100-8199 that nothing listens on, looked for from a random one: benchmarks
    started at once (test workers, other checkouts) would otherwise all pick 8100, and all but
    one server fail to bind while the load of each goes to the one that did."""
    start = random.randrange(len(PORTS))
    ports: list[int] = [*PORTS[start:], *PORTS[:start]]
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 8100-8199")


def _status_kb(pid: int, field_name: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _stat(pid: int | str) -> tuple[str, list[str]] | None:
    """The command name and the fields after it in ``/proc/<pid>/stat``; None once it exited."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    name, rest = text.split("(", 1)[1].rsplit(")", 1)
    return name, rest.split()


def _cpu_ticks(fields: list[str]) -> int:
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the line)


def _processes() -> Iterator[tuple[int, str, list[str]]]:
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(entry)) is not None:
            yield int(entry), *stat


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (uvicorn's workers when it runs more than one)."""
    parents: dict[int, list[int]] = {}
    for child, _name, fields in _processes():
        parents.setdefault(int(fields[1]), []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def machine_cpu_seconds() -> float:
    """CPU time every core of this machine has spent busy so far (``/proc/stat``)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float | None:
    """User + system CPU time of every ``postgres`` process on this machine so far; None when
    there is none (the server runs elsewhere).

    Backends of the service's pool live through a run, so the difference over a run is what
    the database server spent on it (plus any other client's work: run it on a quiet server).
    """
    ticks = [_cpu_ticks(fields) for _, name, fields in _processes() if name == "postgres"]
    return sum(ticks) / os.sysconf("SC_CLK_TCK") if ticks else None


@dataclass
class MemorySampler:
    """Samples VmRSS of the server and its workers every ``interval`` seconds."""

    pid: int
    interval: float = 0.1
    samples: list[tuple[float, dict[int, int]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def processes(self) -> list[int]:
        return [self.pid, *_children(self.pid)]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pids = self.processes()
        next_scan = time.monotonic() + 1
        while not self._stop.is_set():
            if time.monotonic() > next_scan:  # workers can be replaced; rescan now and then
                pids, next_scan = self.processes(), time.monotonic() + 1
            rss = {p: kb for p in pids if (kb := _status_kb(p, "VmRSS")) is not None}
            self.samples.append((time.monotonic(), rss))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def peak_mb(self, since: float, until: float) -> tuple[float, float]:
        """(largest single-process RSS, largest total RSS) sampled in [since, until], in MB."""
        window = [rss for t, rss in self.samples if since <= t <= until and rss]
        if not window:
            return 0.0, 0.0
        return (
            max(max(r.values()) for r in window) / 1024,
            max(sum(r.values()) for r in window) / 1024,
        )

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the server and its workers."""
        stats = (_stat(pid) for pid in self.processes())
        total = sum(_cpu_ticks(stat[1]) for stat in stats if stat is not None)
        return total / os.sysconf("SC_CLK_TCK")

    def high_water_mb(self) -> float:
        """The largest VmHWM (lifetime peak RSS) of any server process, in MB."""
        marks = [_status_kb(p, "VmHWM") or 0 for p in self.processes()]
        return max(marks, default=0) / 1024


@dataclass
class Server:
    base_url: str
    api_key: str
    process: subprocess.Popen[bytes]
    sampler: MemorySampler
    log_path: Path


def _wait_healthy(base_url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server did not answer {base_url}/health within {timeout:.0f} s")


@contextlib.contextmanager
def serve(
    database_url: str, *, workers: int, extra_env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Run ``negotiation serve`` with production settings until the block ends."""
    port = free_port()
    api_key = secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "NEGOTIATION_ENV": "production",
        "NEGOTIATION_API_KEYS": api_key,
        "NEGOTIATION_DATABASE_URL": database_url,
        "NEGOTIATION_HOST": "127.0.0.1",
        "NEGOTIATION_PORT": str(port),
        **(extra_env or {}),
    }
    command = [str(Path(sys.executable).with_name("negotiation")), "serve"]
    command += ["--workers", str(workers)]
    with run_server(command, env, port, api_key) as server:
        yield server


@contextlib.contextmanager
def serve_peer(database_url: str) -> Iterator[Server]:
    """Run the FastAPI peer (``peer/app.py``) under uvicorn, one worker, until the block ends."""
    port = free_port()
    api_key = secrets.token_urlsafe(24)
    env = {**os.environ, "PEER_DATABASE_URL": database_url, "PEER_API_KEY": api_key}
    command = [sys.executable, "-m", "uvicorn", "peer.app:app", "--app-dir", str(HERE)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with run_server(command, env, port, api_key) as server:
        yield server


@contextlib.contextmanager
def run_server(
    command: list[str], env: dict[str, str], port: int, api_key: str
) -> Iterator[Server]:
    """Start ``command`` (a server listening on ``port``), wait for ``/health``, sample it."""
    log = tempfile.NamedTemporaryFile(prefix="bench-server-", suffix=".log", delete=False)  # noqa: SIM115
    # The access log (one JSON line per request) goes to a file, as it would under a supervisor.
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    server = Server(base_url, api_key, process, MemorySampler(process.pid), Path(log.name))
    try:
        _wait_healthy(base_url, process, timeout=60)
        server.sampler.start()
        yield server
    except BaseException:
        tail = Path(log.name).read_text(errors="replace").splitlines()[-20:]
        print("server log (last lines):\n  " + "\n  ".join(tail), file=sys.stderr)
        raise
    finally:
        server.sampler.stop()
        _stop(process)
        log.close()
        Path(log.name).unlink(missing_ok=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (uvicorn stops its workers), then SIGKILL whatever of ours is still running."""
    workers = {pid: _start_time(pid) for pid in _children(process.pid)}
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for pid, started in workers.items():
        if started is not None and _start_time(pid) == started:  # still ours, not a reused pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
