"""The scripts as built for the server (``_lua.py``): each carries exactly the prelude definitions
it uses, and every name it reads is defined in it or is one of the server's Lua globals."""

from __future__ import annotations

import re

import pytest

from strands_valkey_session_manager import _lua

_ALL = (*_lua.SESSION_SCRIPTS, *_lua.STORAGE_SCRIPTS)

# What the server's Lua gives every script (the ones ours may use).
_GLOBALS = {
    "KEYS", "ARGV", "redis", "bit", "string", "math", "table", "cjson", "cmsgpack", "struct",
    "tonumber", "tostring", "unpack", "ipairs", "pairs", "type", "error", "pcall", "select", "next", "assert",
}  # fmt: skip
_KEYWORDS = {
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "if", "in", "local",
    "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
}  # fmt: skip
# Comments and strings (to drop), numbers (so 1e5 is no name), names.
_TOKEN = re.compile(
    r"""(?P<skip>--[^\n]*|'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|\d[\w.]*)|(?P<name>[A-Za-z_]\w*)|(?P<other>\S)"""
)


def _free_names(code: str) -> set[str]:
    """Names ``code`` reads that no ``local``, function parameter or ``for`` of its own declares.

    A lexical approximation written apart from ``_lua.py`` (so it can catch that module's mistakes):
    a name after ``.`` or ``:`` is a field, a name before ``=`` after ``{`` or ``,`` is a table key.
    """
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(code) if m.lastgroup != "skip"]
    declared: set[str] = set()
    used: set[str] = set()
    for i, (kind, text) in enumerate(tokens):
        if kind != "name" or text in _KEYWORDS:
            continue
        before = tokens[i - 1][1] if i else ""
        after = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        after2 = tokens[i + 2][1] if i + 2 < len(tokens) else ""
        if before in (".", ":"):
            continue
        if after == "=" and after2 != "=" and before in ("{", ","):
            continue
        used.add(text)
    # Declarations: `local a, b`, `local function f`, parameters, `for a, b in` / `for i =`.
    words = [text for _, text in tokens]
    for i, word in enumerate(words):
        if word in ("local", "for"):
            j = i + 1 + (words[i + 1 : i + 2] == ["function"])
            while j < len(words) and re.fullmatch(r"[A-Za-z_]\w*", words[j]):
                declared.add(words[j])
                if words[j + 1 : j + 2] != [","]:
                    break
                j += 2
        if word == "function":
            j = words.index("(", i) + 1
            while words[j] != ")":
                if words[j] != ",":
                    declared.add(words[j])
                j += 1
    return used - declared - _GLOBALS


@pytest.mark.parametrize("name", _ALL)
def test_every_name_a_built_script_reads_is_defined_in_it(name: str) -> None:
    assert _free_names(_lua.source(name)) == set()


def test_the_check_finds_a_prelude_definition_left_out() -> None:
    # The same script built without one definition it uses: the check must notice.
    body = _lua._read("append_message")
    kept = [d for d in _lua.used_definitions("_prelude", body) if d.name != "integer"]
    assert _free_names("\n".join(d.text for d in kept) + "\n" + body) == {"integer"}


def _strip(code: str) -> str:
    """``code``'s tokens without comments and string literals."""
    return " ".join(m.group() for m in _TOKEN.finditer(code) if m.lastgroup != "skip")


def test_the_append_script_leaves_out_what_it_does_not_use() -> None:
    names = set(_strip(_lua.source("append_message")).split())
    assert {"named_args", "touch", "read_lifetime", "missing_keys", "bump_version", "fenced"}.isdisjoint(names)
    assert {"integer", "damaged", "fenced_by", "stale_data_key", "expire_session"} <= names


def test_a_prelude_top_level_must_hold_only_definitions(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = {"_bad": "local A = 1\nA = 2\n", "_open": "local function f()\n  return 1\n"}
    monkeypatch.setattr(_lua, "_read", lambda name: texts[name])
    with pytest.raises(ValueError, match="line 2"):
        _lua.definitions("_bad")
    with pytest.raises(ValueError, match="no 'end'"):
        _lua.definitions("_open")
