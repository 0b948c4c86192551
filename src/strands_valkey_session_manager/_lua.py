"""The Lua scripts of ``lua/``, read once from package data.

Session scripts get ``lua/_prelude.lua`` (the shared lifetime and version helpers) prepended, so
those rules have one body that every write shares; ValkeyStorage's scripts get
``lua/_storage_prelude.lua``.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

SESSION_SCRIPTS = (
    "create_session",
    "put_in_session",
    "append_message",
    "update_record",
    "list_messages",
    "read_field",
    "delete_session",
    "session_info",
    "lease",
    "session_dek",
    "reencrypt_session",
    "swap_session",
)
# ValkeyStorage's scripts, with ``lua/_storage_prelude.lua`` in front.
STORAGE_SCRIPTS = ("storage_write", "storage_delete", "storage_delete_many", "storage_index")
SCRIPT_NAMES: tuple[str, ...] = SESSION_SCRIPTS


def _read(name: str) -> str:
    return (files(__package__) / "lua" / f"{name}.lua").read_text(encoding="utf-8")


@cache
def source(name: str) -> str:
    """Text of the script ``name`` as sent to the server."""
    if name in SESSION_SCRIPTS:
        return _read("_prelude") + "\n" + _read(name)
    if name in STORAGE_SCRIPTS:
        return _read("_storage_prelude") + "\n" + _read(name)
    raise KeyError(name)
