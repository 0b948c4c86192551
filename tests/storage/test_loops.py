"""``ValkeyStorage`` called the way the SDK calls it: from many short-lived event loops, threads and tasks.

The SDK runs storage calls of synchronous code paths (``SnapshotSessionManager.initialize``,
``sync_agent``) through ``strands._async.run_async``: a new thread and a new event loop per call.
An asyncio client bound to the first loop would fail on the second ("Event loop is closed"); these
tests run every client kind (sync and asyncio, both libraries, both decodings, standalone and
cluster) through that pattern. Also: the round trips of each operation, counted on the wire.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from strands._async import run_async

from strands_valkey_session_manager.storage import ValkeyStorage
from tests.roundtrips import count_round_trips
from tests.storage.conftest import Case, StorageFactory, make_async_client


def test_twenty_event_loops_in_a_row(any_storage: ValkeyStorage) -> None:
    """20 ``asyncio.run`` calls in a row, each writing and reading, on every client kind."""
    for i in range(20):
        key = f"session/s1/scopes/agent/a1/snapshots/step_{i:02d}.json"
        value = bytes([i]) * 3 + b"\xff\x00"

        async def step(key: str = key, value: bytes = value) -> tuple[bytes | None, list[str]]:
            await any_storage.write(key, value)
            return await any_storage.read(key), await any_storage.list("session/s1/")

        read, listed = asyncio.run(step())
        assert read == value
        assert len(listed) == i + 1


def test_the_sdks_run_async_bridge(any_storage: ValkeyStorage) -> None:
    """The SDK's own bridge (a thread and a loop per call), 20 times."""
    for i in range(20):
        run_async(lambda i=i: any_storage.write(f"k/{i}", b"%d" % i))
        assert run_async(lambda i=i: any_storage.read(f"k/{i}")) == b"%d" % i
    assert len(run_async(lambda: any_storage.list("k/"))) == 20


@pytest.mark.anyio
async def test_many_concurrent_calls_in_one_loop(storage: ValkeyStorage) -> None:
    keys = [f"session/s{i % 5}/scopes/agent/a/snapshots/{i}.json" for i in range(60)]
    await asyncio.gather(*(storage.write(key, key.encode()) for key in keys))
    values = await asyncio.gather(*(storage.read(key) for key in keys))
    assert values == [key.encode() for key in keys]
    assert await storage.list("session/") == sorted(keys)
    await asyncio.gather(*(storage.delete(key) for key in keys))
    assert await storage.list("") == []


def test_threads_each_running_their_own_loops(storage: ValkeyStorage) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(5):
                key = f"t/{n}/{i}"
                asyncio.run(storage.write(key, key.encode()))
                assert asyncio.run(storage.read(key)) == key.encode()
        except BaseException as e:  # collected and re-raised in the test thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(asyncio.run(storage.list("t/"))) == 20


@pytest.mark.storage_flavours("async")
def test_an_asyncio_client_stays_usable_by_its_owner_after_close(
    make_storage: StorageFactory, storage_case: Case
) -> None:
    """The storage drives a caller's asyncio client on its own loop; ``close()`` hands it back unharmed."""
    if storage_case.kind.startswith("glide"):
        pytest.skip("an asyncio GLIDE client answers only on the loop that made it (the storage's)")
    client = make_async_client(make_storage.backend, storage_case.kind)
    storage = ValkeyStorage(client)
    for i in range(3):
        asyncio.run(storage.write(f"own/{i}", b"x"))
    storage.close()

    async def use_directly_then_close() -> Any:
        # In one loop of the owner's: one asyncio client across two loops is the library's own limit.
        await client.set("direct", b"1")
        value = await client.get("direct")
        await (getattr(client, "aclose", None) or client.close)()
        return value

    assert asyncio.run(use_directly_then_close()) in (b"1", "1")


def test_closed_storage_refuses_use(storage: ValkeyStorage) -> None:
    asyncio.run(storage.write("k", b"v"))
    view = storage.namespace("scope")
    storage.close()
    storage.close()  # idempotent
    with pytest.raises(Exception, match="storage is closed") as raised:
        asyncio.run(view.read("k"))
    from strands.types.exceptions import StorageError

    assert isinstance(raised.value, StorageError)


# -- round trips -----------------------------------------------------------------------------------


@pytest.mark.storage_flavours("sync")
def test_round_trips_per_operation(storage: ValkeyStorage) -> None:
    if type(storage.client).__module__.startswith("glide"):
        pytest.skip("counted on valkey-py connections; GLIDE's: tests/test_glide.py::test_storage_round_trips")
    session_key = "session/s1/scopes/agent/a1/snapshots/snapshot_latest.json"

    async def warm_up() -> None:  # loads both scripts on every node that will run them
        await storage.write(session_key, b"0")
        await storage.delete("session/s1/missing")

    asyncio.run(warm_up())
    write_commands = ["ZADD", "EVALSHA"] if storage.cluster else ["EVALSHA"]
    cases: list[tuple[str, Any, list[str]]] = [
        ("write", lambda: storage.write(session_key, b"1"), write_commands),
        ("read", lambda: storage.read(session_key), ["GET"]),
        ("list one session", lambda: storage.list("session/s1/"), ["ZRANGEBYLEX"]),
        ("list one agent", lambda: storage.list("session/s1/scopes/agent/a1/"), ["ZRANGEBYLEX"]),
        ("list all", lambda: storage.list(""), ["ZRANGEBYLEX", "ZRANGEBYLEX"]),
        ("delete", lambda: storage.delete(session_key), ["EVALSHA"]),
    ]
    for name, call, expected in cases:
        with count_round_trips() as trips:
            asyncio.run(call())
        assert trips.commands == expected, (name, trips)
