"""The SDK's storage tests, ported to ``ValkeyStorage`` on every server and client (sync and asyncio).

Sources (strands-agents 1.62, Apache-2.0), ``tests/strands/storage/``:

* ``test_in_memory_storage.py`` (``TestInMemoryStorage``): every test but the two ``clear()`` ones.
* ``test_local_file_storage.py`` (``TestLocalFileStorage``): every test that is about the protocol.
  Adapted: ``test_write_creates_directories`` keeps the read-back (no file to look at);
  ``test_atomic_write`` asserts no extra key is listed (no temp files here);
  ``test_namespace_returns_local_file_storage`` asserts the class and the SDK's namespaced marker
  (there is no ``base_dir``); the read/delete/list/write error tests provoke a real server refusal
  (a foreign value type under one of our keys) instead of ``chmod`` or a mocked sandbox, and
  ``test_write_atomic_cleanup_on_replace_failure`` asserts the old value and the index survive a
  refused write. Dropped, as file or sandbox specific: the ``sandbox`` / ``for_sandbox`` tests,
  ``test_normpath_prevents_trailing_slash_in_namespace``, ``test_rejects_host_fs_strategy_with_sandbox``.
  Server-down write errors are in ``test_errors.py``.
* ``test_s3_storage.py``: the namespace tests that differ from the in-memory ones
  (``namespace_returns_scoped_instance`` with a non-default server namespace standing in for S3's
  bucket prefix, ``namespace_shares_client``, ``namespace_keeps_subclass_overrides_and_shares_client``),
  ``test_list_pagination`` (here: more groups than one list pipeline carries) and
  ``TestS3StorageWithPrefix`` (the server key holds the namespace). The rest mocks boto3.
* ``test_storage.py``: ``TestNamespacedStorage`` and ``TestResolveNamespace`` over ``ValkeyStorage``
  (the SDK's generic wrapper and resolver must work on it), ``TestStorageProtocol``; the
  normalisation tests are in ``test_keys.py``. ``test_wraps_with_namespaced_storage_as_fallback``
  tests a storage without ``namespace()`` and is not ported.

Then cases of our own: the listing of many key shapes against the SDK's ``InMemoryStorage`` as the
reference, hostile keys, prefix siblings, and one session's keys in one slot.
"""

from __future__ import annotations

import string
from typing import Any
from unittest.mock import AsyncMock

import pytest
import valkey
import valkey.cluster
from strands.storage import InMemoryStorage, Storage
from strands.storage.storage import _NAMESPACED, StorageSearchResult, _NamespacedStorage, _resolve_namespace
from strands.types.exceptions import StorageError

from strands_valkey_session_manager import _storage_keys
from strands_valkey_session_manager import storage as storage_module
from strands_valkey_session_manager.storage import ValkeyStorage, ValkeyStorageError
from tests.conftest import Backend
from tests.storage.conftest import StorageFactory

pytestmark = pytest.mark.anyio


def _admin(backend: Backend) -> Any:
    """A plain bytes client on the backend (cluster-aware) for planting foreign data."""
    if backend.is_cluster:
        node: Any = valkey.cluster.ClusterNode
        return valkey.cluster.ValkeyCluster(startup_nodes=[node(h, p) for h, p in backend.startup_nodes])
    return valkey.Valkey(backend.host, backend.port)


def _layout(namespace: str = "strands") -> _storage_keys.StorageLayout:
    return _storage_keys.StorageLayout(namespace)


# -- test_in_memory_storage.py ---------------------------------------------------------------------


async def test_write_and_read(storage: ValkeyStorage) -> None:
    await storage.write("key", b"hello")
    assert await storage.read("key") == b"hello"


async def test_read_missing_returns_none(storage: ValkeyStorage) -> None:
    assert await storage.read("nonexistent") is None


