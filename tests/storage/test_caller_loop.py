"""``ValkeyStorage(asyncio_client, caller_loop=True)``: every call on the caller's event loop.

By default an asyncio client is driven from the storage's private I/O loop (the SDK calls storage
from many short-lived loops), two thread crossings per call. With ``caller_loop`` the calls run on
the loop they come from, which must be one loop for the storage's life: a call from another loop
is refused before anything is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import valkey
import valkey.asyncio
import valkey.asyncio.cluster

from strands_valkey_session_manager import ValkeyStorageError
from strands_valkey_session_manager._engine import io_loop
from strands_valkey_session_manager.storage import ValkeyStorage, _Connection
from tests.conftest import Backend, ServerTargets
from tests.interleave import LostReplyProxy
from tests.servers import ServerProcess


@pytest.fixture(params=["valkey9", "cluster"])
def target(request: pytest.FixtureRequest, server_targets: ServerTargets) -> Iterator[Backend]:
    backend = server_targets.get(request.param)
    sync = backend.make_client("valkey-py-bytes" if request.param == "valkey9" else "valkey-cluster-bytes")
    sync.flushall()
    try:
        yield backend
    finally:
        sync.close()


def _client(backend: Backend) -> Any:
    if backend.name == "cluster":
        node: Any = valkey.asyncio.cluster.ClusterNode
        return valkey.asyncio.cluster.ValkeyCluster(startup_nodes=[node(h, p) for h, p in backend.startup_nodes])
    return valkey.asyncio.Valkey(host=backend.host, port=backend.port)


@pytest.fixture
def no_io_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any) -> Any:
        raise AssertionError("a call was handed to the storage's I/O loop")

    monkeypatch.setattr(io_loop, "submit", refuse)


@pytest.mark.usefixtures("no_io_loop")
def test_every_operation_runs_on_the_callers_loop(target: Backend) -> None:
    async def main() -> None:
        client = _client(target)
        storage = ValkeyStorage(client, caller_loop=True, search_index=("memory/",))
        await storage.write("memory/a.md", b"green tea")
        await storage.write("memory/b.md", b"dark mode")
        assert await storage.read("memory/a.md") == b"green tea"
        assert await storage.list("memory/") == ["memory/a.md", "memory/b.md"]
        assert [r.key for r in await storage.search("tea")] == ["memory/a.md"]
        await storage.delete("memory/a.md")
        assert await storage.read("memory/a.md") is None
        assert await storage.namespace("memory/").read("b.md") == b"dark mode"
        await storage.aclose()
        # The client passed in is the caller's: still open and usable on its loop.
        assert await client.get(target_key(storage, "memory/b.md")) == b"dark mode"
        await client.aclose()

    asyncio.run(main())


def target_key(storage: ValkeyStorage, key: str) -> str:
    return storage._layout.locate(key).value


def test_a_call_from_another_loop_is_refused_and_sends_nothing(target: Backend) -> None:
    client = _client(target)
    storage = ValkeyStorage(client, caller_loop=True)
    asyncio.run(storage.write("k", b"first"))  # this loop becomes the storage's
    for call in (storage.write("k", b"second"), storage.read("k"), storage.delete("k"), storage.list("")):
        with pytest.raises(ValkeyStorageError, match="caller_loop=True, and this call runs on another event loop"):
            asyncio.run(call)
    sync = target.make_client("valkey-py-bytes" if target.name == "valkey9" else "valkey-cluster-bytes")
    try:
        assert sync.get(target_key(storage, "k")) == b"first"
    finally:
        sync.close()


def test_a_killed_connection_is_repeated_on_the_callers_loop(target: Backend) -> None:
    async def main() -> None:
        client = _client(target)
        storage = ValkeyStorage(client, caller_loop=True, retry_backoff=0.0)
        await storage.write("k", b"v")
        admin = target.make_client("valkey-py-bytes" if target.name == "valkey9" else "valkey-cluster-bytes")
        try:
            admin.client_kill_filter(_type="normal", skipme=True)
        finally:
            admin.close()
        assert await storage.read("k") == b"v"
        await storage.write("k", b"w")
        assert await storage.read("k") == b"w"
        await client.aclose()

    asyncio.run(main())


@pytest.mark.validation
def test_caller_loop_needs_an_asyncio_client(valkey9_server: Any) -> None:
    client = valkey.Valkey(valkey9_server.host, valkey9_server.port)
    try:
        with pytest.raises(ValueError, match=r"caller_loop=True \| applies to asyncio clients"):
            ValkeyStorage(client, caller_loop=True)
    finally:
        client.close()


class _PlanRun(Exception):
    """Raised instead of running a plan (the test's marker)."""


def test_plain_calls_on_the_callers_loop_need_no_plan(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain read, write or delete is sent as its one command, as on an inline sync client."""

    async def refuse(self: _Connection, plan: Any, operation: str, key: str) -> Any:
        raise _PlanRun(operation)

    monkeypatch.setattr(_Connection, "run", refuse)

    async def main() -> None:
        client = valkey.asyncio.Valkey(host=server.host, port=server.port)
        storage = ValkeyStorage(client, caller_loop=True)
        await storage.write("memory/a.md", b"tea")
        assert await storage.read("memory/a.md") == b"tea"
        await storage.delete("memory/a.md")
        assert await storage.read("memory/a.md") is None
        with pytest.raises(_PlanRun):
            await storage.list("")
        await client.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("command", [b"GET", b"EVALSHA"])
def test_a_lost_reply_on_the_callers_loop_is_repeated(server: ServerProcess, command: bytes) -> None:
    proxy = LostReplyProxy(server.port)

    async def main() -> None:
        client = valkey.asyncio.Valkey(host="127.0.0.1", port=proxy.port)
        storage = ValkeyStorage(client, caller_loop=True, retries=2, retry_backoff=0)
        await storage.write("memory/a.md", b"old")
        proxy.lose_reply_to(command)
        if command == b"GET":
            assert await storage.read("memory/a.md") == b"old"
        else:
            await storage.write("memory/a.md", b"new")
            assert await storage.read("memory/a.md") == b"new"
        assert proxy.lost == 1
        assert await storage.list("memory/") == ["memory/a.md"]
        await client.aclose()

    try:
        asyncio.run(main())
    finally:
        proxy.close()


def test_the_sdks_synchronous_paths_get_a_clear_error(server: ServerProcess) -> None:
    """A synchronous ``Agent``'s session manager calls storage on a new loop each time: refused."""
    from strands import Agent
    from strands.session import SnapshotSessionManager

    from strands_valkey_session_manager.scripted_model import ScriptedModel

    client = valkey.asyncio.Valkey(host=server.host, port=server.port)
    storage = ValkeyStorage(client, caller_loop=True)
    with pytest.raises(Exception) as raised:  # whatever the SDK wraps it in
        agent = Agent(
            model=ScriptedModel(["hello"]),
            session_manager=SnapshotSessionManager("s-sync", storage=storage),
            callback_handler=None,
        )
        agent("hi")
    chain = [raised.value, *_causes(raised.value)]
    assert any(isinstance(e, ValkeyStorageError) and "caller_loop=True" in str(e) for e in chain), chain


def _causes(error: BaseException) -> list[BaseException]:
    out = []
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
        out.append(error)
    return out


@pytest.mark.parametrize("library", ["redis-py", "glide"])
def test_other_asyncio_clients_on_the_callers_loop(target: Backend, library: str, no_io_loop: None) -> None:
    """redis-py's asyncio client, and a GLIDE asyncio client made on the caller's loop (its own)."""
    redis_kind = "redis-cluster-bytes" if target.name == "cluster" else "redis-py-bytes"
    kind = target.glide_kind if library == "glide" else redis_kind

    async def main() -> None:
        made = target.make_async_client(kind)
        client = await made if library == "glide" else made
        storage = ValkeyStorage(client, caller_loop=True)
        await asyncio.gather(*(storage.write(f"k/{i}", b"%d" % i) for i in range(50)))
        assert await asyncio.gather(*(storage.read(f"k/{i}") for i in range(50))) == [b"%d" % i for i in range(50)]
        assert len(await storage.list("k/")) == 50
        await storage.aclose()
        await client.close() if library == "glide" else await client.aclose()

    asyncio.run(main())


def test_a_glide_client_made_on_another_loop_is_refused_there(server: ServerProcess) -> None:
    """A GLIDE asyncio client answers only on its own loop: that loop is the storage's from the start."""
    import glide

    async def make() -> Any:
        config = glide.GlideClientConfiguration([glide.NodeAddress(server.host, server.port)])
        return await glide.GlideClient.create(config)

    client = io_loop.submit(make()).result()
    try:
        storage = ValkeyStorage(client, caller_loop=True)
        with pytest.raises(ValkeyStorageError, match="caller_loop=True, and this call runs on another event loop"):
            asyncio.run(storage.write("k", b"v"))
    finally:
        io_loop.submit(client.close()).result()


def test_the_other_paths_on_the_callers_loop(server: ServerProcess) -> None:
    """Staged large values, compare-and-set, views, pages, prefix deletes, the search index build,
    a replica wait and a closed storage: each as on the private loop."""
    from strands_valkey_session_manager import StorageConflictError, StorageReplicationTimeoutError
    from strands_valkey_session_manager.storage import KeyQuery

    async def main() -> None:
        client = valkey.asyncio.Valkey(host=server.host, port=server.port)
        storage = ValkeyStorage(client, caller_loop=True, search_index=True)
        big = bytes(range(256)) * (12 << 10)  # 3 MiB: staged, not through Lua
        await storage.write("a/big", big)
        assert await storage.read("a/big") == big
        await storage.compare_and_write("a/c", b"1", None)
        with pytest.raises(StorageConflictError):
            await storage.compare_and_write("a/c", b"2", None)
        view = storage.namespace("t1")
        await view.write("x", b"y")
        assert await view.read("x") == b"y"
        assert await storage.list(KeyQuery(prefix="a/", limit=1)) == ["a/big"]
        assert await storage.delete_prefix("a/") == 2
        await storage.write("n/1", b"green tea")
        assert [r.key for r in await storage.search("tea")] == ["n/1"]
        assert (await storage.build_search_index()).done
        waiting = ValkeyStorage(client, caller_loop=True, wait_for_replicas=1, wait_timeout=0.2)
        with pytest.raises(StorageReplicationTimeoutError):
            await waiting.write("w", b"1")  # no replica: applied, not acknowledged
        await storage.aclose()
        with pytest.raises(ValkeyStorageError, match="the storage is closed"):
            await storage.read("n/1")
        await client.aclose()

    asyncio.run(main())


def test_a_call_cancelled_mid_reply_splices_nothing_into_the_next(server: ServerProcess) -> None:
    """A read of 8 MiB cancelled at different moments; the next read on the loop gets its own value."""

    async def main() -> None:
        client = valkey.asyncio.Valkey(host=server.host, port=server.port)
        storage = ValkeyStorage(client, caller_loop=True)
        await storage.write("big", bytes(8 << 20))
        await storage.write("small", b"small")
        for delay in (0, 0.0001, 0.0005, 0.001, 0.002, 0.004):
            task = asyncio.ensure_future(storage.read("big"))
            await asyncio.sleep(delay)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert await storage.read("small") == b"small"
        await client.aclose()

    asyncio.run(main())
