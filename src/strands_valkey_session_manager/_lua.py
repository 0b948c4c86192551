"""The Lua scripts of ``lua/``, read once from package data.

Session scripts get the definitions of ``lua/_prelude.lua`` (the shared names, lifetime and
version helpers) that they use put in front, so those rules have one body that every write shares;
ValkeyStorage's scripts get ``lua/_storage_prelude.lua``'s the same way.

Only the definitions a script uses, and those they use in turn, are sent with it: the server runs
a script's whole chunk on every call, so each unused prelude function would cost a closure
(measured: the whole session prelude is about 1.5-2.5 µs of server time per call). The prelude's
top level holds only comments and ``local`` definitions (one-line values, or functions that end
with ``end`` at the start of a line); anything else there is refused when a script is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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

# A comment, a string literal, or a name (comments and strings are matched to be skipped).
_TOKEN = re.compile(r"""--[^\n]*|'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|[A-Za-z_][A-Za-z0-9_]*""")
_DEFINITION = re.compile(r"local (?:function )?([A-Za-z_][A-Za-z0-9_]*)\b")


def _read(name: str) -> str:
    return (files(__package__) / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def names_in(code: str) -> set[str]:
    """Every name ``code`` spells outside comments and string literals (fields included)."""
    return {token for token in _TOKEN.findall(code) if token[0] not in "-'\""}


@dataclass(frozen=True)
class Definition:
    """One top-level ``local`` of a prelude: its name, its text (with the comments above it) and
    the names its code spells."""

    name: str
    text: str
    uses: frozenset[str]


@cache
def definitions(prelude: str) -> tuple[Definition, ...]:
    """The top-level definitions of the prelude ``prelude``, in order.

    Raises:
        ValueError: If the prelude's top level holds something other than comments and ``local``
            definitions.
    """
    found: list[Definition] = []
    pending: list[str] = []  # comments and blank lines above the next definition
    current: list[str] | None = None  # the lines of the function being read
    name = ""

    def close(lines: list[str]) -> None:
        body = "\n".join(lines[len(pending) :])
        found.append(Definition(name, "\n".join(lines), frozenset(names_in(body))))

    for number, line in enumerate(_read(prelude).splitlines(), 1):
        if current is not None:
            current.append(line)
            if line.rstrip() == "end":
                close(current)
                current, pending = None, []
            continue
        if not line.strip() or line.startswith("--"):
            pending.append(line)
            continue
        match = _DEFINITION.match(line)
        if match is None:
            raise ValueError(f"{prelude}.lua line {number}: only comments and local definitions at the top level")
        name = match.group(1)
        if line.startswith("local function "):
            current = [*pending, line]
        else:
            close([*pending, line])
            pending = []
    if current is not None:
        raise ValueError(f"{prelude}.lua: function {name} has no 'end' at the start of a line")
    return tuple(found)


def used_definitions(prelude: str, body: str) -> list[Definition]:
    """The definitions of ``prelude`` that ``body`` needs (directly or through other definitions),
    in the prelude's order."""
    known = definitions(prelude)
    by_name = {d.name: d for d in known}
    wanted = names_in(body) & by_name.keys()
    todo = list(wanted)
    while todo:
        for name in by_name[todo.pop()].uses & by_name.keys():
            if name not in wanted:
                wanted.add(name)
                todo.append(name)
    return [d for d in known if d.name in wanted]


def build(prelude: str, name: str) -> str:
    """The script ``name`` with the definitions of ``prelude`` it uses in front."""
    body = _read(name)
    head = "\n".join(d.text for d in used_definitions(prelude, body))
    return f"{head}\n{body}" if head else body


@cache
def source(name: str) -> str:
    """Text of the script ``name`` as sent to the server."""
    if name in SESSION_SCRIPTS:
        return build("_prelude", name)
    if name in STORAGE_SCRIPTS:
        return build("_storage_prelude", name)
    raise KeyError(name)
