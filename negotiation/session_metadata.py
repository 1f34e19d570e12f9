"""A session's ``metadata``: bounded in size and depth, free of control characters."""

from __future__ import annotations

import json
from typing import Any

from negotiation.text_rules import CONTROL_IN_FREE_TEXT

#: Bounds on a session's ``metadata``: its compact JSON size and how deeply it nests.
MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_DEPTH = 8


def bounded_metadata(value: dict[str, Any]) -> dict[str, Any]:
    # Checked iteratively first, so a deeply nested body cannot exhaust the stack in json.dumps.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_METADATA_DEPTH:
            raise ValueError(f"metadata may nest at most {MAX_METADATA_DEPTH} levels deep")
        children = list(node.values()) if isinstance(node, dict) else node
        texts = [*node.keys(), *children] if isinstance(node, dict) else children
        for text in texts:
            if isinstance(text, str) and CONTROL_IN_FREE_TEXT.search(text):
                raise ValueError("metadata strings must not contain control characters")
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise ValueError(
            f"metadata is {size} bytes as JSON; at most {MAX_METADATA_BYTES} bytes are allowed"
        )
    return value