async def test_write_overwrites(storage: ValkeyStorage) -> None:
    await storage.write("key", b"first")
    await storage.write("key", b"second")
    assert await storage.read("key") == b"second"


async def test_delete_existing(storage: ValkeyStorage) -> None:
    await storage.write("key", b"data")
    await storage.delete("key")
    assert await storage.read("key") is None


async def test_delete_missing_is_noop(storage: ValkeyStorage) -> None:
    await storage.delete("nonexistent")


async def test_list_all(storage: ValkeyStorage) -> None:
    await storage.write("b/2", b"")
    await storage.write("a/1", b"")
    await storage.write("c/3", b"")
    keys = await storage.list("")
    assert keys == ["a/1", "b/2", "c/3"]


async def test_list_with_prefix(storage: ValkeyStorage) -> None:
    await storage.write("sessions/a", b"")
    await storage.write("sessions/b", b"")
    await storage.write("offloader/x", b"")
    keys = await storage.list("sessions/")
    assert keys == ["sessions/a", "sessions/b"]


async def test_list_empty_store(storage: ValkeyStorage) -> None:
    assert await storage.list("") == []


async def test_key_normalization(storage: ValkeyStorage) -> None:
    await storage.write("//foo///bar//", b"data")
    assert await storage.read("/foo/bar/") == b"data"
    # test_local_file_storage.py's variant
    assert await storage.read("foo/bar") == b"data"


async def test_rejects_empty_key(storage: ValkeyStorage) -> None:
    with pytest.raises(StorageError):
        await storage.write("", b"data")


async def test_rejects_path_traversal(storage: ValkeyStorage) -> None:
    with pytest.raises(StorageError):
        await storage.write("../etc/passwd", b"data")
    with pytest.raises(StorageError):
        await storage.write("../escape", b"data")


async def test_namespace(storage: ValkeyStorage) -> None:
    ns = storage.namespace("scope")
    await ns.write("key", b"value")
    assert await ns.read("key") == b"value"
    assert await storage.read("scope/key") == b"value"


async def test_namespace_returns_scoped_instance(storage: ValkeyStorage) -> None:
    scoped = storage.namespace("memory/agent")
    await scoped.write("notes.md", b"hello")

    assert isinstance(scoped, ValkeyStorage)
    assert getattr(scoped, "_namespaced", None) is _NAMESPACED
    assert await storage.list("") == ["memory/agent/notes.md"]
    assert await scoped.list("") == ["notes.md"]
    await scoped.delete("notes.md")
    assert await storage.list("") == []


async def test_namespace_composes(storage: ValkeyStorage) -> None:
    await storage.namespace("a").namespace("b/").write("k", b"v")
    assert await storage.list("") == ["a/b/k"]


async def test_namespace_search_is_scoped(storage: ValkeyStorage) -> None:
    await storage.write("other/memory-agent-notes.md", b"unrelated")
    scoped = storage.namespace("memory/agent")
    await scoped.write("deploy.md", b"blue green deploys")
    await scoped.write("theme.md", b"dark mode")

    results = await scoped.search("memory agent deploy")

    assert [result.key for result in results] == ["deploy.md"]


async def test_namespace_passes_scoped_instance_to_strategy(make_storage: StorageFactory) -> None:
    strategy = AsyncMock()
    strategy.search.return_value = []
    scoped = make_storage(search_strategy=strategy).namespace("memory/agent")

    await scoped.write("deploy.md", b"x")
    await scoped.search("query")

    strategy.index.assert_awaited_once_with(scoped, "deploy.md", b"x")
    strategy.search.assert_awaited_once_with(scoped, "query")


