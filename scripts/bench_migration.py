"""Benchmark (not a test): migrate a generated legacy loads.db of 1,000,000 negotiation rows.

Generates the legacy file once, then migrates a fresh copy of it ``--runs`` times with
``scripts/migrate_add_session_id.sh --json`` and prints, per run and as medians: backup time,
upgrade time, verify time, wall time of the whole script and the peak resident memory of the
migration process (from ``wait4``). Targets: whole run < 30 s, memory < 200 MB.

    .venv/bin/python scripts/bench_migration.py [--rows 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.legacy import create_legacy_db  # noqa: E402

TARGET_SECONDS = 30.0
TARGET_MB = 200.0


def migrate(path: Path) -> dict[str, Any]:
    """Run the migration script on ``path``; its report plus wall time and peak RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(ROOT / "scripts/migrate_add_session_id.sh"), str(path), "--json"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"migration failed with status {proc.returncode}")
    report: dict[str, Any] = json.loads(out)
    report["wall"] = time.perf_counter() - started
    report["peak_mb"] = usage.ru_maxrss / 1024  # kilobytes on Linux
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "legacy.db"
        started = time.perf_counter()
        counts = create_legacy_db(source, negotiations=args.rows)
        size = source.stat().st_size / 1e6
        print(f"generated {counts} ({size:.0f} MB) in {time.perf_counter() - started:.1f} s")
        runs = []
        for n in range(1, args.runs + 1):
            target = Path(tmp) / f"run{n}" / "loads.db"
            target.parent.mkdir()
            shutil.copyfile(source, target)
            report = migrate(target)
            assert report["rows"]["negotiations"] == args.rows
            s = report["seconds"]
            print(
                f"run {n}: backup {s['backup']:.2f} s, upgrade {s['upgrade']:.2f} s, "
                f"verify {s['verify']:.2f} s, script wall {report['wall']:.2f} s, "
                f"peak {report['peak_mb']:.0f} MB"
            )
            runs.append(report)
            shutil.rmtree(target.parent)

    def median(get: Any) -> float:
        return statistics.median(get(r) for r in runs)

    wall, peak = median(lambda r: r["wall"]), median(lambda r: r["peak_mb"])
    print(
        f"median of {len(runs)}: backup {median(lambda r: r['seconds']['backup']):.2f} s, "
        f"upgrade {median(lambda r: r['seconds']['upgrade']):.2f} s, "
        f"verify {median(lambda r: r['seconds']['verify']):.2f} s, "
        f"whole run {wall:.2f} s (target < {TARGET_SECONDS:.0f} s), "
        f"peak memory {peak:.0f} MB (target < {TARGET_MB:.0f} MB)"
    )
    ok = wall < TARGET_SECONDS and peak < TARGET_MB
    print("targets met" if ok else "TARGETS MISSED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
