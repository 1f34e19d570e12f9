"""A throwaway PostgreSQL cluster a test may stop and start (never the shared one on 5432).

``initdb`` into a temporary directory, served on a free port of 127.0.0.1 by ``pg_ctl``. As
root (CI, the dev machines) the server runs as the ``postgres`` user, as PostgreSQL requires.

``./scripts/test`` uses it from the command line to give the suite a PostgreSQL when
``NEGOTIATION_TEST_POSTGRES_URL`` is not set: ``python -m tests.pgcluster check`` (exit 1 with the
reason when no cluster can be made), ``start`` (prints the directory and the URL), ``stop DIR``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def free_port(start: int = 0, end: int = 0) -> int:
    """A port on 127.0.0.1 that nothing listens on (any, or the first free in ``start..end``)."""
    for port in range(start, end + 1) if start else [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            bound: int = s.getsockname()[1]
            return bound
    raise RuntimeError(f"no free port in {start}-{end}")


def unavailable_reason() -> str | None:
    """Why a throwaway cluster cannot be made here, or None."""
    if not (_binary("initdb") and _binary("pg_ctl")):
        return "initdb/pg_ctl not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server"
    return None


class ThrowawayCluster:
    """``with ThrowawayCluster() as pg: pg.url; pg.stop(); pg.start()``."""

    def __init__(self, directory: Path | None = None) -> None:
        self.port = free_port()
        self.dir = directory or Path(tempfile.mkdtemp(prefix="negotiation-pg-"))
        self.data = self.dir / "data"
        self._user: list[str] = []
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            self._user = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._user, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        initdb = _binary("initdb")
        assert initdb is not None
        self._run(
            initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync", "--no-instructions",
        )  # fmt: skip

    def start(self) -> None:
        pg_ctl = _binary("pg_ctl")
        assert pg_ctl is not None
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        )
        self._run(pg_ctl, "-D", str(self.data), "-l", str(self.dir / "log"), "-o", options, "-w",
                  "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        pg_ctl = _binary("pg_ctl")
        assert pg_ctl is not None
        self._run(pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop")

    def __enter__(self) -> ThrowawayCluster:
        self.init()
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already stopped
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def main(argv: list[str]) -> int:
    """``check`` | ``start`` (prints ``DIR URL``) | ``stop DIR``: see the module docstring."""
    command = argv[0] if argv else ""
    if command == "check":
        reason = unavailable_reason()
        print(reason or "ok")
        return 1 if reason else 0
    if command == "start":
        cluster = ThrowawayCluster()
        cluster.init()
        cluster.start()
        print(cluster.dir, cluster.url)
        return 0
    if command == "stop" and len(argv) == 2:
        cluster = ThrowawayCluster(Path(argv[1]))
        try:
            cluster.stop("immediate")
        finally:
            shutil.rmtree(cluster.dir, ignore_errors=True)
        return 0
    print("usage: python -m tests.pgcluster check | start | stop DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
