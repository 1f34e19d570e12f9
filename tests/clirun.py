"""Run the installed ``negotiation`` command as a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CLI = str(Path(sys.executable).with_name("negotiation"))


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str
    #: Peak resident set size of the process, in KiB (from ``wait4``).
    max_rss_kib: int
    #: CPU time the process used, user + system, in seconds (from ``wait4``).
    cpu_seconds: float = 0.0


def cli_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEGOTIATION_")}
    env.update({"NEGOTIATION_DATABASE_URL": database_url, "COLUMNS": "100", **extra})
    return env


#: Runs the command and writes its peak RSS to a file. A child's ``ru_maxrss`` includes what
#: its parent occupied when it forked (vfork shares the parent's memory until exec), so the
#: command is forked from this small interpreter rather than from the large test process.
_MEASURE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}")
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_cli(*args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 300) -> Run:
    """``negotiation *args``; stdout and stderr captured, peak memory measured."""
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = Path(tmp) / "rss"
        process = subprocess.run(
            [sys.executable, "-S", "-c", _MEASURE, str(rss_file), CLI, *args],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        rss, cpu = rss_file.read_text().split() if rss_file.exists() else ("0", "0")
    return Run(process.returncode, process.stdout, process.stderr, int(rss), float(cpu))
