"""Snapshots at scale: paged listing (``KeyQuery``, ``list_snapshot_ids``), bounded deletes
(``delete_prefix``, ``delete_session``) and the conditional ``snapshot_latest`` write
(``compare_and_write``, ``ValkeySnapshotSessionManager(conditional_latest=True)``): two real
clients interleaved, and a lost reply.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
import valkey
from strands import Agent
from strands._identifier import new_uuid7
from strands.session import SnapshotSessionManager
from strands.storage import InMemoryStorage
from strands.types.exceptions import StorageError

from strands_valkey_session_manager import (
    KeyQuery,
    StorageConflictError,
    ValkeySessionError,
    ValkeySnapshotSessionManager,
    ValkeyStorage,
)
from strands_valkey_session_manager.scripted_model import ScriptedModel
from strands_valkey_session_manager.servers import ServerProcess
from strands_valkey_session_manager.storage import STAGE_BYTES
from tests.interleave import LostReplyProxy
from tests.roundtrips import count_round_trips
from tests.storage.conftest import StorageFactory

SID = "s1"
HISTORY = f"{SID}/scopes/agent/a1/snapshots/immutable_history/"


@pytest.fixture
def server(valkey9_server: ServerProcess) -> ServerProcess:
    admin = valkey.Valkey(valkey9_server.host, valkey9_server.port)
    admin.flushall()
    admin.script_flush()  # a server's first use, whichever tests ran on it before (xdist order)
    admin.close()
    return valkey9_server


def _storage(port: int, **kwargs: Any) -> ValkeyStorage:
    return ValkeyStorage(valkey.Valkey("127.0.0.1", port), **kwargs)


async def _fill(storage: Any, keys: list[str]) -> None:
    for key in keys:
        await storage.write(key, key.encode())


KEYS = [
    "a",
    "a/b",
    "a.",
    "a/c",
    "a/b/c",
    "a/b/d/e",
    "a/bb/x",
    "b/x/1",
    "b/x/2",
    "b/y",
    "session/s1/x",
    "session/s1/y/z",
    "session/s2/x",
    "session/s10/x",
]


@pytest.mark.anyio
async def test_key_query_pages_equal_slices_of_the_sdk_listing(make_storage: StorageFactory) -> None:
    storage = make_storage()
    reference = InMemoryStorage()
    await _fill(storage, KEYS)
    await _fill(reference, KEYS)
    cursors = [None, "", "a", "a.", "a/", "a/b", "a/b/c", "a/bb", "b", "b/x/1", "session/s1/", "session/s1/x", "z"]
    for prefix in ["", "a", "a/", "a/b", "a/b/", "b/", "session/", "session/s1/", "nope/"]:
        everything = await reference.list(prefix)
        for after, limit in itertools.product(cursors, [None, 1, 2, 3, 100]):
            want = [k for k in everything if after is None or k > after][:limit]
            got = await storage.list(KeyQuery(prefix, start_after=after, limit=limit))
            assert got == want, (prefix, after, limit)


@pytest.mark.anyio
async def test_key_query_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="limit"):
        KeyQuery("a/", limit=0)
    with pytest.raises(TypeError):
        KeyQuery("a/", start_after=5)  # type: ignore[arg-type]
    with pytest.raises(StorageError):
        KeyQuery(3)  # type: ignore[arg-type]


def _agent(manager: SnapshotSessionManager, *turns: str, agent_id: str = "a1") -> Agent:
    return Agent(agent_id=agent_id, model=ScriptedModel(list(turns)), session_manager=manager, callback_handler=None)


def test_list_snapshot_ids_pages_read_one_page_and_equal_the_sdk(server: ServerProcess) -> None:
    storage = _storage(server.port)
    view = storage.namespace("session")
    ids = sorted(new_uuid7() for _ in range(1_200))

    async def fill() -> None:
        for snapshot_id in ids:
            await view.write(f"{HISTORY}snapshot_{snapshot_id}.json", b"{}")
        await view.write(f"{HISTORY}x-notes.txt", b"not a snapshot")  # skipped, as by the SDK

    asyncio.run(fill())
    ours = ValkeySnapshotSessionManager(SID, storage=storage)
    sdks = SnapshotSessionManager(SID, storage=storage)
    agent = _agent(SnapshotSessionManager("other", storage=InMemoryStorage()))
    agent.agent_id = "a1"
    for limit, start_after in [(None, None), (10, None), (10, ids[500]), (1, ids[-2]), (5, ids[-1]), (3000, ids[0])]:
        want = asyncio.run(sdks.list_snapshot_ids(agent, limit=limit, start_after=start_after))
        with count_round_trips() as trips:
            got = asyncio.run(ours.list_snapshot_ids(agent, limit=limit, start_after=start_after))
        assert got == want
        assert trips.value == 1, trips
    # A page reads its own keys, not the session's: the reply holds limit + 1 members at most.
    with count_round_trips() as trips:
        page = asyncio.run(ours.list_snapshot_ids(agent, limit=10, start_after=ids[100]))
    assert page == ids[101:111] and trips.commands == ["ZRANGEBYLEX"]
    with pytest.raises(ValueError, match="not a valid snapshot id"):
        asyncio.run(ours.list_snapshot_ids(agent, start_after="nope"))
    assert asyncio.run(ours.list_snapshot_ids(agent, limit=0)) == []
    storage.close()


def test_delete_session_with_thousands_of_snapshots_takes_two_round_trips(server: ServerProcess) -> None:
    storage = _storage(server.port)
    view = storage.namespace("session")
    admin = valkey.Valkey(server.host, server.port)

    async def fill(session_id: str, count: int) -> None:
        for i in range(count):
            await view.write(f"{session_id}/scopes/agent/a1/snapshots/immutable_history/snapshot_{i:05}.json", b"x")
        await view.write(f"{session_id}/scopes/agent/a1/snapshots/snapshot_latest.json", b"latest")
        await storage.write(f"context/{session_id}/a1/stash.json", b"stash")

    asyncio.run(fill(SID, 3_000))
    asyncio.run(fill("s10", 2))  # a session whose id extends the deleted one's: kept
    manager = ValkeySnapshotSessionManager(SID, storage=storage)
    with count_round_trips() as trips:
        asyncio.run(storage.namespace("warm").delete_prefix(""))  # nothing to delete: no script sent
    assert trips.value == 2  # the groups index (a one-segment prefix), then the group range
    asyncio.run(storage.write("warm/x", b"x"))
    with count_round_trips() as trips:
        asyncio.run(storage.delete_prefix("warm/"))  # a server's first use: the script is loaded
    # groups index, group range, then the scripts: sent, NOSCRIPT, loaded once, sent again
    assert trips.commands == ["ZRANGEBYLEX", "ZRANGEBYLEX", "EVALSHA", "SCRIPT", "EVALSHA"], trips
    with count_round_trips() as trips:
        asyncio.run(manager.delete_session())
    assert trips.value == 2, trips  # the session's and stash's indexes, then the scripts: one pipeline
    assert asyncio.run(storage.list("session/s1/")) == []
    assert asyncio.run(storage.list("context/s1/")) == []
    assert len(asyncio.run(storage.list("session/s10/"))) == 3
    assert asyncio.run(storage.list("context/s10/")) == ["context/s10/a1/stash.json"]
    # Nothing of s1 is left on the server: no value, no index, no search document.
    assert [k for k in admin.scan_iter(match="*session/s1}*")] == []
    # Deleting again is a no-op in one round trip (nothing to delete, no script sent).
    with count_round_trips() as trips:
        asyncio.run(manager.delete_session())
    assert trips.value == 1
    admin.close()
    storage.close()


@pytest.mark.anyio
async def test_delete_prefix_deletes_what_list_lists_and_nothing_else(make_storage: StorageFactory) -> None:
    storage = make_storage(search_index=True)
    for prefix in ["a/b", "a/", "b/x/", "session/", ""]:
        await _fill(storage, KEYS)
        kept = [k for k in KEYS if not k.startswith(prefix)]
        assert await storage.delete_prefix(prefix) == len(KEYS) - len(kept)
        assert await storage.list("") == sorted(kept), prefix
        # The search index lost the deleted keys with them.
        found = {r.key for r in await storage.search("a b x y session")}
        assert found <= set(kept), prefix
        await storage.delete_prefix("")
    assert await storage.delete_prefix("nothing/") == 0


# -- conditional writes --------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("size", [10, STAGE_BYTES])
async def test_compare_and_write(make_storage: StorageFactory, size: int) -> None:
    storage = make_storage()
    key = "session/s/scopes/agent/a/snapshots/snapshot_latest.json"
    one, two, three = (bytes([c]) * size for c in b"123")
    await storage.compare_and_write(key, one, None)  # created: there was no value
    with pytest.raises(StorageConflictError) as raised:
        await storage.compare_and_write(key, two, None)
    assert isinstance(raised.value, StorageError) and isinstance(raised.value, ValkeySessionError)
    assert await storage.read(key) == one
    await storage.compare_and_write(key, two, one)
    await storage.compare_and_write(key, two, one)  # a repeat of a write that happened: no conflict
    with pytest.raises(StorageConflictError):
        await storage.compare_and_write(key, three, one)
    assert await storage.read(key) == two
    assert await storage.list("session/s/") == [key]
    with pytest.raises(TypeError):
        await storage.compare_and_write(key, three, "two")  # type: ignore[arg-type]


def _saved(storage: ValkeyStorage, agent_id: str = "a1") -> bytes | None:
    return asyncio.run(storage.read(f"session/{SID}/scopes/agent/{agent_id}/snapshots/snapshot_latest.json"))


def test_two_replicas_saving_one_agent_conflict_instead_of_overwriting(server: ServerProcess) -> None:
    first, second = _storage(server.port), _storage(server.port)  # two clients, two connections
    one = _agent(ValkeySnapshotSessionManager(SID, storage=first, conditional_latest=True), "one", "three")
    two_manager = ValkeySnapshotSessionManager(SID, storage=second, conditional_latest=True)
    two = _agent(two_manager, "two", "four")  # both restored "no snapshot yet"
    one("hi")  # saves latest over nothing
    saved = _saved(first)
    assert saved is not None and b"one" in saved
    with pytest.raises(StorageConflictError):
        two("hi")  # its save finds the first replica's, not the nothing it restored
    assert _saved(first) == saved  # nothing overwritten
    # The documented way on: take the other save, then go on.
    assert asyncio.run(two_manager.restore_snapshot(two))
    assert [m["content"][0]["text"] for m in two.messages] == ["hi", "one"]
    two("again")
    after = _saved(first)
    assert after is not None and b"four" in after
    with pytest.raises(StorageConflictError):
        one("later")  # now the first replica is behind
    # Without the option, the SDK's behaviour: the last save wins silently.
    plain = _agent(SnapshotSessionManager(SID, storage=_storage(server.port)), "five")
    plain("hi")
    first.close()
    second.close()


def test_orchestrator_latest_is_conditional_too(server: ServerProcess) -> None:
    from strands.multiagent import GraphBuilder

    def graph(storage: ValkeyStorage, text: str) -> Any:
        builder = GraphBuilder()
        builder.add_node(Agent(model=ScriptedModel([text]), callback_handler=None), "only")
        builder.set_session_manager(ValkeySnapshotSessionManager(SID, storage=storage, conditional_latest=True))
        builder.set_graph_id("g1")
        return builder.build()

    first, second = graph(_storage(server.port), "one"), graph(_storage(server.port), "two")
    first("go")
    second("go")  # restores the first's state on its first invocation, then saves over it
    with pytest.raises(StorageConflictError):
        first("go")  # its save would overwrite the second's


def test_interleaved_conditional_writes_of_two_clients(server: ServerProcess) -> None:
    """Every order of two replicas' read-then-write of one latest: exactly the writes based on what
    is stored go through; the other raises and writes nothing."""
    key = "session/s/scopes/agent/a/snapshots/snapshot_latest.json"
    steps = {"A": ["read", "write"], "B": ["read", "write"]}
    orders = {tuple(o) for o in itertools.permutations(["A", "A", "B", "B"])}
    for order in sorted(orders):
        seed = _storage(server.port)
        asyncio.run(seed.write(key, b"v0"))
        views = {name: _storage(server.port).namespace("session")._conditional("snapshot_latest.json") for name in "AB"}
        done = {"A": 0, "B": 0}
        outcome: dict[str, str] = {}
        relative = key.removeprefix("session/")
        for actor in order:
            step = steps[actor][done[actor]]
            done[actor] += 1
            if step == "read":
                asyncio.run(views[actor].read(relative))
            else:
                try:
                    asyncio.run(views[actor].write(relative, f"by {actor}".encode()))
                    outcome[actor] = "written"
                except StorageConflictError:
                    outcome[actor] = "conflict"
        stored = asyncio.run(seed.read(key))
        first_writer = next(a for i, a in enumerate(order) if order[: i + 1].count(a) == 2)
        other = "B" if first_writer == "A" else "A"
        # The first write wins; the second is refused if its read came before the first write.
        other_read_at = order.index(other)
        first_write_at = max(i for i, a in enumerate(order) if a == first_writer)
        if other_read_at < first_write_at:
            assert outcome == {first_writer: "written", other: "conflict"}, order
            assert stored == f"by {first_writer}".encode(), order
        else:
            assert outcome == {first_writer: "written", other: "written"}, order
            assert stored == f"by {other}".encode(), order
        seed.client.flushall()
        for view in views.values():
            view.close()
        seed.close()


@pytest.mark.parametrize("size", [10, STAGE_BYTES])
def test_a_conditional_save_repeated_after_a_lost_reply_is_no_conflict(server: ServerProcess, size: int) -> None:
    proxy = LostReplyProxy(server.port)
    storage = ValkeyStorage(valkey.Valkey("127.0.0.1", proxy.port, retry_on_timeout=False), retries=2)
    try:
        manager = ValkeySnapshotSessionManager(SID, storage=storage, conditional_latest=True)
        agent = _agent(manager, "one " + "x" * size)
        proxy.lose_reply_to(b"snapshot_latest.json")  # the script (and staged value) run; reply lost
        agent("hi")
        assert proxy.lost == 1
        saved = _saved(_storage(server.port))
        assert saved is not None and b"one" in saved
        # The manager knows its own save: the next one is no conflict either.
        agent.model = ScriptedModel(["two"])
        agent("again")
        saved = _saved(_storage(server.port))
        assert saved is not None and b"two" in saved
    finally:
        storage.close()
        proxy.close()


def test_conditional_latest_needs_a_valkey_storage() -> None:
    with pytest.raises(TypeError, match="ValkeyStorage"):
        ValkeySnapshotSessionManager(SID, storage=InMemoryStorage(), conditional_latest=True)
    # Without the option, any storage: the SDK's manager.
    manager = ValkeySnapshotSessionManager(SID, storage=InMemoryStorage())
    agent = _agent(manager, "one")
    agent("hi")
    assert asyncio.run(manager.list_snapshot_ids(agent)) == []
    asyncio.run(manager.delete_session())


def test_manager_takes_the_agents_storage(server: ServerProcess) -> None:
    storage = _storage(server.port)
    manager = ValkeySnapshotSessionManager(SID, conditional_latest=True)
    agent = Agent(
        agent_id="a1",
        model=ScriptedModel(["one"]),
        session_manager=manager,
        storage=storage,
        callback_handler=None,
    )
    agent("hi")
    assert _saved(storage) is not None
    asyncio.run(storage.write(f"session/{SID}/scopes/agent/a1/snapshots/snapshot_latest.json", b"{}"))
    agent.model = ScriptedModel(["two"])
    with pytest.raises(StorageConflictError):
        agent("again")
    storage.close()
