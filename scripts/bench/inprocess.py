"""CPU time per request of the application itself: the ASGI app driven in-process, no network.

The HTTP benchmark (bench.py) measures the service as users run it; this isolates the
application's own cost (Litestar, the service, SQLAlchemy, the driver) from the server's and
wrk's, one request at a time, so a change to the request path shows up in the figure even on a
noisy machine. With ``--profile`` (pyinstrument, not a dependency: ``.venv/bin/pip install
pyinstrument``) it prints where that time goes. With ``--baseline`` (reads only) every run is
followed by one of a minimal Litestar app with no database and no middleware whose handler
returns the same JSON (the service's answers, captured first), and the ratio of the medians is
printed: what the service costs over its framework's floor. ``--without`` takes parts of a
request's work away (an ablation, to see what each costs: never a way to run the service).

    .venv/bin/python -m scripts.bench.inprocess --scenario session --requests 3000 --runs 3
    .venv/bin/python -m scripts.bench.inprocess --scenario session --baseline
    .venv/bin/python -m scripts.bench.inprocess --scenario record --db-url postgresql://...
    .venv/bin/python -m scripts.bench.inprocess --baseline --without access-line,metrics
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from scripts.bench import dataset

RESULTS = dataset.ROOT / "bench-results"
API_KEY = "inprocess-" + "k" * 32
Request = tuple[str, str, bytes, bytes]  # method, path, query string, body


def _scope(method: str, path: str, query: bytes, body: bytes) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1"), (b"x-api-key", API_KEY.encode())]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


class Driver:
    """Calls an ASGI app directly, as a server would for one request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, request: Request) -> tuple[int, bytes]:
        method, path, query, body = request
        sent: list[dict[str, Any]] = []
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client never disconnects
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self.app(_scope(method, path, query, body), receive, send)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    async def startup(self) -> None:
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._life = asyncio.create_task(self.app(scope, self._events.get, self._answers.put))
        await self._lifespan("startup")

    async def shutdown(self) -> None:
        await self._lifespan("shutdown")
        await self._life

    async def _lifespan(self, event: str) -> None:
        await self._events.put({"type": f"lifespan.{event}"})
        answer = await self._answers.get()
        if answer["type"] != f"lifespan.{event}.complete":
            raise RuntimeError(f"lifespan {event}: {answer}")