async def test_namespace_keeps_subclass_overrides_and_attributes(storage: ValkeyStorage) -> None:
    class TaggedStorage(ValkeyStorage):
        def __init__(self, client: Any) -> None:
            super().__init__(client)
            self.tag = "custom"

        async def search(self, query: str) -> list[StorageSearchResult]:
            return [StorageSearchResult(key=f"{self.tag}:{query}", score=1.0)]

    parent = TaggedStorage(storage.client)
    try:
        scoped = parent.namespace("memory").namespace("agent")
        await scoped.write("notes.md", b"hello")

        assert isinstance(scoped, TaggedStorage)
        assert [result.key for result in await scoped.search("q")] == ["custom:q"]
        assert await parent.list("") == ["memory/agent/notes.md"]
        assert getattr(parent, "_namespaced", None) is None
        # test_s3_storage.py: the scoped view shares the parent's client
        assert scoped.client is parent.client
        assert await parent.read("memory/agent/notes.md") == b"hello"
    finally:
        await parent.aclose()


async def test_bytes_are_copied_on_write(storage: ValkeyStorage) -> None:
    data = bytearray(b"mutable")
    await storage.write("key", data)  # type: ignore[arg-type]
    data[0] = 0xFF
    assert await storage.read("key") == b"mutable"


async def test_search_returns_matching_results(storage: ValkeyStorage) -> None:
    await storage.write("dark-mode.md", b"enable dark mode in settings")
    await storage.write("deploy.md", b"deploy to production")
    results = await storage.search("dark mode")
    assert len(results) == 1
    assert results[0].key == "dark-mode.md"
    assert results[0].score > 0


async def test_write_indexes_with_search_strategy(make_storage: StorageFactory) -> None:
    strategy = AsyncMock()
    storage = make_storage(search_strategy=strategy)
    await storage.write("key", b"data")
    strategy.index.assert_awaited_once_with(storage, "key", b"data")


async def test_search_delegates_to_strategy(make_storage: StorageFactory) -> None:
    strategy = AsyncMock()
    strategy.search.return_value = []
    storage = make_storage(search_strategy=strategy)
    await storage.search("query")
    strategy.search.assert_awaited_once_with(storage, "query")


# -- test_local_file_storage.py --------------------------------------------------------------------


async def test_write_creates_directories(storage: ValkeyStorage) -> None:
    await storage.write("a/b/c/file.txt", b"deep")
    assert await storage.read("a/b/c/file.txt") == b"deep"


async def test_list_single_segment_keys(storage: ValkeyStorage) -> None:
    """``TestLocalFileStorage.test_list_all``: keys without any ``/``."""
    await storage.write("b", b"")
    await storage.write("a", b"")
    await storage.write("c", b"")
    keys = await storage.list("")
    assert keys == ["a", "b", "c"]


async def test_list_nested(storage: ValkeyStorage) -> None:
    await storage.write("a/1", b"")
    await storage.write("a/2", b"")
    await storage.write("a/sub/3", b"")
    keys = await storage.list("a/")
    assert keys == ["a/1", "a/2", "a/sub/3"]


async def test_atomic_write_leaves_no_other_keys(storage: ValkeyStorage) -> None:
    """``test_atomic_write``: no temporary entry is ever visible."""
    await storage.write("file.txt", b"content")
    assert await storage.list("") == ["file.txt"]


async def test_namespace_returns_valkey_storage(storage: ValkeyStorage) -> None:
    ns = storage.namespace("scope")
    assert isinstance(ns, ValkeyStorage)
    assert ns._namespaced is _NAMESPACED  # type: ignore[attr-defined]
    assert isinstance(ns, Storage)


async def test_search_returns_matching_nested_results(storage: ValkeyStorage) -> None:
    await storage.write("notes/dark-mode.md", b"enable dark mode in settings")
    await storage.write("notes/deploy.md", b"deploy to production")
    results = await storage.search("dark mode")
    assert len(results) == 1
    assert results[0].key == "notes/dark-mode.md"
    assert results[0].score > 0


async def test_binary_round_trip(storage: ValkeyStorage) -> None:
    binary_data = bytes(range(256))
    await storage.write("binary.bin", binary_data)
    assert await storage.read("binary.bin") == binary_data


