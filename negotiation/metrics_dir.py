"""Where the workers of ``negotiation serve --workers N`` keep their metrics.

prometheus-client's multiprocess mode: each worker writes its values to files in the directory
named by ``PROMETHEUS_MULTIPROC_DIR`` (read when the client is imported), and a scrape of any
worker sums them all. This module imports no metrics, so the serving process, which answers
no request, writes none there.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def metrics_directory(workers: int) -> Iterator[None]:
    """With several workers, a fresh directory for their metrics, removed afterwards.

    A directory the operator set is used as it is (empty it before each start).
    """
    if workers == 1 or os.environ.get(MULTIPROC_DIR_ENV):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="negotiation-metrics-") as directory:
        os.environ[MULTIPROC_DIR_ENV] = directory
        try:
            yield
        finally:
            del os.environ[MULTIPROC_DIR_ENV]
