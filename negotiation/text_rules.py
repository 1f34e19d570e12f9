"""Which characters free text may hold (shared by the request schemas and session metadata)."""

from __future__ import annotations

import re

#: Control characters (Unicode Cc) other than tab, newline and carriage return.
CONTROL_IN_FREE_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
