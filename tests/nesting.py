"""Records nested deeper than Python recurses: one builder and one walker for the tests that use them."""

from __future__ import annotations

from typing import Any

#: What :func:`nested` puts at the bottom.
BOTTOM = {"bottom": b"\x00\xff", "n": 10**30}


def nested(depth: int) -> dict[str, Any]:
    """A message body whose content holds ``depth`` nested containers (dicts and lists in turn),
    with bytes at the bottom."""
    value: Any = dict(BOTTOM)
    for level in range(depth):
        value = {"d": value} if level % 2 else [value]
    return {"role": "user", "content": [{"text": "deep"}, {"json": value}]}


def depth_and_bottom(body: Any) -> tuple[int, Any]:
    """How deep :func:`nested`'s value goes, and what it holds at the bottom (walked without recursion)."""
    value = body["content"][1]["json"]
    depth = 0
    while isinstance(value, list) or (isinstance(value, dict) and "d" in value):
        value = value[0] if isinstance(value, list) else value["d"]
        depth += 1
    return depth, value
