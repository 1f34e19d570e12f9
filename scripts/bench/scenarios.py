"""The benchmark scenarios: what each one requests, and the files and calls it needs."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dataset import CALLS_PER_SESSION, Dataset, add_fresh_calls, session_name

from negotiation.pagination import encode_cursor

#: Requests per second no single run will reach on a small machine; sizes the fresh-call pool.
RATE_CEILING = 12_000
#: Distinct request paths per read scenario (picked at random per request).
PATHS = 20_000
#: Page size of the general query.
QUERY_LIMIT = 20
#: Calls a wrk thread offers to in turn (common.lua): one call's offers are this many requests
#: apart, more than the thread's connections, so each waits for the answer to the one before.
RECORD_WINDOW = 64


def session_path(data: Dataset, rng: random.Random) -> str:
    return f"/api/negotiations/session/{session_name(rng.randrange(data.sessions))}"


def call_path(data: Dataset, rng: random.Random) -> str:
    call = rng.randint(1, data.calls)
    session = session_name((call - 1) // CALLS_PER_SESSION)
    return f"/api/calls/{call}/negotiations?session_id={session}"


def query_path(data: Dataset, rng: random.Random) -> str:
    cursor = encode_cursor("rounds", rng.randrange(data.rounds))
    return f"/api/negotiations?decision=counter&limit={QUERY_LIMIT}&cursor={cursor}"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    #: Share of requests that record a new round (the rest are reads).
    writes: float
    #: Builders of read paths; several are mixed evenly.
    reads: tuple[Callable[[Dataset, random.Random], str], ...] = ()
    #: Calls a wrk thread offers to in turn: 1 sends a call's three offers back to back.
    window: int = RECORD_WINDOW

    def wrk_args(self, data: Dataset, *, duration: float, threads: int, workdir: Path) -> list[str]:
        """The wrk script and its arguments (writing a paths file and adding calls as needed)."""
        args: list[str] = []
        if self.reads:
            rng = random.Random(f"{self.name}-{data.rounds}")
            paths = [self.reads[i % len(self.reads)](data, rng) for i in range(PATHS)]
            path = Path(tempfile.mkstemp(prefix=f"{self.name}-", suffix=".txt", dir=workdir)[1])
            path.write_text("\n".join(paths) + "\n")
            args.append(str(path))
        if self.writes:
            calls = int(RATE_CEILING * self.writes * duration / 3 / threads) + self.window
            first = add_fresh_calls(data.url, calls * threads)
            args += [str(first), str(calls), str(self.window)]
        if self.reads and self.writes:
            args.append(str(self.writes))
        return args

    @property
    def script(self) -> str:
        if self.reads and self.writes:
            return "mix.lua"
        return "record.lua" if self.writes else "read.lua"


SCENARIOS = {
    s.name: s
    for s in (
        Scenario(
            "record",
            "POST /api/calls/{id}/negotiate: a new round on a fresh call, three offers per call",
            writes=1.0,
        ),
        Scenario(
            "session",
            "GET /api/negotiations/session/{session_id}: a session's six rounds over two calls",
            writes=0.0,
            reads=(session_path,),
        ),
        Scenario(
            "call",
            "GET /api/calls/{id}/negotiations?session_id=…: a call's three rounds in one session",
            writes=0.0,
            reads=(call_path,),
        ),
        Scenario(
            "query",
            f"GET /api/negotiations?decision=counter&limit={QUERY_LIMIT}&cursor=…: "
            "a page from a random point of the whole history",
            writes=0.0,
            reads=(query_path,),
        ),
        Scenario(
            "mix",
            "30% record a round, 70% the three reads above in equal parts",
            writes=0.3,
            reads=(session_path, call_path, query_path),
        ),
        Scenario(
            "overlap",
            "as record, but a call's three offers are sent back to back, so they overlap on "
            "different connections (a voice platform retrying on a timeout)",
            writes=1.0,
            window=1,
        ),
    )
}
#: What ``scripts/bench/run`` runs unless ``--scenarios`` says otherwise (``overlap`` is asked
#: for by name, and run by ``--peer``).
DEFAULT_SCENARIOS = ("record", "session", "call", "query", "mix")
