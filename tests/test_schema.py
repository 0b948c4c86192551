"""One home for every name: the Python constants of ``_schema.py`` and their Lua mirror in
``lua/_prelude.lua`` agree, and no script spells a shared name itself."""

from __future__ import annotations

import inspect
import re
from importlib.resources import files

import pytest

import strands_valkey_session_manager as pkg
from strands_valkey_session_manager import _lua, _schema, exceptions

# `local NAME = 'text'` or `local NAME = -12` (upper-case names only: the shared constants).
_CONSTANT = re.compile(r"^local ([A-Z][A-Z0-9_]*) = (?:'([^'\\]*)'|(-?\d+))\s*(?:--.*)?$")
_LUA_STRING = re.compile(r"'([^'\\]*)'")


def _lua_file(name: str) -> str:
    return (files(pkg) / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def _prelude_constants() -> dict[str, int | str]:
    found: dict[str, int | str] = {}
    for line in _lua_file("_prelude").splitlines():
        match = _CONSTANT.match(line)
        if match:
            name, text, number = match.groups()
            assert name not in found, f"{name} is defined twice in _prelude.lua"
            found[name] = text if text is not None else int(number)
    return found


def test_the_prelude_mirrors_every_python_constant_exactly() -> None:
    python = dict(_schema.constants())
    lua = _prelude_constants()
    assert python, "no constants found in _schema.py"
    assert lua == python


def test_the_prelude_constants_come_before_any_function() -> None:
    # Every script body and every prelude function sees them as locals of the chunk.
    text = _lua_file("_prelude")
    last_constant = max(i for i, line in enumerate(text.splitlines()) if _CONSTANT.match(line))
    first_function = next(i for i, line in enumerate(text.splitlines()) if line.startswith("local function"))
    assert last_constant < first_function


def _code_lines(name: str) -> list[str]:
    """The script's lines without comments and without the prelude's constant definitions."""
    lines = []
    for line in _lua_file(name).splitlines():
        code = line.split("--", 1)[0] if not line.lstrip().startswith("--") else ""
        if _CONSTANT.match(line):
            continue
        lines.append(code)
    return lines


@pytest.mark.parametrize("name", ["_prelude", *_lua.SESSION_SCRIPTS])
def test_no_script_spells_a_shared_field_name_or_error_prefix(name: str) -> None:
    names = {v for k, v in _schema.constants().items() if isinstance(v, str)}
    prefixes = tuple(v for k, v in _schema.constants().items() if k.startswith("E_"))
    spelled = [
        (i + 1, literal)
        for i, line in enumerate(_code_lines(name))
        for literal in _LUA_STRING.findall(line)
        if literal in names or literal.startswith(prefixes)
    ]
    assert spelled == [], f"{name}.lua spells shared names; use the prelude's constants"


@pytest.mark.parametrize("name", ["_prelude", *_lua.SESSION_SCRIPTS])
def test_no_script_returns_a_bare_negative_code(name: str) -> None:
    bare = [
        (i + 1, line.strip())
        for i, line in enumerate(_code_lines(name))
        if re.search(r"\breturn\s*\{?\s*-\d", line) or re.search(r"[=~]=\s*-\d", line)
    ]
    assert bare == [], f"{name}.lua uses a code without its name"


# Exceptions that never reach a caller: internal signals, each caught and turned into one of
# exceptions.py's classes where it is raised (codec and sealing, a wait that fell short, the CLI's
# exit, the storage's switch to its cluster plan, the restore's fall back from its fast decoding), and
# the helpers of tests and the demo.
_INTERNAL = {
    "_codec.CodecError",
    "_codec._NotPlain",
    "_seal.UnsealError",
    "_engine.Unacknowledged",
    "cli.command.CliError",
    "storage._CrossSlotError",
    "scripted_model.ScriptExhaustedError",
    "servers.ServerError",
}


def _exception_classes(module: object) -> list[type[BaseException]]:
    return [
        value
        for value in vars(module).values()
        if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__  # type: ignore[attr-defined]
    ]


def test_every_exception_lives_in_exceptions_py_under_the_package_root() -> None:
    import importlib
    import pkgutil

    defined_elsewhere = []
    for module_info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        try:
            module = importlib.import_module(module_info.name)
        except ImportError:
            continue  # an optional extra that is not installed
        if module is exceptions:
            continue
        short = module.__name__.removeprefix(pkg.__name__ + ".")
        defined_elsewhere += [f"{short}.{c.__name__}" for c in _exception_classes(module)]
    assert sorted(set(defined_elsewhere) - _INTERNAL) == []
    for cls in _exception_classes(exceptions):
        if cls is exceptions.StorageError:
            continue  # the SDK's own class, or its stand-in on SDKs without strands.storage
        assert issubclass(cls, exceptions.ValkeySessionError), cls
        if "Storage" in cls.__name__:
            assert issubclass(cls, exceptions.StorageError), cls
        assert cls.__name__ in pkg.__all__, f"{cls.__name__} is not exported from the package"
        assert getattr(pkg, cls.__name__) is cls


def test_moved_exceptions_keep_their_old_import_paths() -> None:
    from strands_valkey_session_manager import _seal, _write_behind

    assert _write_behind.WriteBehindError is exceptions.WriteBehindError
    assert _seal.MissingExtraError is exceptions.MissingExtraError


# Scripts left on positional ARGV although they take more than five: the hot paths, where the
# table of named arguments costs server time (see named_args in _prelude.lua).
_POSITIONAL_HOT_PATHS = {"append_message", "list_messages"}


@pytest.mark.parametrize("name", sorted(_schema.SCRIPT_ARGS))
def test_a_script_with_named_arguments_reads_exactly_the_names_python_sends(name: str) -> None:
    code = "\n".join(_code_lines(name))
    assert "local A = named_args()" in code
    assert "ARGV[" not in code, f"{name}.lua mixes positional and named arguments"
    assert set(re.findall(r"\bA\.(\w+)", code)) == _schema.SCRIPT_ARGS[name]


@pytest.mark.parametrize("name", sorted(set(_lua.SESSION_SCRIPTS) - set(_schema.SCRIPT_ARGS)))
def test_scripts_with_positional_arguments_take_few_of_them(name: str) -> None:
    code = "\n".join(_code_lines(name))
    assert "named_args" not in code
    highest = max((int(i) for i in re.findall(r"ARGV\[(\d+)\]", code)), default=0)
    assert highest <= 5 or name in _POSITIONAL_HOT_PATHS, f"{name}.lua takes {highest} positional arguments"


def test_named_refuses_a_name_the_script_does_not_read() -> None:
    assert _schema.named("reencrypt_session", dek="a", new_dek="b") == ("dek", "a", "new_dek", "b")
    with pytest.raises(TypeError, match="new_dekk"):
        _schema.named("reencrypt_session", new_dekk="b")