async def _requests(scenario: str, data: dataset.Dataset, count: int) -> Callable[[int], Request]:
    if scenario == "session":
        return lambda i: (
            "GET",
            f"/api/negotiations/session/{dataset.session_name(i % data.sessions)}",
            b"",
            b"",
        )
    if scenario == "call":
        return lambda i: (
            "GET",
            f"/api/calls/{i % data.calls + 1}/negotiations",
            f"session_id={dataset.session_name((i % data.calls) // 2)}".encode(),
            b"",
        )
    first = await asyncio.to_thread(dataset.add_fresh_calls, data.url, count // 3 + 1)

    def record(i: int) -> Request:
        call = first + i // 3
        body = {"carrier_offer": 2500 - 100 * (i % 3), "session_id": f"inproc-{call}"}
        return ("POST", f"/api/calls/{call}/negotiate", b"", json.dumps(body).encode())

    return record


async def _measure(
    drive: Callable[[Request], Awaitable[tuple[int, bytes]]],
    make: Callable[[int], Request],
    start: int,
    count: int,
) -> tuple[float, float, dict[int, int]]:
    statuses: dict[int, int] = {}
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(start, start + count):
        status, _ = await drive(make(i))
        statuses[status] = statuses.get(status, 0) + 1
    return (time.process_time() - cpu) / count, (time.perf_counter() - wall) / count, statuses


def log_to(stream: Any) -> None:
    """Send the app's log lines (the access log among them) to ``stream``: still written, as
    in production, but not among a benchmark's figures. After the app configured logging."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(stream)


#: What ``--without`` can take away from each request (reads, on the service's side).
WITHOUT = {
    "access-line": "no access log line (the access logger set to WARNING)",
    "metrics": "no request counted in the Prometheus metrics",
    "statement": "each hot statement's rows from the driver served from memory after its first run",
    "read-unit": "each round listing's rows served from memory (the whole database unit)",
}


def take_away(parts: set[str]) -> None:
    """Switch parts of the request path off for an ablation (``--without``): the metrics and
    the reads are patched in this process; the access line is its logger's level. Each part is
    reached through the name the service uses, so a renamed one fails here rather than being
    measured as if it were gone."""
    from negotiation import middleware
    from negotiation.db import Database, statements

    if "access-line" in parts:
        middleware.access_log.setLevel(logging.WARNING)
    if "metrics" in parts:
        assert callable(middleware.observe_request)
        middleware.observe_request = lambda *_args: None  # type: ignore[assignment]
    if "statement" in parts:
        execute, fetched = statements.driver_execute, {}

        def remembered(conn: Any, sql: str, args: Any = (), *, fetch: bool = False) -> Any:
            if (sql, args) not in fetched:
                fetched[sql, args] = execute(conn, sql, args, fetch=fetch)
            return fetched[sql, args]

        statements.driver_execute = remembered  # type: ignore[assignment]
    if "read-unit" in parts:
        read_shared, pages = Database.read_shared, {}

        async def remembered_pages(self: Database, fn: Any, item: Any, /) -> Any:
            if item not in pages:
                pages[item] = await read_shared(self, fn, item)
            return pages[item]

        Database.read_shared = remembered_pages  # type: ignore[method-assign]


#: Answers captured for the no-database app (requests beyond them reuse them in turn).
CAPTURED = 1000


def nodb_app(bodies: dict[tuple[Any, ...], Any]) -> Any:
    """A Litestar app with no database and no middleware answering the service's read paths
    with the JSON the service gave for them (``bodies``: decoded, so it is encoded per request)."""
    from litestar import Litestar, get

    @get("/api/negotiations/session/{session_id:str}")
    async def session_rounds(session_id: str) -> list[dict[str, Any]]:
        return bodies["session", session_id]  # type: ignore[no-any-return]

    @get("/api/calls/{call_id:int}/negotiations")
    async def call_rounds(call_id: int, session_id: str | None = None) -> list[dict[str, Any]]:
        return bodies["call", call_id, session_id]  # type: ignore[no-any-return]

    return Litestar([session_rounds, call_rounds], openapi_config=None, logging_config=None)


async def _baseline(
    driver: Driver, make: Callable[[int], Request], count: int
) -> tuple[Driver, Callable[[int], Request], bool]:
    """The no-database app's driver and requests, with the service's answers to ``count``
    requests, and whether it answers the first one with the same bytes."""
    bodies: dict[tuple[Any, ...], Any] = {}
    first = b""
    for i in range(count):
        _method, path, query, _body = make(i)
        status, body = await driver(make(i))
        assert status == 200, (status, body)
        first = first or body
        parts = path.strip("/").split("/")
        if parts[1] == "negotiations":
            key: tuple[Any, ...] = ("session", parts[3])
        else:
            key = ("call", int(parts[2]), query.decode().partition("=")[2] or None)
        bodies[key] = json.loads(body)
    nodb = Driver(nodb_app(bodies))
    await nodb.startup()
    same = (await nodb(make(0)))[1] == first
    return nodb, lambda i: make(i % count), same


async def run(args: argparse.Namespace, app: Any, data: dataset.Dataset, log: Any) -> int:
    """Warm up, then ``--runs`` runs of ``--requests`` requests; 1 if any was refused."""
    driver = Driver(app)
    await driver.startup()
    log_to(log)  # the access log is written, as in production
    total = args.requests * (args.runs + 1)
    make = await _requests(args.scenario, data, total)
    if args.without:
        take_away(args.without)
        for part in sorted(args.without):
            print(f"without {part}: {WITHOUT[part]}", flush=True)
    # Without parts, the warm-up makes every request the runs will: they find what is remembered.
    await _measure(driver, make, 0, total if args.without else args.requests)  # warm-up
    if args.baseline:
        nodb, nodb_make, same = await _baseline(driver, make, min(args.requests, CAPTURED))
        await _measure(nodb, nodb_make, 0, args.requests)  # its warm-up
    cpu_ms, nodb_ms = [], []
    for n in range(1, args.runs + 1):
        if args.profile and n == args.runs:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0001, async_mode="disabled")
            profiler.start()
        cpu, wall, statuses = await _measure(driver, make, n * args.requests, args.requests)
        cpu_ms.append(cpu * 1000)
        print(
            f"{args.scenario} run {n}: {cpu * 1000:.3f} ms CPU/request "
            f"({wall * 1000:.3f} ms wall), statuses {statuses}",
            flush=True,
        )
        if any(s >= 400 for s in statuses):
            return 1
        if args.baseline:
            cpu, wall, statuses = await _measure(nodb, nodb_make, n * args.requests, args.requests)
            nodb_ms.append(cpu * 1000)
            print(
                f"no-DB handler run {n}: {cpu * 1000:.3f} ms CPU/request "
                f"({wall * 1000:.3f} ms wall), statuses {statuses}",
                flush=True,
            )
    if args.profile:
        profiler.stop()
        print(
            profiler.output_text(
                unicode=False, color=False, show_all=bool(os.environ.get("PROFILE_ALL"))
            )
        )
    print(f"{args.scenario}: median {statistics.median(cpu_ms):.3f} ms CPU/request")
    if args.baseline:
        await nodb.shutdown()
        floor = statistics.median(nodb_ms)
        print(
            f"no-DB Litestar handler, the same JSON ({'identical bytes' if same else 'DIFFERS'}): "
            f"median {floor:.3f} ms CPU/request"
        )
        print(
            f"{args.scenario} / no-DB handler: "
            f"{statistics.median(cpu_ms) / floor:.2f}x (issue 22's target: <= 3x)"
        )
    await driver.shutdown()
    return 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", choices=["session", "call", "record"], default="session")
    p.add_argument("--requests", type=int, default=3000, help="requests per run")
    p.add_argument("--runs", type=int, default=3, help="measured runs (median reported)")
    p.add_argument("--rounds", type=int, default=30_000, help="rounds to seed")
    p.add_argument(
        "--db-url",
        default=f"sqlite:///{RESULTS / 'db' / 'inprocess.db'}",
        help="database to create, migrate and seed (dropped first)",
    )
    p.add_argument("--profile", action="store_true", help="pyinstrument over the last run")
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also measure a no-database Litestar handler returning the same JSON (reads only)",
    )
    p.add_argument(
        "--without",
        type=lambda text: set(text.split(",")),
        default=set(),
        help="parts taken away, comma-separated (an ablation, reads only): "
        + "; ".join(f"{name}: {what}" for name, what in WITHOUT.items()),
    )
    args = p.parse_args()
    if args.baseline and args.scenario == "record":
        p.error("--baseline compares reads: use --scenario session or call")
    if args.without and (args.scenario == "record" or not args.without <= set(WITHOUT)):
        p.error(f"--without takes {', '.join(WITHOUT)}, for reads")
    os.environ.update(
        NEGOTIATION_ENV="production",
        NEGOTIATION_API_KEYS=API_KEY,
        NEGOTIATION_DATABASE_URL=args.db_url,
    )
    import uvloop

    # The app as `negotiation serve` runs it (its collector and log-record settings).
    from negotiation.app import create_served_app  # after the environment is set

    dataset.create_database(args.db_url)
    dataset.migrate(args.db_url)
    data = dataset.seed(args.db_url, args.rounds)
    with open(os.devnull, "w") as log:
        sys.exit(uvloop.run(run(args, create_served_app(), data, log)))


if __name__ == "__main__":
    main()
