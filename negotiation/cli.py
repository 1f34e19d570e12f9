"""The ``negotiation`` command line: serve the API, report, export rounds, copy a database.

Reports and exports read the database named by ``NEGOTIATION_DATABASE_URL`` directly, through
the same :class:`~negotiation.db.Database` units of work as the service. Exit codes: 0 done,
2 usage error, 1 with a one-line message (unknown session, unreachable database, …).
"""

from __future__ import annotations

import datetime as dt
import enum
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import typer

from negotiation.metrics_dir import metrics_directory
from negotiation.settings import default_workers, get_settings, settings_or_exit

if TYPE_CHECKING:
    from negotiation.db import Database

T = TypeVar("T")

app = typer.Typer(
    help="Negotiation service: serve the API, report on sessions, export rounds.",
    no_args_is_help=True,
)
report_app = typer.Typer(
    help="Reports read straight from the database (NEGOTIATION_DATABASE_URL).",
    no_args_is_help=True,
)
export_app = typer.Typer(
    help="Stream data out of the database (NEGOTIATION_DATABASE_URL).", no_args_is_help=True
)
app.add_typer(report_app, name="report")
app.add_typer(export_app, name="export")


class ReportFormat(enum.StrEnum):
    md = "md"
    csv = "csv"
    json = "json"
    html = "html"


class ExportFormat(enum.StrEnum):
    csv = "csv"
    ndjson = "ndjson"


def _timestamp(value: str | None) -> dt.datetime | None:
    """ISO 8601 date or date-time; without a zone it is UTC."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 date or time (e.g. 2026-01-31 or 2026-01-31T08:00Z)"
        ) from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _session_id(value: str) -> str:
    from negotiation.ids import validate_session_id

    if not validate_session_id(value):
        raise typer.BadParameter("a session id is 1-128 characters of A-Z a-z 0-9 _ - . :")
    return value


FORMAT = typer.Option(ReportFormat.md, "--format", "-f", help="Output format.")
EXPORT_FORMAT = typer.Option(ExportFormat.csv, "--format", "-f", help="Output format.")
OUTPUT = typer.Option(
    None, "--output", "-o", help="Write to FILE instead of standard output.", dir_okay=False
)
SINCE = typer.Option(
    None,
    help="Only rounds at or after this UTC time (ISO 8601).",
    callback=_timestamp,
    metavar="TIME",
)
PROGRESS = typer.Option(
    None,
    "--progress/--no-progress",
    help="Progress bar on standard error (default: only when it is a terminal).",
    show_default=False,
)
UNTIL = typer.Option(
    None, help="Only rounds before this UTC time (ISO 8601).", callback=_timestamp, metavar="TIME"
)


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on standard error and exit with status 1."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _with_database(work: Callable[[Database], Coroutine[Any, Any, T]]) -> T:
    """Run ``work(db)`` on the configured database; database trouble exits 1 with one line."""
    from pydantic import ValidationError
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from negotiation.db import Database, is_sqlite
    from negotiation.db.errors import DatabaseBusy, DatabaseUnavailable, short_reason

    try:
        settings = get_settings()
    except ValidationError as exc:
        fail(f"invalid settings: {exc.errors()[0]['msg']}")
    try:
        if is_sqlite(settings.database_url):
            path = make_url(settings.database_url).database
            if path and path != ":memory:" and not Path(path).is_file():
                fail(f"database file {path} does not exist (set NEGOTIATION_DATABASE_URL)")
        db = Database(settings)
    except ValueError as exc:
        fail(f"NEGOTIATION_DATABASE_URL: {exc}")

    async def run() -> T:
        try:
            return await work(db)
        finally:
            await db.dispose()

    import asyncio

    try:
        return asyncio.run(run())
    except (DatabaseUnavailable, DatabaseBusy) as exc:
        fail(f"database unavailable: {exc}")
    except DBAPIError as exc:
        fail(f"database error: {short_reason(exc)}")


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        fail(f"cannot write {output}: {exc.strerror or exc}")


@report_app.command("session")
def report_session(
    session_id: str = typer.Argument(..., help="The session's id.", callback=_session_id),
    fmt: ReportFormat = FORMAT,
    output: Path | None = OUTPUT,
) -> None:
    """One session's history: its calls and loads, every round, outcome and figures."""
    from negotiation.reports.history import session_report
    from negotiation.reports.render import render_session

    async def work(db: Database) -> Any:
        return await db.read(
            session_report, session_id, max_markup=db.settings.max_markup, now=_now()
        )

    report = _with_database(work)
    if report is None:
        fail(f"session {session_id} not found")
    _write(render_session(report, fmt.value), output)


