"""``ValkeyStorage``'s key layout, without a server: normalisation, the group (slot) rule, exact server keys.

The normalisation cases are the SDK's ``TestNormalizeKey`` / ``TestNormalizePrefix``
(``tests/strands/storage/test_storage.py``, strands-agents 1.62, Apache-2.0), run against our copy
of the helpers and, for every input, compared with the SDK's own private helpers.
"""

from __future__ import annotations

import pytest
from strands.storage import storage as sdk_storage
from strands.types.exceptions import StorageError
from valkey.crc import key_slot

from strands_valkey_session_manager import _storage_keys
from strands_valkey_session_manager._storage_keys import (
    StorageLayout,
    group_of,
    join,
    normalize_key,
    normalize_prefix,
    rest_of,
)

# -- TestNormalizeKey ------------------------------------------------------------------------------


def test_simple_key() -> None:
    assert normalize_key("foo/bar") == "foo/bar"


def test_collapses_multiple_slashes() -> None:
    assert normalize_key("foo//bar///baz") == "foo/bar/baz"


def test_strips_leading_slash() -> None:
    assert normalize_key("/foo/bar") == "foo/bar"


def test_strips_trailing_slash() -> None:
    assert normalize_key("foo/bar/") == "foo/bar"


def test_strips_both() -> None:
    assert normalize_key("///foo///bar///") == "foo/bar"


def test_rejects_empty_key() -> None:
    with pytest.raises(StorageError, match="must not be empty"):
        normalize_key("")


def test_rejects_only_slashes() -> None:
    with pytest.raises(StorageError, match="must not be empty"):
        normalize_key("///")


def test_rejects_dot_dot_segment() -> None:
    with pytest.raises(StorageError, match="path segments are not allowed"):
        normalize_key("foo/../bar")


def test_rejects_dot_dot_at_start() -> None:
    with pytest.raises(StorageError, match="path segments are not allowed"):
        normalize_key("../foo")


def test_allows_dots_in_segment() -> None:
    assert normalize_key("foo/bar.txt") == "foo/bar.txt"
    assert normalize_key("foo/...bar") == "foo/...bar"


def test_rejects_backslash() -> None:
    with pytest.raises(StorageError, match="backslashes are not allowed"):
        normalize_key("foo\\bar")


def test_rejects_backslash_traversal() -> None:
    with pytest.raises(StorageError, match="backslashes are not allowed"):
        normalize_key("foo\\..\\..\\secret")


# -- TestNormalizePrefix ---------------------------------------------------------------------------


def test_simple_prefix() -> None:
    assert normalize_prefix("foo/bar") == "foo/bar"


def test_empty_prefix_is_valid() -> None:
    assert normalize_prefix("") == ""


def test_prefix_collapses_slashes() -> None:
    assert normalize_prefix("foo//bar///") == "foo/bar/"


def test_prefix_strips_leading_slash() -> None:
    assert normalize_prefix("/foo/bar") == "foo/bar"


def test_preserves_trailing_slash() -> None:
    assert normalize_prefix("foo/bar/") == "foo/bar/"


def test_prefix_rejects_dot_dot() -> None:
    with pytest.raises(StorageError, match="path segments are not allowed"):
        normalize_prefix("foo/../bar")


def test_prefix_rejects_backslash() -> None:
    with pytest.raises(StorageError, match="backslashes are not allowed"):
        normalize_prefix("foo\\bar/")


# -- the same as the SDK, input for input ----------------------------------------------------------

INPUTS = [
    "",
    "/",
    "///",
    "a",
    "/a",
    "a/",
    "a//b",
    "//foo///bar//",
    "..",
    "../x",
    "x/..",
    "x/../y",
    "x/..y",
    "...",
    "a/./b",
    ".",
    "a\\b",
    "\\",
    "ü/✓ {x}:y*",
    " a / b ",
    "session/s1/scopes/agent/a1/snapshots/snapshot_latest.json",
]


def _outcome(function: object, value: str) -> tuple[str, str]:
    try:
        return ("ok", function(value))  # type: ignore[operator]
    except StorageError as e:
        return ("error", str(e))


@pytest.mark.parametrize("value", INPUTS)
def test_normalize_key_matches_the_sdk(value: str) -> None:
    assert _outcome(normalize_key, value) == _outcome(sdk_storage._normalize_key, value)


@pytest.mark.parametrize("value", INPUTS)
def test_normalize_prefix_matches_the_sdk(value: str) -> None:
    assert _outcome(normalize_prefix, value) == _outcome(sdk_storage._normalize_prefix, value)


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(StorageError, match="not valid Unicode"):
        normalize_key("a/\udc80")
    with pytest.raises(StorageError, match="not valid Unicode"):
        normalize_prefix("\ud800")


