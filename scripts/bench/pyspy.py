"""Where the server's time goes: py-spy samples of a worker under a scenario's load.

``scripts/bench/run --profile --repeat 1 --scenarios record,session`` runs them with py-spy
attached to the server (``pip install py-spy`` into .venv first), keeps the collapsed stacks
under ``bench-results/`` (open them in speedscope or flamegraph.pl) and prints the functions and
packages that hold the most samples. Profiled runs are slower; their figures are not reported.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")
_PACKAGES = (
    ("negotiation/", "negotiation"),
    ("sqlalchemy/", "sqlalchemy"),
    ("litestar/", "litestar"),
    ("pydantic", "pydantic"),
    ("msgspec", "msgspec"),
    ("uvicorn/", "uvicorn"),
    ("asyncpg/", "asyncpg"),
    ("/logging/", "logging"),
    ("/json/", "json"),
    ("/asyncio/", "asyncio"),
    ("/concurrent/", "thread pool"),
    ("/threading.py", "thread pool"),
    ("/sqlite3/", "sqlite3"),
)


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


def start(pid: int, duration: float, output: Path) -> subprocess.Popen[bytes]:
    """Sample ``pid`` (and its worker processes) for ``duration`` seconds into ``output``."""
    command = [py_spy(), "record", "--pid", str(pid), "--subprocesses", "--gil", "--rate", "100"]
    command += ["--duration", str(int(duration)), "--format", "raw", "--output", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _package(file: str) -> str:
    return next((name for marker, name in _PACKAGES if marker in file), "other")


def summarize(raw: Path, top: int = 18) -> str:
    """The functions (inclusive and self) and packages with the largest share of samples."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if _FRAME.match(f)]
        if not frames:
            continue
        total += count
        names = []
        for frame in frames:
            m = _FRAME.match(frame)
            assert m is not None
            short = "/".join(m["file"].split("/")[-2:])
            names.append((f"{m['func']} ({short})", _package(m["file"])))
        for name in {n for n, _ in names}:
            inclusive[name] += count
        own[names[-1][0]] += count
        # A sample counts for the innermost package that is not plain "other".
        leaf_package = next((p for _, p in reversed(names) if p != "other"), "other")
        packages[leaf_package] += count
    if not total:
        return "no samples"

    def table(counter: collections.Counter[str]) -> str:
        return "\n".join(
            f"  {100 * n / total:5.1f}%  {name}" for name, n in counter.most_common(top)
        )

    return (
        f"{total} samples\nby package (innermost frame that belongs to one):\n{table(packages)}\n"
        f"self time:\n{table(own)}\ninclusive time:\n{table(inclusive)}"
    )
