"""The lock files pin every dependency that pyproject.toml declares, at a version it allows.

A dependency added to pyproject.toml without ``./scripts/lock`` would not be installed by
``./scripts/serve``, ``./scripts/test`` or CI, which install from the lock files.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def _pins(lock: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            requirement = Requirement(line.split(";")[0].strip())
            version = str(requirement.specifier).removeprefix("==")
            pins[canonicalize_name(requirement.name)] = version
    return pins


def _declared(extra: str | None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = project["dependencies"] + (project["optional-dependencies"][extra] if extra else [])
    return [Requirement(name) for name in names]


@pytest.mark.parametrize(("lock", "extra"), [("runtime", None), ("dev", "dev")])
def test_lock_pins_every_declared_dependency(lock: str, extra: str | None) -> None:
    pins = _pins(ROOT / "requirements" / f"{lock}.lock")
    for requirement in _declared(extra):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements/{lock}.lock: run ./scripts/lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements/{lock}.lock pins {name}=={pins[name]}, outside {requirement}: "
            "run ./scripts/lock"
        )
