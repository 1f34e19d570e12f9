"""Pricing profile names: what a client may call a profile, and the names the service keeps."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

#: The profile built from the settings (``MAX_ROUNDS``, ``MAX_MARKUP``, linear); always exists.
STANDARD = "standard"
#: The label reports give rounds recorded before profiles; no profile may take the name.
LEGACY = "legacy"
_NAME = re.compile(r"^[A-Za-z0-9_\-.]{1,64}$")


def _profile_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError("a profile name is 1-64 characters of letters, digits, '_', '-' or '.'")
    if value.lower() == LEGACY:
        raise ValueError(f"'{LEGACY}' is reserved for rounds recorded before profiles")
    return value


#: A pricing profile's name as a client sends it (a new profile, or one a session or load names).
ProfileName = Annotated[str, AfterValidator(_profile_name)]
