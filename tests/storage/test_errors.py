"""``ValkeyStorage`` on bad input, oversize values, refusals and a server that goes away.

Every failure is a ``strands.types.exceptions.StorageError`` that names the key and chains the
client's exception; arguments of the wrong type are also ``TypeError``; constructor misuse is
``ValueError``/``TypeError``. The server-down tests use a dedicated Valkey 9 server (AOF on, so a
restart keeps what was written) that they kill and restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
import valkey
import valkey.asyncio
from strands.types.exceptions import StorageError

from strands_valkey_session_manager import _storage_keys
from strands_valkey_session_manager.storage import (
    DEFAULT_MAX_VALUE_BYTES,
    InvalidStorageArgumentError,
    StorageUnavailableError,
    StorageValueTooLargeError,
    ValkeyStorage,
    ValkeyStorageError,
)
from tests.conftest import Backend
from tests.servers import ServerProcess, kill9, restart, start_server
from tests.storage.conftest import StorageFactory

pytestmark = pytest.mark.anyio


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.backends("valkey9")
@pytest.mark.parametrize("data", ["text", None, 42, ["b"], {"a": 1}])
async def test_write_refuses_data_that_is_not_bytes(storage: ValkeyStorage, data: Any) -> None:
    with pytest.raises(InvalidStorageArgumentError, match="data must be bytes") as raised:
        await storage.write("k", data)
    assert isinstance(raised.value, StorageError)
    assert isinstance(raised.value, TypeError)
    assert await storage.list("") == []


async def test_str_data_error_says_how_to_fix_it(storage: ValkeyStorage) -> None:
    with pytest.raises(InvalidStorageArgumentError, match=r"encode it first, e\.g\. data\.encode"):
        await storage.write("k", "text")  # type: ignore[arg-type]


@pytest.mark.backends("valkey9")
async def test_bytes_like_data_is_accepted(storage: ValkeyStorage) -> None:
    await storage.write("a", bytearray(b"\x00\xff"))  # type: ignore[arg-type]
    await storage.write("b", memoryview(b"\x01\x02"))  # type: ignore[arg-type]
    assert await storage.read("a") == b"\x00\xff"
    assert await storage.read("b") == b"\x01\x02"


@pytest.mark.backends("valkey9")
@pytest.mark.parametrize("key", [b"k", None, 1, ("a",)])
async def test_keys_must_be_str(storage: ValkeyStorage, key: Any) -> None:
    for call in (storage.write(key, b"v"), storage.read(key), storage.delete(key), storage.list(key)):
        with pytest.raises(InvalidStorageArgumentError, match="must be a str"):
            await call


@pytest.mark.backends("valkey9")
@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "must not be empty"),
        ("///", "must not be empty"),
        ("a\\b", "backslashes are not allowed"),
        ("../x", "'..' path segments are not allowed"),
        ("a/../b", "'..' path segments are not allowed"),
        ("a/\udc80", "not valid Unicode"),
    ],
)
async def test_invalid_keys_are_refused_by_every_operation(storage: ValkeyStorage, key: str, message: str) -> None:
    for call in (storage.write(key, b"v"), storage.read(key), storage.delete(key)):
        with pytest.raises(StorageError, match=message):
            await call
    assert await storage.list("") == []


@pytest.mark.backends("valkey9")
@pytest.mark.parametrize("prefix", ["a\\", "../", "a/../", "\ud800"])
async def test_invalid_prefixes_are_refused(storage: ValkeyStorage, prefix: str) -> None:
    with pytest.raises(StorageError):
        await storage.list(prefix)


@pytest.mark.backends("valkey9")
async def test_namespace_views_refuse_invalid_prefixes(storage: ValkeyStorage) -> None:
    with pytest.raises(StorageError, match="path segments"):
        storage.namespace("a/..")
    with pytest.raises(StorageError, match="backslashes"):
        storage.namespace("a\\b")


# -- size limit ------------------------------------------------------------------------------------


async def test_oversize_value_is_refused_and_nothing_is_written(make_storage: StorageFactory) -> None:
    storage = make_storage(max_value_bytes=10)
    await storage.write("session/s/k", b"0123456789")  # exactly the limit
    with pytest.raises(StorageValueTooLargeError, match=r"'session/s/k'.*11 bytes exceeds max_value_bytes=10"):
        await storage.write("session/s/k", b"0123456789X")
    with pytest.raises(StorageError, match="'session/s/new'"):
        await storage.write("session/s/new", bytes(11))
    assert await storage.read("session/s/k") == b"0123456789"
    assert await storage.read("session/s/new") is None
    assert await storage.list("") == ["session/s/k"]


def test_default_limit(standalone_client: Any) -> None:
    storage = ValkeyStorage(standalone_client)
    assert storage.max_value_bytes == DEFAULT_MAX_VALUE_BYTES == 32 * 1024 * 1024


@pytest.mark.parametrize("limit", [0, -1, True, "10", 1.5])
def test_limit_must_be_a_positive_int(standalone_client: Any, limit: Any) -> None:
    with pytest.raises(ValueError, match="max_value_bytes"):
        ValkeyStorage(standalone_client, max_value_bytes=limit)


@pytest.mark.parametrize("namespace", ["", "a{b", "a}b", "a b", "a*", "a?b", "a[b"])
def test_namespace_must_be_plain(standalone_client: Any, namespace: str) -> None:
    with pytest.raises(ValueError, match="key prefix"):
        ValkeyStorage(standalone_client, namespace=namespace)


@pytest.mark.parametrize("not_a_client", [object(), {"host": "localhost"}, "valkey://localhost"])
def test_unsupported_clients_are_refused(not_a_client: Any) -> None:
    with pytest.raises(TypeError, match="valkey-py or redis-py client"):
        ValkeyStorage(not_a_client)


# -- from_url and ownership ------------------------------------------------------------------------


def test_from_url_owns_its_client(valkey9_server: ServerProcess, standalone_client: Any) -> None:
    storage = ValkeyStorage.from_url(valkey9_server.url, namespace="owned")
    closed: list[bool] = []
    original_close = storage.client.close
    storage.client.close = lambda: (closed.append(True), original_close())[1]
    with storage:
        asyncio.run(storage.write("k", b"\xff"))
        assert asyncio.run(storage.read("k")) == b"\xff"
        assert not storage.cluster
    assert closed == [True]
    storage.close()  # idempotent: closes once
    assert closed == [True]


def test_from_url_closes_its_client_when_the_arguments_are_refused(
    valkey9_server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Any] = []  # keeps the client alive, so only from_url can have closed it
    closed: list[Any] = []
    original_from_url = valkey.Valkey.from_url
    monkeypatch.setattr(
        valkey.Valkey, "from_url", lambda url, **kw: made.append(original_from_url(url, **kw)) or made[-1]
    )

    def record_close(self: Any) -> None:
        closed.append(self)

    monkeypatch.setattr(valkey.Valkey, "close", record_close)
    with pytest.raises(ValueError, match="key prefix"):
        ValkeyStorage.from_url(valkey9_server.url, namespace="a b")
    assert len(made) == 1
    assert closed == made


def test_a_client_passed_in_is_not_closed(standalone_client: Any) -> None:
    with ValkeyStorage(standalone_client) as storage:
        asyncio.run(storage.write("k", b"v"))
    assert standalone_client.ping()
    assert asyncio.run(ValkeyStorage(standalone_client).read("k")) == b"v"


@pytest.mark.backends("cluster")
def test_from_url_builds_a_cluster_client(backend: Backend) -> None:
    with ValkeyStorage.from_url(backend.url, cluster=True) as storage:
        assert storage.cluster
        asyncio.run(storage.write("session/s/k", b"v"))
        assert asyncio.run(storage.list("session/")) == ["session/s/k"]


def test_from_url_to_an_unreachable_cluster_is_unavailable() -> None:
    from tests.servers import free_port

    with pytest.raises(StorageUnavailableError, match=r"cannot connect to redis://127\.0\.0\.1:"):
        ValkeyStorage.from_url(f"redis://127.0.0.1:{free_port()}", cluster=True, socket_connect_timeout=0.5)


def test_namespace_views_share_the_client_and_close_it_once(valkey9_server: ServerProcess) -> None:
    storage = ValkeyStorage.from_url(valkey9_server.url)
    view = storage.namespace("a").namespace("b")
    assert view.client is storage.client
    assert repr(view) == "ValkeyStorage(namespace='strands', prefix='a/b/', client=Valkey)"
    view.close()
    with pytest.raises(ValkeyStorageError, match="closed"):
        asyncio.run(storage.read("k"))


# -- refusals by the server ------------------------------------------------------------------------


@pytest.mark.backends("cluster")
async def test_a_group_listed_without_keys_lists_nothing(storage: ValkeyStorage, storage_backend: Backend) -> None:
    """What a cluster write that failed after listing its group leaves: a group with no keys."""
    import valkey.cluster

    node: Any = valkey.cluster.ClusterNode
    admin = valkey.cluster.ValkeyCluster(startup_nodes=[node(h, p) for h, p in storage_backend.startup_nodes])
    try:
        admin.zadd(_storage_keys.StorageLayout("strands").groups, {"session/lost": 0})
    finally:
        admin.close()
    assert await storage.list("") == []
    assert await storage.list("session/") == []
    assert await storage.read("session/lost/k") is None
    await storage.write("session/lost/k", b"v")
    assert await storage.list("session/") == ["session/lost/k"]


# -- a dedicated server that goes away --------------------------------------------------------------


@pytest.fixture(scope="module")
def fragile_server() -> Iterator[ServerProcess]:
    server = start_server("valkey9", appendonly=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_fragile_server(fragile_server: ServerProcess) -> ServerProcess:
    if not fragile_server.is_running():
        restart(fragile_server)
    admin: Any = valkey.Valkey(fragile_server.host, fragile_server.port)
    try:
        admin.flushall()
        admin.config_set("maxmemory", 0)
        admin.execute_command("ACL", "DELUSER", "reader")
    finally:
        admin.close()
    return fragile_server


def _fast_failing_client(kind: str, server: ServerProcess) -> Any:
    """A client that fails at once when the server is gone (no retries, short timeouts)."""
    options: dict[str, Any] = {"socket_connect_timeout": 1, "socket_timeout": 1}
    if kind == "valkey-sync-str":
        from valkey.backoff import NoBackoff
        from valkey.retry import Retry

        return valkey.Valkey(server.host, server.port, decode_responses=True, retry=Retry(NoBackoff(), 0), **options)
    if kind == "redis-sync-bytes":
        from redis.backoff import NoBackoff as RedisNoBackoff
        from redis.retry import Retry as RedisRetry

        return redis.Redis(server.host, server.port, retry=RedisRetry(RedisNoBackoff(), 0), **options)
    if kind == "valkey-async-bytes":
        from valkey.asyncio.retry import Retry as AsyncRetry
        from valkey.backoff import NoBackoff

        return valkey.asyncio.Valkey(host=server.host, port=server.port, retry=AsyncRetry(NoBackoff(), 0), **options)
    from redis.asyncio.retry import Retry as RedisAsyncRetry
    from redis.backoff import NoBackoff as RedisNoBackoff

    return redis.asyncio.Redis(
        host=server.host, port=server.port, decode_responses=True, retry=RedisAsyncRetry(RedisNoBackoff(), 0), **options
    )


CLIENT_KINDS = ("valkey-sync-str", "redis-sync-bytes", "valkey-async-bytes", "redis-async-str")


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_server_down_raises_unavailable_and_leaves_no_partial_entry(
    fresh_fragile_server: ServerProcess, kind: str
) -> None:
    server = fresh_fragile_server
    client = _fast_failing_client(kind, server)
    storage = ValkeyStorage(client)
    family = valkey if kind.startswith("valkey") else redis
    try:
        asyncio.run(storage.write("session/s1/a", b"kept"))
        kill9(server)

        with pytest.raises(
            StorageUnavailableError, match=r"Failed to write 'session/s1/b': server unavailable"
        ) as raised:
            asyncio.run(storage.write("session/s1/b", b"lost"))
        assert isinstance(raised.value, StorageError)
        assert isinstance(raised.value.__cause__, family.exceptions.ConnectionError)
        for call, what in (
            (lambda: storage.read("session/s1/a"), "read 'session/s1/a'"),
            (lambda: storage.delete("session/s1/a"), "delete 'session/s1/a'"),
            (lambda: storage.list("session/"), "list keys with prefix 'session/'"),
        ):
            with pytest.raises(StorageUnavailableError, match=f"Failed to {what}"):
                asyncio.run(call())

        restart(server)
        # The refused write left nothing behind: no value, no index entry.
        assert asyncio.run(storage.list("")) == ["session/s1/a"]
        assert asyncio.run(storage.read("session/s1/b")) is None
        assert asyncio.run(storage.read("session/s1/a")) == b"kept"
        # And the same storage works again once the server is back.
        asyncio.run(storage.write("session/s1/b", b"later"))
        assert asyncio.run(storage.list("session/s1/")) == ["session/s1/a", "session/s1/b"]
    finally:
        storage.close()
        if kind.startswith(("valkey-async", "redis-async")):
            asyncio.run(client.aclose())
        else:
            client.close()


@pytest.mark.parametrize("kind", ["valkey-sync-str", "redis-async-str"])
def test_out_of_memory_refuses_the_write_whole(fresh_fragile_server: ServerProcess, kind: str) -> None:
    """The server refuses the script's first write: no value and no index entry are written."""
    server = fresh_fragile_server
    client = _fast_failing_client(kind, server)
    storage = ValkeyStorage(client)
    admin: Any = valkey.Valkey(server.host, server.port)
    try:
        asyncio.run(storage.write("memory/a", b"kept"))
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)
        with pytest.raises(StorageUnavailableError, match="Failed to write 'memory/b'"):
            asyncio.run(storage.write("memory/b", b"x" * 1000))
        with pytest.raises(StorageUnavailableError, match="Failed to write 'session/new/k'"):
            asyncio.run(storage.write("session/new/k", b"x"))
        admin.config_set("maxmemory", 0)
        assert asyncio.run(storage.list("")) == ["memory/a"]
        assert admin.exists(_storage_keys.StorageLayout("strands").index("session/new")) == 0
    finally:
        admin.config_set("maxmemory", 0)
        admin.close()
        storage.close()
        if kind.startswith("redis-async"):
            asyncio.run(client.aclose())
        else:
            client.close()


def test_acl_refusal_is_a_storage_error(fresh_fragile_server: ServerProcess) -> None:
    server = fresh_fragile_server
    admin: Any = valkey.Valkey(server.host, server.port)
    admin.execute_command("ACL", "SETUSER", "reader", "on", ">pw", "~*", "+get", "+zrangebylex", "+ping", "+client")
    client: Any = valkey.Valkey(server.host, server.port, username="reader", password="pw")
    storage = ValkeyStorage(client)
    try:
        with pytest.raises(
            ValkeyStorageError, match="Failed to write 'k': not permitted by the server's ACL"
        ) as raised:
            asyncio.run(storage.write("k", b"v"))
        assert not isinstance(raised.value, StorageUnavailableError)
        assert asyncio.run(storage.read("k")) is None
        assert asyncio.run(storage.list("")) == []
    finally:
        client.close()
        admin.close()
