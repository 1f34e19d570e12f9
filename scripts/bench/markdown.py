"""Markdown tables from the JSON reports, for docs/PERFORMANCE.md.

``scripts/bench/run --markdown bench-results/bench-….json [bench-results/scaling-….json]``
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def machine_line(m: dict[str, Any]) -> str:
    p = m["packages"]
    pg = f", PostgreSQL {m['postgresql'].split()[0]}" if m.get("postgresql") else ""
    return (
        f"{m['date']}, commit `{m['commit']}`: {m['nproc']} CPU ({m['cpu']}), "
        f"{m['memory_gb']} GB, Linux {m['kernel']}; Python {m['python']}, SQLite {m['sqlite']}"
        f"{pg}; litestar {p['litestar']}, uvicorn {p['uvicorn']}, uvloop {p['uvloop']}, "
        f"httptools {p['httptools']}, SQLAlchemy {p['sqlalchemy']}, asyncpg {p['asyncpg']}; "
        f"{m['wrk'].split(' Copyright')[0]}; load average at start {m['load_average_at_start']}"
    )


def _ms(value: float | None) -> str:
    """A CPU figure; "-" where a report has none (older reports, or SQLite's database CPU)."""
    return "-" if value is None or value != value else f"{value:.2f}"


def bench_tables(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        machine_line(report["machine"]),
        "",
        f"{s['connections']} connections, {s['duration']:.0f} s per run, median of "
        f"{s['repeat']} runs, {s['workers']} worker(s), {s['rounds']:,} seeded rounds"
        + (f", server settings {' '.join(s['env'])}" if s.get("env") else ""),
        "",
        "| database | scenario | req/s | p50 ms | p99 ms | errors | peak RSS MB "
        "| server CPU ms/req | machine CPU ms/req | PostgreSQL CPU ms/req |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for db in report["databases"]:
        for name, m in db["median"].items():
            lines.append(
                f"| {db['database']} | {name} | {m['rps']:,.0f} | {m['p50_ms']:.1f} | "
                f"{m['p99_ms']:.1f} | {m['errors']} | {m['rss_mb']:.0f} | "
                f"{_ms(m.get('cpu_ms_per_request'))} | "
                f"{_ms(m.get('machine_cpu_ms_per_request'))} | "
                f"{_ms(m.get('db_cpu_ms_per_request'))} |"
            )
    lines.append("")
    for db in report["databases"]:
        c = db["checks"]
        lines.append(
            f"- {db['database']}: {c['rounds_recorded']:,} rounds recorded, "
            f"{c['duplicated_round_numbers']} duplicated round numbers, "
            f"{c['rounds_past_limit']} past the round limit."
        )
    return "\n".join(lines)


def scaling_tables(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        machine_line(report["machine"]),
        "",
        f"One connection, median of {s['repeat']} runs of {s['duration']:.0f} s per read; "
        "'queries' is the query functions alone, in-process (median of 300 calls).",
        "",
        "| database | rounds | read | p50 ms | p99 ms | p50 vs smallest | queries ms "
        "| queries vs smallest |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    base: dict[tuple[str, str], tuple[float, float]] = {}
    for e in report["results"]:
        for name, http in e["http"].items():
            q = e["queries"][name]["in_process_p50_ms"]
            b = base.setdefault((e["database"], name), (http["p50_ms"], q))
            lines.append(
                f"| {e['database']} | {e['rounds']:,} | {name} | {http['p50_ms']:.2f} | "
                f"{http['p99_ms']:.2f} | {http['p50_ms'] / b[0]:.2f}x | {q:.3f} | "
                f"{q / b[1]:.2f}x |"
            )
    lines += [
        "",
        "Seeding: "
        + ", ".join(
            f"{e['database']} {e['rounds']:,} rounds {e['seed_seconds']} s"
            for e in report["results"]
        ),
    ]
    largest = {e["database"]: e for e in report["results"]}
    for kind, e in largest.items():
        lines += ["", f"EXPLAIN plans, {kind}, {e['rounds']:,} rounds:", "", "```"]
        for name, q in e["queries"].items():
            for plan in q["plans"]:
                lines.append(f"-- {name}: {' '.join(plan['sql'].split())}")
                lines += ["   " + line for line in plan["plan"]]
        lines.append("```")
    return "\n".join(lines)


RENDERERS = {"bench": bench_tables, "scaling": scaling_tables}


def render(paths: list[Path]) -> str:
    """The tables of each report; ValueError naming a report of another kind (``--peer`` and
    ``--pgbench`` print their summaries when they run)."""
    out = []
    for path in paths:
        report = json.loads(path.read_text())
        tables = RENDERERS.get(report.get("kind"))
        if tables is None:
            raise ValueError(
                f"{path}: a {report.get('kind')!r} report; --markdown renders "
                f"{' and '.join(RENDERERS)} reports"
            )
        out.append(tables(report))
    return "\n\n".join(out)
