"""Prometheus metrics: requests, rounds, refusals and database trouble, served at ``/metrics``.

The metrics are prometheus-client's, defined once per process. Under ``negotiation serve
--workers N`` the command sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start, so each
worker writes its values to files there and a scrape of any worker sums them all (the client's
multiprocess mode, see :mod:`negotiation.metrics_dir`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from litestar import Response, get
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from negotiation.metrics_dir import MULTIPROC_DIR_ENV
from negotiation.policy import DEFAULT_PROFILE

T = TypeVar("T")

#: The route label of a request that matched no route (404s, and 401s refused before routing).
UNMATCHED = "unmatched"

REQUESTS = Counter(
    "negotiation_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "negotiation_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ROUNDS = Counter(
    "negotiation_rounds",
    "Negotiation rounds recorded, by decision and pricing profile.",
    ["decision", "profile"],
)
REFUSALS = Counter(
    "negotiation_refusals",
    "Error answers (4xx/5xx in the error envelope), by error code.",
    ["code"],
)
DB_RETRIES = Counter(
    "negotiation_db_retries",
    "Database transactions run again after a lock, serialization failure, deadlock or a "
    "dropped connection.",
)
DB_BUSY = Counter(
    "negotiation_db_busy",
    "503 DATABASE_BUSY answers: the database stayed locked through every retry.",
)
DB_UNAVAILABLE = Counter(
    "negotiation_db_unavailable",
    "503 DATABASE_UNAVAILABLE answers: the database could not be reached.",
)


#: Methods counted under their own name; any other (a client may send any token) is "OTHER",
#: so no client can add series without end.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe_request(
    method: str, route: str | None, status: int, seconds: float, error_code: str | None
) -> None:
    """Count one answered request (called once per request by the request-context middleware)."""
    key = (method if method in METHODS else "OTHER", route or UNMATCHED, status)
    series = _series.get(key)
    if series is None:
        # ``labels()`` validates and locks on every call; the children are kept instead (routes
        # are templates and methods a fixed set, so there are few).
        series = (REQUESTS.labels(key[0], key[1], str(status)), LATENCY.labels(key[0], key[1]))
        _series[key] = series
    series[0].inc()
    series[1].observe(seconds)
    if error_code is not None:
        REFUSALS.labels(error_code).inc()


def count_round(row: Any) -> None:
    """Count one recorded round; its ``profile`` when the row has one, else ``standard``."""
    profile = getattr(row, "profile", None) or DEFAULT_PROFILE
    ROUNDS.labels(row.decision or "none", profile).inc()


class RoundTally(Generic[T]):
    """Wraps the renderer of a recorded round so the round is counted once it is answered.

    A transaction that is retried renders again: the last row rendered is the committed one. A
    replayed ``Idempotency-Key`` answer renders nothing and counts nothing (counted the first
    time).
    """

    def __init__(self, render: Callable[[Any], T]) -> None:
        self._render = render
        self._row: Any = None

    def __call__(self, row: Any) -> T:
        self._row = row
        return self._render(row)

    def count(self) -> None:
        if self._row is not None:
            count_round(self._row)


def exposition() -> bytes:
    """Every metric in the Prometheus text format; all workers' values in multiprocess mode."""
    if os.environ.get(MULTIPROC_DIR_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


@get(
    "/metrics",
    operation_id="getMetrics",
    summary="Prometheus metrics (text format)",
    tags=["operations"],
    media_type=CONTENT_TYPE_LATEST,
    sync_to_thread=False,
)
def metrics() -> Response[bytes]:
    """Requests, rounds, refusals and database retries in the Prometheus text format."""
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