# -- groups and server keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "group", "rest"),
    [
        ("a", "a", ""),
        ("a/b", "a", "b"),
        ("a/b/c", "a/b", "c"),
        ("a/b/c/d/e", "a/b", "c/d/e"),
        (
            "session/s1/scopes/agent/a1/snapshots/snapshot_latest.json",
            "session/s1",
            "scopes/agent/a1/snapshots/snapshot_latest.json",
        ),
        ("context/s1/scopes/agent/a1/tu-1_0", "context/s1", "scopes/agent/a1/tu-1_0"),
        ("memory/note.json", "memory", "note.json"),
    ],
)
def test_group_rule(key: str, group: str, rest: str) -> None:
    assert group_of(key) == group
    assert rest_of(key, group) == rest
    assert join(group, rest) == key


@pytest.mark.parametrize(
    ("key", "value", "index"),
    [
        ("a", "strands:storage:{a}:v:", "strands:storage:{a}:i"),
        ("a/b", "strands:storage:{a}:v:b", "strands:storage:{a}:i"),
        (
            "session/s1/scopes/agent/a1/snapshots/snapshot_latest.json",
            "strands:storage:{session%2Fs1}:v:scopes%2Fagent%2Fa1%2Fsnapshots%2Fsnapshot_latest.json",
            "strands:storage:{session%2Fs1}:i",
        ),
        (
            "k{x}/v:1/*?[y] ü",
            "strands:storage:{k%7Bx%7D%2Fv%3A1}:v:%2A%3F%5By%5D%20%C3%BC",
            "strands:storage:{k%7Bx%7D%2Fv%3A1}:i",
        ),
    ],
)
def test_server_keys_are_exact(key: str, value: str, index: str) -> None:
    location = StorageLayout("strands").locate(key)
    assert (location.value, location.index) == (value, index)
    assert StorageLayout("strands").groups == "strands:storage:groups"


def test_one_session_is_one_slot_and_sessions_spread() -> None:
    layout = StorageLayout("strands")
    keys = [
        "session/s1/scopes/agent/a1/snapshots/snapshot_latest.json",
        "session/s1/scopes/agent/a1/snapshots/immutable_history/snapshot_01.json",
        "session/s1/scopes/agent/a2/snapshots/snapshot_latest.json",
        "session/s1/scopes/multiAgent/g1/snapshots/snapshot_latest.json",
    ]
    slots = {
        key_slot(server_key.encode())
        for key in keys
        for server_key in (layout.locate(key).value, layout.locate(key).index)
    }
    assert len(slots) == 1
    other_sessions = {key_slot(layout.index(f"session/s{i}").encode()) for i in range(100)}
    assert len(other_sessions) > 50  # a hash tag per session: sessions spread over the cluster


def test_hash_tag_cannot_be_moved_by_braces_in_keys() -> None:
    layout = StorageLayout("strands")
    value = layout.locate("a}b/{c}/d").value
    assert value.startswith("strands:storage:{a%7Db%2F%7Bc%7D}:v:")
    assert key_slot(value.encode()) == key_slot(layout.index("a}b/{c}").encode())


def test_a_sessions_prefix_reads_one_group_and_not_the_groups_index() -> None:
    layout = StorageLayout("strands")
    assert layout.groups_range("session/s1/") is None
    assert [r.group for r in layout.containing_groups("session/s1/")] == ["session/s1"]
    assert [r.group for r in layout.containing_groups("session/s1/scopes/agent/")] == ["session/s1"]


@pytest.mark.parametrize(
    ("prefix", "scan_groups", "containing"),
    [
        ("", True, []),
        ("a", True, []),
        ("a/", True, ["a"]),
        ("a/b", True, ["a"]),
        ("a/b/", False, ["a/b"]),
        ("a/b/c", False, ["a/b"]),
    ],
)
def test_groups_a_prefix_can_reach(prefix: str, scan_groups: bool, containing: list[str]) -> None:
    layout = StorageLayout("strands")
    assert (layout.groups_range(prefix) is not None) is scan_groups
    assert [r.group for r in layout.containing_groups(prefix)] == containing


def test_module_docstring_names_the_layout() -> None:
    doc = _storage_keys.__doc__ or ""
    assert "<N>:storage:{<G>}:v:<R>" in doc
    assert "<N>:storage:groups" in doc


_OLD_SDK = """
import importlib.abc, sys
import strands, strands.types.exceptions  # the real SDK loads first (it uses strands.storage itself)

class NoStorageApi(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "strands.storage" or name.startswith("strands.storage."):
            raise ImportError(f"No module named {name!r}")
        return None

for name in [n for n in sys.modules if n == "strands.storage" or n.startswith("strands.storage.")]:
    del sys.modules[name]
sys.meta_path.insert(0, NoStorageApi())
del strands.types.exceptions.StorageError

import strands_valkey_session_manager as package
print(package.ValkeySessionManager.__name__, package.ValkeyStorage.__name__)
"""


def test_the_package_still_imports_on_an_sdk_without_the_storage_api() -> None:
    """strands-agents 1.0 has neither ``strands.storage`` nor ``StorageError``; the session manager must import."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _OLD_SDK], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ValkeySessionManager", "ValkeyStorage"]