@report_app.command("summary")
def report_summary(
    since: str | None = SINCE,
    until: str | None = UNTIL,
    load_id: str | None = typer.Option(None, help="Only calls about this load."),
    carrier_mc_number: str | None = typer.Option(None, help="Only this carrier's calls."),
    fmt: ReportFormat = FORMAT,
    output: Path | None = OUTPUT,
) -> None:
    """Totals over a period: sessions, calls, rounds, acceptance, margins, outcomes."""
    from negotiation.reports.render import render_summary
    from negotiation.reports.schemas import SummaryFilters
    from negotiation.reports.summary import summary_report

    filters = SummaryFilters(
        since=cast(dt.datetime | None, since),  # the callback parsed it
        until=cast(dt.datetime | None, until),
        load_id=load_id,
        carrier_mc_number=carrier_mc_number,
    )
    if filters.since and filters.until and filters.since > filters.until:
        raise typer.BadParameter("--since must not be later than --until")

    async def work(db: Database) -> Any:
        return await db.read(summary_report, filters, max_markup=db.settings.max_markup, now=_now())

    _write(render_summary(_with_database(work), fmt.value), output)


@export_app.command("rounds")
def export_rounds(
    fmt: ExportFormat = EXPORT_FORMAT,
    since: str | None = SINCE,
    until: str | None = UNTIL,
    output: Path | None = OUTPUT,
    progress: bool | None = PROGRESS,
) -> None:
    """Every round, oldest first, streamed in constant memory (CSV with a header, or NDJSON)."""
    from negotiation.reports.export import count_rounds, csv_sink, ndjson_sink
    from negotiation.reports.export import export_rounds as export_unit

    start, end = cast(dt.datetime | None, since), cast(dt.datetime | None, until)
    if progress is None:
        progress = sys.stderr.isatty() and (output is not None or not sys.stdout.isatty())
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp") if output else None

    async def work(db: Database) -> int:
        total = await db.read(count_rounds, start, end) if progress else None
        with _progress(total, enabled=bool(progress)) as advance:
            out = tmp.open("w", encoding="utf-8", newline="") if tmp else sys.stdout
            try:
                make_sink = csv_sink if fmt is ExportFormat.csv else ndjson_sink
                sink = _guarded(make_sink(out, advance))
                written: int = await db.read(export_unit, sink, since=start, until=end)
                out.flush()
            finally:
                if tmp:
                    out.close()
        return written

    try:
        written = _with_database(work)
        if tmp and output:
            tmp.replace(output)
    except (OSError, OutputError) as exc:
        cause = exc.__cause__ if isinstance(exc, OutputError) else exc
        if isinstance(cause, BrokenPipeError):
            # The reader went away (``| head``): nothing left to say, and nowhere to say it.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(1) from None
        fail(f"cannot write {output or 'standard output'}: {cause}")
    finally:
        if tmp:
            tmp.unlink(missing_ok=True)
    if sys.stderr.isatty():
        typer.echo(f"{written} rounds exported{f' to {output}' if output else ''}", err=True)


class OutputError(Exception):
    """Writing the export failed; not an ``OSError``, so it is never taken for database trouble."""


def _guarded(sink: Callable[[Any], None]) -> Callable[[Any], None]:
    def write(batch: Any) -> None:
        try:
            sink(batch)
        except OSError as exc:
            raise OutputError(str(exc)) from exc

    return write


