"""The Lua scripts of ``lua/``, read once from package data."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

SCRIPT_NAMES = ("put_in_session", "append_message", "update_record", "list_messages", "delete_session")


@cache
def source(name: str) -> str:
    """Text of ``lua/<name>.lua``."""
    if name not in SCRIPT_NAMES:
        raise KeyError(name)
    return (files(__package__) / "lua" / f"{name}.lua").read_text(encoding="utf-8")