async def test_read_error_raises_storage_error(storage: ValkeyStorage, storage_backend: Backend) -> None:
    await storage.write("key", b"data")
    admin = _admin(storage_backend)
    try:
        value_key = _layout().locate("key").value
        admin.delete(value_key)
        admin.hset(value_key, "field", "not a string")
    finally:
        admin.close()
    with pytest.raises(StorageError, match="Failed to read 'key'"):
        await storage.read("key")


async def test_list_prefix_narrows_directory(storage: ValkeyStorage) -> None:
    await storage.write("deep/nested/a.txt", b"a")
    await storage.write("deep/nested/b.txt", b"b")
    await storage.write("deep/other/c.txt", b"c")
    keys = await storage.list("deep/nested/")
    assert keys == ["deep/nested/a.txt", "deep/nested/b.txt"]


async def test_list_prefix_nonexistent_dir(storage: ValkeyStorage) -> None:
    keys = await storage.list("nonexistent/path/")
    assert keys == []


async def test_list_prefix_partial_match_dir(storage: ValkeyStorage) -> None:
    await storage.write("ab/file.txt", b"data")
    keys = await storage.list("abc/")
    assert keys == []


def _plant_wrong_type(backend: Backend, key: str) -> None:
    """Replace the group index of ``key`` with a string, so our scripts refuse to touch it."""
    admin = _admin(backend)
    try:
        admin.set(_layout().locate(key).index, b"not a sorted set")
    finally:
        admin.close()


async def test_delete_error_raises_storage_error(storage: ValkeyStorage, storage_backend: Backend) -> None:
    await storage.write("key.txt", b"data")
    _plant_wrong_type(storage_backend, "key.txt")
    with pytest.raises(StorageError, match=r"Failed to delete 'key\.txt'"):
        await storage.delete("key.txt")
    assert await storage.read("key.txt") == b"data"  # nothing was deleted


async def test_list_error_raises_storage_error(storage: ValkeyStorage, storage_backend: Backend) -> None:
    admin = _admin(storage_backend)
    try:
        admin.set(_layout().groups, b"not a sorted set")
    finally:
        admin.close()
    with pytest.raises(StorageError, match="Failed to list"):
        await storage.list("")


async def test_write_atomic_cleanup_on_replace_failure(storage: ValkeyStorage, storage_backend: Backend) -> None:
    """A refused write leaves the old value and no partial state."""
    await storage.write("key", b"original")
    _plant_wrong_type(storage_backend, "key")
    with pytest.raises(ValkeyStorageError, match="Failed to write 'key'"):
        await storage.write("key", b"new data")
    assert await storage.read("key") == b"original"


async def test_namespace_preserves_search_strategy(make_storage: StorageFactory) -> None:
    strategy = AsyncMock()
    storage = make_storage(search_strategy=strategy)
    ns = storage.namespace("scope")
    assert ns._search_strategy is strategy


# -- test_s3_storage.py ----------------------------------------------------------------------------


async def test_namespace_returns_scoped_instance_in_other_server_namespace(make_storage: StorageFactory) -> None:
    storage = make_storage(namespace="agents")
    scoped = storage.namespace("memory/agent/")
    await scoped.write("notes.md", b"hello")

    assert isinstance(scoped, ValkeyStorage)
    assert getattr(scoped, "_namespaced", None) is _NAMESPACED
    assert await storage.list("") == ["memory/agent/notes.md"]
    assert await scoped.list("") == ["notes.md"]
    assert await storage.namespace("memory").namespace("agent").read("notes.md") == b"hello"
    # another server namespace sees none of it
    assert await make_storage().list("") == []


async def test_namespace_shares_client(storage: ValkeyStorage) -> None:
    scoped = storage.namespace("a").namespace("b")
    assert scoped.client is storage.client