def _progress(total: int | None, *, enabled: bool, label: str = "Exporting rounds") -> Any:
    """A context manager yielding ``advance(n)``: a rich progress bar, or a no-op."""
    from contextlib import contextmanager, nullcontext

    if not enabled:
        return nullcontext(None)

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    @contextmanager
    def bar() -> Any:
        columns = (label, BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=Console(stderr=True)) as shown:
            task = shown.add_task("rounds", total=total)
            yield lambda n: shown.advance(task, n)

    return bar()


@app.command("copy-database")
def copy_database(
    source_url: str = typer.Argument(..., help="The database to copy (read only)."),
    target_url: str = typer.Argument(..., help="An empty database; migrated to head first."),
    batch_size: int = typer.Option(10_000, min=1, help="Rows per batch."),
    progress: bool | None = PROGRESS,
) -> None:
    """Copy a database at head into an empty one (SQLite to PostgreSQL, or back), verified.

    Exit status 2 when it refuses, 1 when it fails; the target then holds no rows.
    """
    from sqlalchemy.exc import DBAPIError

    from negotiation.copydb import CopyFailed, CopyRefused
    from negotiation.copydb import copy_database as copy
    from negotiation.copydb.summary import format_report
    from negotiation.db.errors import short_reason

    shown = sys.stderr.isatty() if progress is None else progress

    def bar(table: str, rows: int) -> Any:
        return _progress(rows, enabled=shown, label=f"{table:<16}")

    try:
        report = copy(source_url, target_url, progress=bar, batch_size=batch_size)
    except CopyRefused as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(2) from None
    except (CopyFailed, ValueError) as exc:
        fail(str(exc))
    except DBAPIError as exc:
        fail(f"database error: {short_reason(exc)}; the target holds no copied rows")
    except OSError as exc:
        fail(f"database unavailable: {exc}")
    typer.echo(format_report(report), nl=False)


SERVE_HELP = (
    "Serve the HTTP API with uvicorn. Migrate the database first (alembic upgrade head).\n\n"
    "Invalid settings (for example NEGOTIATION_ENV=production without keys of your own) stop "
    "it before it listens, with a message naming what to fix.\n\n"
    "Runs one worker per CPU core (at most 4) unless --workers or NEGOTIATION_WORKERS says "
    "otherwise. The workers share the port, and GET /metrics sums all of them."
)


@app.command(help=SERVE_HELP)
def serve(
    host: str | None = typer.Option(None, help="Address to bind (default NEGOTIATION_HOST)."),
    port: int | None = typer.Option(None, help="Port (default NEGOTIATION_PORT)."),
    workers: int | None = typer.Option(
        None,
        min=1,
        help="Worker processes (default NEGOTIATION_WORKERS, else one per CPU core, at most 4).",
    ),
) -> None:
    import uvicorn

    from negotiation.serving import CoalescingHttpToolsProtocol

    settings = settings_or_exit()
    workers = workers or settings.workers or default_workers()
    with metrics_directory(workers):
        uvicorn.run(
            "negotiation.app:create_served_app",
            factory=True,
            host=host or settings.host,
            port=port or settings.port,
            workers=workers,
            log_config=None,
            access_log=False,
            proxy_headers=True,
            http=CoalescingHttpToolsProtocol,
        )


@app.command()
def mcp(
    list_tools: bool = typer.Option(
        False, "--list-tools", help="Print the tools an agent is offered, then exit."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="With --list-tools: as tools/list sends them."
    ),
) -> None:
    """Serve the MCP tools over stdio for a desktop agent, on NEGOTIATION_DATABASE_URL."""
    from negotiation.agents.stdio import describe_tools, serve_stdio

    if list_tools:
        typer.echo(describe_tools(as_json))
        return
    _with_database(serve_stdio)


def main() -> None:
    """Entry point of the ``negotiation`` console script."""
    app()
