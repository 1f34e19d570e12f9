"""Schemathesis against the app's own OpenAPI document, on the real server and both databases.

Every operation, with the API key, valid and invalid (``--mode all``: negative) inputs: no 5xx,
and every response has a documented status code, content type and schema. A short, seeded run
here; ``scripts/fuzz`` runs a longer one.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import API_KEY, LOAD
from tests.server import running_server

ST = str(Path(sys.executable).parent / "st")
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


def schemathesis_command(base_url: str, max_examples: int, seed: int) -> list[str]:
    """The same command ``scripts/fuzz`` runs, with the run's bounds."""
    return [
        ST, "run", f"{base_url}/schema/openapi.json",
        "--header", f"X-API-Key: {API_KEY}",
        "--checks", CHECKS,
        "--phases", "examples,coverage,fuzzing",
        "--mode", "all",  # valid and invalid (negative) data
        "--max-examples", str(max_examples),
        "--seed", str(seed),
        "--workers", "1",
        "--no-shrink",
    ]  # fmt: skip


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_nothing_undocumented(
    database_url: str, tmp_path: Path
) -> None:
    with running_server({"database_url": database_url, "api_keys": API_KEY}) as server:
        with httpx.Client(base_url=server.base_url, headers={"X-API-Key": API_KEY}) as c:
            # Some data, so that generated ids sometimes name something that exists.
            assert c.post("/api/loads", json={**LOAD, "load_id": "0"}).is_success
            assert c.post("/api/calls", json={"load_id": "0"}).is_success
            assert c.post("/api/sessions", json={"session_id": "0"}).is_success
        done = subprocess.run(
            schemathesis_command(server.base_url, max_examples=15, seed=20261121),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=480,
        )
    assert done.returncode == 0, done.stdout[-20_000:] + done.stderr[-5_000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", done.stdout)
    tested = re.search(r"Tested: (\d+)", done.stdout)
    assert selected and tested, done.stdout[-5_000:]
    assert int(tested.group(1)) == int(selected.group(2)) >= 15, "every operation was tested"