async def test_list_across_more_groups_than_one_pipeline(
    storage: ValkeyStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``test_list_pagination``: list("") over more groups than one pipeline carries."""
    monkeypatch.setattr(storage_module, "_LIST_BATCH", 4)
    for i in range(11):
        await storage.write(f"item_{i:03d}/x/y", b"data")
    keys = await storage.list("")
    assert len(keys) == 11
    assert keys == sorted(keys)
    assert await storage.list("item_01") == ["item_010/x/y"]


async def test_server_key_holds_the_namespace(make_storage: StorageFactory, storage_backend: Backend) -> None:
    """``TestS3StorageWithPrefix.test_prefix_scopes_keys``: the server key carries the namespace."""
    storage = make_storage(namespace="agents")
    await storage.write("key", b"hello")
    admin = _admin(storage_backend)
    try:
        assert admin.get("agents:storage:{key}:v:") == b"hello"
    finally:
        admin.close()
    assert await storage.list("") == ["key"]


# -- test_storage.py -------------------------------------------------------------------------------


async def test_is_a_storage(storage: ValkeyStorage) -> None:
    assert isinstance(storage, Storage)


async def test_sdk_wrapper_has_namespaced_sentinel(storage: ValkeyStorage) -> None:
    ns = _NamespacedStorage(storage, "prefix")
    assert ns._namespaced is _NAMESPACED


async def test_sdk_wrapper_write_read_round_trip(storage: ValkeyStorage) -> None:
    ns = _NamespacedStorage(storage, "scope")
    await ns.write("key", b"hello")
    assert await ns.read("key") == b"hello"
    assert await storage.read("scope/key") == b"hello"


async def test_sdk_wrapper_delete(storage: ValkeyStorage) -> None:
    ns = _NamespacedStorage(storage, "scope")
    await ns.write("key", b"data")
    await ns.delete("key")
    assert await ns.read("key") is None


async def test_sdk_wrapper_list_strips_prefix(storage: ValkeyStorage) -> None:
    ns = _NamespacedStorage(storage, "scope")
    await ns.write("a", b"1")
    await ns.write("b", b"2")
    await storage.write("other/x", b"3")
    keys = await ns.list("")
    assert keys == ["a", "b"]


async def test_sdk_wrapper_composable_nesting(storage: ValkeyStorage) -> None:
    ns1 = _NamespacedStorage(storage, "a")
    ns2 = ns1.namespace("b")
    await ns2.write("key", b"nested")
    assert await storage.read("a/b/key") == b"nested"
    assert await ns2.read("key") == b"nested"


async def test_sdk_wrapper_empty_prefix(storage: ValkeyStorage) -> None:
    ns = _NamespacedStorage(storage, "")
    await ns.write("key", b"data")
    assert await storage.read("key") == b"data"


async def test_sdk_wrapper_trailing_slash_prefix_does_not_corrupt_keys(storage: ValkeyStorage) -> None:
    ns = _NamespacedStorage(storage, "sessions/")
    await ns.write("key1", b"hello")
    keys = await ns.list("")
    assert keys == ["key1"]


async def test_sdk_wrapper_search_scopes_to_prefix(storage: ValkeyStorage) -> None:
    await storage.write("scope/a.md", b"dark mode toggle")
    await storage.write("scope/b.md", b"light mode")
    await storage.write("other/c.md", b"dark mode elsewhere")

    ns = _NamespacedStorage(storage, "scope")
    results = await ns.search("dark mode")

    keys = [r.key for r in results]
    assert "a.md" in keys
    assert all(not r.key.startswith("scope/") for r in results)
    assert all("other" not in r.key for r in results)


async def test_resolve_namespace_returns_as_is_when_already_namespaced(storage: ValkeyStorage) -> None:
    namespaced = storage.namespace("prefix")
    result = _resolve_namespace(namespaced, "another")
    assert result is namespaced


async def test_resolve_namespace_calls_namespace_method(storage: ValkeyStorage) -> None:
    result = _resolve_namespace(storage, "my-prefix")
    assert getattr(result, "_namespaced", None) is _NAMESPACED
    assert isinstance(result, ValkeyStorage)


async def test_resolve_namespace_scoped_view_writes_under_prefix(storage: ValkeyStorage) -> None:
    scoped = _resolve_namespace(storage, "data")
    await scoped.write("key.txt", b"hello")
    assert await storage.read("data/key.txt") == b"hello"


# -- beyond the SDK's tests ------------------------------------------------------------------------

# Keys of every shape the group rule distinguishes: one, two and more segments, keys equal to a
# group, groups that are prefixes of other groups' names, and characters that mean something to
# the server or to glob patterns.
SHAPED_KEYS = (
    "a",
    "a/b",
    "a/b/c",
    "a/b/c/d",
    "a/bc",
    "a/bc/d",
    "ab",
    "ab/c",
    "abc/d/e",
    "b",
    "session/s1/scopes/agent/a1/snapshots/snapshot_latest.json",
    "session/s1/scopes/agent/a1/snapshots/immutable_history/snapshot_0190.json",
    "session/s10/scopes/agent/a1/snapshots/snapshot_latest.json",
    "session/s1x/x",
    "session/x",
    "context/s1/scopes/agent/a1/tu-1_0",
    "k{tag}/v:1/*?[x]",
    "k{tag}/v:2",
    "ünï/cødé/✓",
    "sp ace/ta\tb/n\nl",
)
PREFIXES = (
    "",
    "a",
    "a/",
    "a/b",
    "a/b/",
    "a/b/c",
    "a/bc",
    "ab",
    "ab/",
    "abc",
    "b",
    "c",
    "session",
    "session/",
    "session/s1",
    "session/s1/",
    "session/s1/scopes/agent/a1/snapshots/immutable_history/",
    "session/s10/",
    "context/s1/",
    "k{",
    "k{tag}/v:",
    "ü",
    "ünï/cødé/",
    "sp ace/ta\tb/",
    "zzz",
)


async def test_list_matches_the_sdk_in_memory_storage(storage: ValkeyStorage) -> None:
    """Every prefix lists exactly what the SDK's ``InMemoryStorage`` lists, before and after deletes."""
    reference = InMemoryStorage()
    for key in SHAPED_KEYS:
        await storage.write(key, key.encode())
        await reference.write(key, key.encode())
    for prefix in PREFIXES:
        assert await storage.list(prefix) == await reference.list(prefix), prefix
    for key in ("a", "a/b/c", "session/s1/scopes/agent/a1/snapshots/snapshot_latest.json", "k{tag}/v:2", "b"):
        await storage.delete(key)
        await reference.delete(key)
    for prefix in PREFIXES:
        assert await storage.list(prefix) == await reference.list(prefix), prefix
    for key in SHAPED_KEYS:
        assert await storage.read(key) == await reference.read(key), key


HOSTILE = [*string.punctuation.replace("/", "").replace("\\", ""), "é", "✓", " ", "\t", "\x00"]


async def test_hostile_characters_round_trip(storage: ValkeyStorage) -> None:
    """Punctuation (braces, colons, glob characters), non-ASCII and control characters in every position."""
    for char in HOSTILE:
        key = f"h{char}/s{char}{char}/k{char}"
        await storage.write(key, char.encode())
        await storage.write(f"h{char}/s/other", b"w")
    for char in HOSTILE:
        key = f"h{char}/s{char}{char}/k{char}"
        assert await storage.read(key) == char.encode(), char
        assert await storage.list(f"h{char}/s{char}") == [key], char
        assert await storage.list(f"h{char}/") == sorted([key, f"h{char}/s/other"]), char
        await storage.delete(key)
    expected = sorted(f"h{char}/s/other" for char in HOSTILE)
    assert await storage.list("") == expected
    assert await storage.list("h") == expected


async def test_delete_leaves_prefix_sibling_intact(storage: ValkeyStorage) -> None:
    await storage.write("session/abc/k", b"1")
    await storage.write("session/abcd/k", b"2")
    for key in await storage.list("session/abc/"):
        await storage.delete(key)
    assert await storage.list("") == ["session/abcd/k"]
    assert await storage.read("session/abcd/k") == b"2"


async def test_empty_value_round_trips(storage: ValkeyStorage) -> None:
    await storage.write("empty", b"")
    assert await storage.read("empty") == b""
    assert await storage.list("") == ["empty"]


async def test_large_binary_value_round_trips(storage: ValkeyStorage) -> None:
    value = bytes(range(256)) * 4096  # 1 MiB, every byte value
    await storage.write("session/s/big.bin", value)
    assert await storage.read("session/s/big.bin") == value


async def test_deleting_the_last_key_of_a_group_keeps_the_others_listed(storage: ValkeyStorage) -> None:
    await storage.write("g/1/x", b"")
    await storage.write("g/2/x", b"")
    await storage.delete("g/1/x")
    assert await storage.list("g/") == ["g/2/x"]
    await storage.write("g/1/y", b"")
    assert await storage.list("g/") == ["g/1/y", "g/2/x"]


@pytest.mark.backends("cluster")
async def test_one_sessions_keys_share_one_slot(storage: ValkeyStorage, storage_backend: Backend) -> None:
    keys = [
        "session/s1/scopes/agent/a1/snapshots/snapshot_latest.json",
        "session/s1/scopes/agent/a1/snapshots/immutable_history/snapshot_0190.json",
        "session/s1/scopes/multiAgent/g1/snapshots/snapshot_latest.json",
    ]
    for key in keys:
        await storage.write(key, b"x")
    layout = _layout()
    admin = _admin(storage_backend)
    try:
        slots = {
            admin.keyslot(server_key)
            for key in keys
            for server_key in (layout.locate(key).value, layout.index(_storage_keys.group_of(key)))
        }
        other = admin.keyslot(layout.locate("session/s2/scopes/agent/a1/snapshots/snapshot_latest.json").value)
    finally:
        admin.close()
    assert len(slots) == 1
    assert other not in slots
    assert await storage.list("session/s1/") == sorted(keys)


@pytest.mark.backends("cluster")
def test_a_standalone_client_on_a_cluster_mode_node(backend: Backend) -> None:
    """A standalone client talking to a cluster-mode server that owns the slots it uses.

    The standalone write script spans two slots (the key's group and the groups index), which the
    server refuses with CROSSSLOT before running it; the storage then writes the groups index apart,
    as on a cluster, and the data reads the same through a cluster client.
    """
    import asyncio

    layout = _layout()
    cluster_client = _admin(backend)
    try:
        node = cluster_client.get_node_from_key(layout.groups)
        group = next(
            f"session/s{i}"
            for i in range(10_000)
            if cluster_client.get_node_from_key(layout.index(f"session/s{i}")).name == node.name
        )
        key = f"{group}/scopes/agent/a1/snapshots/snapshot_latest.json"
        standalone: Any = valkey.Valkey(node.host, node.port, decode_responses=True)
        storage = ValkeyStorage(standalone)
        try:
            asyncio.run(storage.write(key, b"\xff\x00"))
            assert storage._io.split_groups is True
            assert asyncio.run(storage.read(key)) == b"\xff\x00"
            assert asyncio.run(storage.list(f"{group}/")) == [key]
            assert asyncio.run(storage.list("")) == [key]
            assert asyncio.run(ValkeyStorage(cluster_client).list("session/")) == [key]
            asyncio.run(storage.delete(key))
            assert asyncio.run(ValkeyStorage(cluster_client).read(key)) is None
        finally:
            standalone.close()
    finally:
        cluster_client.close()
