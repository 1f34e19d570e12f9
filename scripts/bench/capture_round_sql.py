"""The SQL one round's recording sends, captured from the service itself, as JSON on stdout.

    .venv/bin/python -m scripts.bench.capture_round_sql postgresql://postgres@127.0.0.1/db

On a migrated, seeded database: adds a fresh call, drives the application in-process (the ASGI
app, production settings) with the benchmark's three offers on that call (2,500, 2,400, 2,300:
counter, counter, reject, in session ``bench-r-<call>``), and prints every statement each
request sent, as SQLAlchemy's ``before_cursor_execute`` saw it (hot statements included), with
its parameters as ``[type, text]`` pairs. ``pgbench_compare.py`` turns them into a pgbench
script; a separate process keeps the app's logging and collector settings out of the harness.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
from decimal import Decimal
from typing import Any

from scripts.bench import dataset
from scripts.bench.inprocess import API_KEY, Driver

OFFERS = ("2500.00", "2400.00", "2300.00")


def _param(value: Any) -> list[str | None]:
    if value is None:
        return ["none", None]
    if isinstance(value, bool):
        return ["bool", str(value).lower()]
    if isinstance(value, int):
        return ["int", str(value)]
    if isinstance(value, Decimal | float):
        return ["numeric", str(value)]
    if isinstance(value, dt.datetime):
        return ["timestamp", value.isoformat(" ")]
    if isinstance(value, str):
        return ["str", value]
    raise TypeError(f"a parameter of type {type(value).__name__}: {value!r}")


async def capture(url: str) -> dict[str, Any]:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from negotiation.app import create_app  # after the environment is set

    call = await asyncio.to_thread(dataset.add_fresh_calls, url, 1)
    session = f"bench-r-{call}"
    seen: list[dict[str, Any]] = []

    def before(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append({"sql": statement, "params": [_param(p) for p in parameters or ()]})

    driver = Driver(create_app())
    await driver.startup()
    rounds = []
    event.listen(Engine, "before_cursor_execute", before)
    try:
        for offer in OFFERS:
            seen.clear()
            body = json.dumps({"carrier_offer": float(offer), "session_id": session}).encode()
            status, answer = await driver(("POST", f"/api/calls/{call}/negotiate", b"", body))
            if status != 201:
                raise RuntimeError(f"offer {offer} on call {call}: {status} {answer!r}")
            rounds.append({"offer": offer, "answer": json.loads(answer), "statements": list(seen)})
    finally:
        event.remove(Engine, "before_cursor_execute", before)
        await driver.shutdown()
    return {"call_id": call, "session_id": session, "rounds": rounds}


def main() -> None:
    url = sys.argv[1]
    os.environ.update(
        NEGOTIATION_ENV="production",
        NEGOTIATION_API_KEYS=API_KEY,
        NEGOTIATION_DATABASE_URL=url,
    )
    with open(os.devnull, "w") as quiet:  # the access log and the app's other output
        stdout, sys.stdout = sys.stdout, quiet
        try:
            result = asyncio.run(capture(url))
        finally:
            sys.stdout = stdout
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
