"""Durability across failover: ``wait_for_replicas``/``wait_timeout``/``wait_aof`` on real servers.

A primary with one replica (standalone) and a 3-primary cluster with one replica each. Writes with
``wait_for_replicas=1`` carry ``WAIT`` in their own pipeline (round trips unchanged), raise
``ReplicationTimeoutError`` when the replica is cut off (``SIGSTOP``), and survive a ``kill -9`` of
the primary and the promotion of the replica; without the wait, the same failover loses
acknowledged appends.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import valkey
import valkey.asyncio
import valkey.cluster
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import (
    AsyncValkeySessionRepository,
    ReplicationTimeoutError,
    SessionStoreUnavailableError,
    ValkeySessionError,
    ValkeySessionManager,
    ValkeySessionRepository,
    ValkeyStorage,
)
from strands_valkey_session_manager._client import run_plan
from strands_valkey_session_manager.storage import StorageReplicationTimeoutError
from tests.roundtrips import commandstats, count_round_trips
from tests.servers import ClusterProcess, ServerProcess, kill9, restart, start_cluster, start_server

_REPLICATION = ("--repl-diskless-sync-delay", "0")
_TIMEOUT = 0.2  # wait_timeout of the tests that expect a timeout: seconds each failing write costs


def _admin(node: ServerProcess) -> Any:
    return valkey.Valkey(node.host, node.port, decode_responses=True, socket_timeout=10)


def _wait_until(done: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _caught_up(primary: ServerProcess) -> None:
    """Until every replica of ``primary`` has acknowledged its whole replication stream."""
    with contextlib.closing(_admin(primary)) as admin:

        def done() -> bool:
            _, offset, replicas = admin.execute_command("ROLE")
            return bool(replicas) and all(int(r[2]) >= int(offset) for r in replicas)

        _wait_until(done, f"replicas of {primary.port} did not catch up")


class _Pair:
    """A standalone primary and its replica."""

    def __init__(self, flavour: str = "valkey9", *, appendonly: bool = False) -> None:
        self.primary = start_server(flavour, appendonly=appendonly, extra_args=_REPLICATION)
        self.replica = start_server(flavour, appendonly=appendonly, extra_args=_REPLICATION)
        self.follow()

    def follow(self) -> None:
        with contextlib.closing(_admin(self.replica)) as admin:
            admin.execute_command("REPLICAOF", self.primary.host, self.primary.port)
            _wait_until(lambda: admin.info("replication")["master_link_status"] == "up", "replica did not sync")
        _caught_up(self.primary)

    def pause(self) -> None:
        os.kill(self.replica.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.replica.pid, signal.SIGCONT)

    def client(self) -> Any:
        return valkey.Valkey(self.primary.host, self.primary.port)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.resume()
        self.replica.stop()
        self.primary.stop()


@pytest.fixture(scope="module")
def module_pair() -> Iterator[_Pair]:
    pair = _Pair()
    try:
        yield pair
    finally:
        pair.stop()


@pytest.fixture
def pair(module_pair: _Pair) -> Iterator[_Pair]:
    """The module's pair, flushed, replica running and caught up; resumed again after the test."""
    with contextlib.closing(module_pair.client()) as admin:
        admin.flushall()
    _caught_up(module_pair.primary)
    try:
        yield module_pair
    finally:
        module_pair.resume()


def _message(i: int) -> SessionMessage:
    return SessionMessage(message={"role": "user", "content": [{"text": f"message {i}"}]}, message_id=i)


class _Orchestrator:
    """Stands in for a Graph/Swarm: the repository only calls ``id`` and ``serialize_state``."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.id = "graph"
        self.state = state

    def serialize_state(self) -> dict[str, Any]:
        return self.state


def _lease(repo: ValkeySessionRepository, sid: str, agent_id: str, op: str) -> None:
    run_plan(repo._db, repo._p_lease(sid, agent_id, "owner", 30_000, op))


def _export() -> str:
    """An export of a small session "imported" (written by a repository on a server of its own)."""
    server = start_server("valkey9")
    try:
        repo = ValkeySessionRepository(valkey.Valkey(server.host, server.port))
        repo.create_session(Session(session_id="imported", session_type=SessionType.AGENT))
        repo.create_agent("imported", SessionAgent("a", {}, {}))
        repo.create_message("imported", "a", _message(0))
        return repo.export_session("imported")
    finally:
        server.stop()


_EXPORTED: list[str] = []


def _writes(repo: ValkeySessionRepository, sid: str) -> list[tuple[str, Callable[[], Any]]]:
    """Every write path of the repository, in an order in which each one succeeds on ``sid``."""
    agent = SessionAgent(agent_id="a", state={"n": 1}, conversation_manager_state={})
    if not _EXPORTED:
        _EXPORTED.append(_export())
    return [
        ("create_session", lambda: repo.create_session(Session(session_id=sid, session_type=SessionType.AGENT))),
        ("create_agent", lambda: repo.create_agent(sid, agent)),
        ("update_agent", lambda: repo.update_agent(sid, SessionAgent("a", {"n": 2}, {}))),
        ("create_message", lambda: repo.create_message(sid, "a", _message(0))),
        ("update_message", lambda: repo.update_message(sid, "a", _message(0))),
        ("create_multi_agent", lambda: repo.create_multi_agent(sid, _Orchestrator({"s": 1}))),  # type: ignore[arg-type]
        ("update_multi_agent", lambda: repo.update_multi_agent(sid, _Orchestrator({"s": 2}))),  # type: ignore[arg-type]
        ("acquire_lease", lambda: _lease(repo, sid, "a", "acquire")),
        ("renew_lease", lambda: _lease(repo, sid, "a", "renew")),
        ("release_lease", lambda: _lease(repo, sid, "a", "release")),
        ("fork_session", lambda: repo.fork_session(sid, f"{sid}-fork")),
        ("delete_session", lambda: repo.delete_session(f"{sid}-fork")),
        ("import_session", lambda: repo.import_session(_EXPORTED[0], overwrite=True)),
    ]


def _waits(admin: Any) -> int:
    return commandstats(admin).get("wait", 0)


# -- options --------------------------------------------------------------------------------------


_BAD: list[dict[str, Any]] = [
    {"wait_for_replicas": -1},
    {"wait_for_replicas": 1.0},
    {"wait_for_replicas": True},
    {"wait_for_replicas": "1"},
    {"wait_timeout": 0},
    {"wait_timeout": -1.0},
    {"wait_timeout": math.nan},
    {"wait_timeout": math.inf},
    {"wait_timeout": True},
    {"wait_timeout": "1"},
    {"wait_aof": "yes"},
]


@pytest.mark.parametrize("bad", _BAD, ids=[f"{k}={v!r}" for b in _BAD for k, v in b.items()])
def test_bad_values_are_refused_at_construction(bad: dict[str, Any]) -> None:
    client = valkey.Valkey(port=1)  # never connected: the options are checked before any I/O
    aclient = valkey.asyncio.Valkey(port=1)
    for make in (
        lambda: ValkeySessionRepository(client, **bad),
        lambda: AsyncValkeySessionRepository(aclient, **bad),
        lambda: ValkeySessionManager("s", client, **bad),
        lambda: ValkeyStorage(client, **bad),
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            make()


def test_replication_timeout_is_an_unavailability_error() -> None:
    assert issubclass(ReplicationTimeoutError, SessionStoreUnavailableError)
    assert issubclass(StorageReplicationTimeoutError, ReplicationTimeoutError)
    from strands_valkey_session_manager.storage import StorageUnavailableError

    assert issubclass(StorageReplicationTimeoutError, StorageUnavailableError)


# -- (a) replica connected: acknowledged, round trips unchanged -----------------------------------


def test_every_write_waits_in_its_own_round_trip(pair: _Pair) -> None:
    """Each write path costs the same round trips with and without the wait, and sends WAIT."""
    admin = pair.client()
    counts: dict[int, dict[str, int]] = {}
    waits: dict[str, int] = {}
    for replicas in (0, 1):
        client = pair.client()
        repo = ValkeySessionRepository(client, wait_for_replicas=replicas)
        counts[replicas] = {}
        for _name, write in _writes(repo, f"s{replicas}"):
            write()  # first use of each script on the server: loads happen outside the counted runs
        admin.flushall()
        for name, write in _writes(repo, f"s{replicas}"):
            before = _waits(admin)
            with count_round_trips() as trips:
                write()
            counts[replicas][name] = trips.value
            if replicas:
                waits[name] = _waits(admin) - before
            else:
                assert _waits(admin) == before, f"{name} sent WAIT without wait_for_replicas"
        client.close()
    assert counts[1] == counts[0]
    # Every write path waited, once per round trip that writes (export and the fork's DUMP are reads).
    assert all(waits[name] >= 1 for name in waits), waits
    assert waits["create_message"] == 1 and waits["delete_session"] == 2 and waits["fork_session"] == 1
    # Reads never wait.
    repo = ValkeySessionRepository(pair.client(), wait_for_replicas=1)
    before = _waits(admin)
    repo.read_session("s1")
    repo.read_agent("s1", "a")
    repo.list_messages("s1", "a")
    repo.list_sessions()
    assert _waits(admin) == before
    admin.close()


def test_asyncio_repository_waits(pair: _Pair) -> None:
    async def run() -> None:
        client = valkey.asyncio.Valkey(host=pair.primary.host, port=pair.primary.port)
        repo = AsyncValkeySessionRepository(client, wait_for_replicas=1)
        await repo.create_session(Session(session_id="as", session_type=SessionType.AGENT))
        await repo.create_agent("as", SessionAgent("a", {}, {}))
        await repo.create_message("as", "a", _message(0))
        pair.pause()
        try:
            slow = AsyncValkeySessionRepository(client, wait_for_replicas=1, wait_timeout=_TIMEOUT)
            with pytest.raises(ReplicationTimeoutError, match="0 of 1 replicas"):
                await slow.create_message("as", "a", _message(1))
            assert len(await slow.list_messages("as", "a")) == 2  # reads unchanged: applied, readable
        finally:
            pair.resume()
        await client.aclose()

    admin = pair.client()
    before = _waits(admin)
    asyncio.run(run())
    assert _waits(admin) - before == 4
    admin.close()


# -- (b) replica cut off: not acknowledged --------------------------------------------------------


def test_every_write_raises_when_the_replica_is_cut_off(pair: _Pair) -> None:
    """SIGSTOP of the replica: every write path raises ReplicationTimeoutError after one round
    trip (not retried), the write is applied on the primary, and reads still work."""
    setup = ValkeySessionRepository(pair.client())
    for _, write in _writes(setup, "warm"):
        write()  # scripts loaded: every round trip below is the write's own
    repo = ValkeySessionRepository(pair.client(), wait_for_replicas=1, wait_timeout=_TIMEOUT, retries=2)
    pair.pause()
    try:
        for name, write in _writes(repo, "cut"):
            with count_round_trips() as trips, pytest.raises(ReplicationTimeoutError, match="not acknowledged"):
                write()
            assert trips.value <= 2, f"{name} was retried: {trips}"
        assert [m.message_id for m in repo.list_messages("cut", "a")] == [0]
        assert repo.read_agent("cut", "a") is not None
    finally:
        pair.resume()


def test_manager_write_raises_when_the_replica_is_cut_off(pair: _Pair) -> None:
    manager = ValkeySessionManager("m", pair.client(), wait_for_replicas=1, wait_timeout=_TIMEOUT)
    manager.create_agent("m", SessionAgent("a", {}, {}))
    pair.pause()
    try:
        with pytest.raises(ReplicationTimeoutError):
            manager.create_message("m", "a", _message(0))
    finally:
        pair.resume()
    manager.create_message("m", "a", _message(1))  # acknowledged again once the replica is back


# -- (c) kill -9 of the primary, replica promoted ------------------------------------------------


def _promote(pair: _Pair) -> Any:
    """kill -9 of the primary while the replica is still cut off (else, once resumed, the replica
    could reconnect and fetch the writes it missed first), then the replica takes over."""
    kill9(pair.primary)
    pair.resume()
    promoted = pair.replica
    with contextlib.closing(_admin(promoted)) as admin:
        admin.execute_command("REPLICAOF", "NO", "ONE")
    return valkey.Valkey(promoted.host, promoted.port)


@pytest.fixture
def own_pair() -> Iterator[_Pair]:
    made = _Pair()
    try:
        yield made
    finally:
        made.stop()


def _cut_link(pair: _Pair) -> None:
    """Freeze the replica and drop its link: nothing written from now on can reach it."""
    pair.pause()
    with contextlib.closing(_admin(pair.primary)) as admin:
        admin.execute_command("CLIENT", "KILL", "TYPE", "replica")


def test_failover_loses_no_acknowledged_append(own_pair: _Pair) -> None:
    """With wait_for_replicas=1: 60 acknowledged appends, then the replica is cut off and further
    appends are refused (not acknowledged); kill -9 of the primary, replica promoted: every
    acknowledged append is there."""
    repo = ValkeySessionRepository(own_pair.client(), wait_for_replicas=1, wait_timeout=_TIMEOUT, check_versions=True)
    repo.create_session(Session(session_id="c", session_type=SessionType.AGENT))
    repo.create_agent("c", SessionAgent("a", {}, {}))
    acknowledged = []
    for i in range(60):
        repo.create_message("c", "a", _message(i))
        acknowledged.append(i)
    _cut_link(own_pair)
    refused = 0
    for i in range(60, 65):
        with pytest.raises(ReplicationTimeoutError):
            repo.create_message("c", "a", _message(i))
        refused += 1
    promoted = ValkeySessionRepository(_promote(own_pair))
    stored = [m.message_id for m in promoted.list_messages("c", "a")]
    assert stored == acknowledged, f"lost: {sorted(set(acknowledged) - set(stored))}"
    assert refused == 5


def test_failover_without_wait_loses_acknowledged_appends(own_pair: _Pair) -> None:
    """The contrast: the same failover without the wait. Every append was acknowledged by the
    primary, and the ones made after the replica was cut off are gone from the promoted replica."""
    repo = ValkeySessionRepository(own_pair.client(), check_versions=True)
    repo.create_session(Session(session_id="c", session_type=SessionType.AGENT))
    repo.create_agent("c", SessionAgent("a", {}, {}))
    for i in range(30):
        repo.create_message("c", "a", _message(i))
    _caught_up(own_pair.primary)
    _cut_link(own_pair)
    for i in range(30, 60):
        repo.create_message("c", "a", _message(i))  # acknowledged
    promoted = ValkeySessionRepository(_promote(own_pair))
    stored = [m.message_id for m in promoted.list_messages("c", "a")]
    assert stored == list(range(30)), "the appends made while the replica was cut off survived"


# -- WAITAOF -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("flavour", ["valkey9", "valkey8"])
def test_wait_aof_acknowledges_fsynced_writes(flavour: str) -> None:
    pair = _Pair(flavour, appendonly=True)
    try:
        admin = pair.client()
        # The replica acknowledges fsyncs only once its AOF is written after the first sync (slow on a
        # busy machine): wait for that, up to 60 s, before the timed waits below.
        admin.set("ready", 1)
        assert admin.execute_command("WAITAOF", 1, 1, 60_000) == [1, 1]
        repo = ValkeySessionRepository(pair.client(), wait_for_replicas=1, wait_aof=True)
        repo.create_session(Session(session_id="f", session_type=SessionType.AGENT))
        repo.create_agent("f", SessionAgent("a", {}, {}))
        repo.create_message("f", "a", _message(0))  # the script's first use: loaded, run again, waited again
        before = commandstats(admin).get("waitaof", 0)
        repo.create_message("f", "a", _message(1))
        assert commandstats(admin).get("waitaof", 0) == before + 1
        pair.pause()
        slow = ValkeySessionRepository(pair.client(), wait_for_replicas=1, wait_aof=True, wait_timeout=_TIMEOUT)
        with pytest.raises(ReplicationTimeoutError, match="0 of 1 replicas"):
            slow.create_message("f", "a", _message(2))
        admin.close()
    finally:
        pair.stop()


def test_wait_aof_needs_appendonly(pair: _Pair) -> None:
    repo = ValkeySessionRepository(pair.client(), wait_aof=True)
    with pytest.raises(ValkeySessionError, match="appendonly") as raised:
        repo.create_session(Session(session_id="x", session_type=SessionType.AGENT))
    assert not isinstance(raised.value, SessionStoreUnavailableError)


def test_wait_aof_on_a_server_without_waitaof_is_a_clear_error() -> None:
    server = start_server("redis7", appendonly=True)
    try:
        client: Any = valkey.Valkey(server.host, server.port)
        version = client.info("server")["redis_version"]
        if tuple(int(p) for p in str(version).split(".")[:2]) >= (7, 2):
            pytest.skip(f"this Redis ({version}) has WAITAOF")
        repo = ValkeySessionRepository(client, wait_aof=True)
        with pytest.raises(ValkeySessionError, match="needs WAITAOF"):
            repo.create_session(Session(session_id="x", session_type=SessionType.AGENT))
    finally:
        server.stop()


# -- ValkeyStorage ------------------------------------------------------------------------------


def test_storage_write_and_delete_wait(pair: _Pair) -> None:
    admin = pair.client()

    async def run(storage: ValkeyStorage) -> list[int]:
        counts = []
        for op in (lambda: storage.write("session/s/a", b"v"), lambda: storage.delete("session/s/a")):
            with count_round_trips() as trips:
                await op()
            counts.append(trips.value)
        return counts

    plain = ValkeyStorage(pair.client())
    asyncio.run(run(plain))  # scripts loaded
    counts_plain = asyncio.run(run(plain))
    waiting = ValkeyStorage(pair.client(), wait_for_replicas=1)
    before = _waits(admin)
    assert asyncio.run(run(waiting)) == counts_plain
    assert _waits(admin) - before == 2
    assert asyncio.run(waiting.read("session/s/a")) is None
    pair.pause()
    try:
        slow = ValkeyStorage(pair.client(), wait_for_replicas=1, wait_timeout=_TIMEOUT)
        with pytest.raises(StorageReplicationTimeoutError, match="0 of 1 replicas"):
            asyncio.run(slow.write("session/s/b", b"v"))
        with pytest.raises(ReplicationTimeoutError):
            asyncio.run(slow.delete("session/s/b"))
        assert asyncio.run(slow.read("session/s/c")) is None  # reads unchanged
    finally:
        pair.resume()
    admin.close()


def test_asyncio_storage_waits(pair: _Pair) -> None:
    storage = ValkeyStorage(
        valkey.asyncio.Valkey(host=pair.primary.host, port=pair.primary.port),
        wait_for_replicas=1,
        wait_timeout=_TIMEOUT,
    )
    asyncio.run(storage.write("k/1", b"v"))
    pair.pause()
    try:
        with pytest.raises(StorageReplicationTimeoutError):
            asyncio.run(storage.write("k/2", b"v"))
    finally:
        pair.resume()
    storage.close()


# -- GLIDE ----------------------------------------------------------------------------------------


def _glide_standalone(pair: _Pair, *, is_async: bool) -> Any:
    import importlib

    library: Any = importlib.import_module("glide" if is_async else "glide_sync")
    # GLIDE's default request timeout (250 ms) must exceed the wait: a client timeout is not a verdict.
    address = library.NodeAddress(pair.primary.host, pair.primary.port)
    config = library.GlideClientConfiguration([address], request_timeout=5000)
    return library.GlideClient.create(config)


def test_glide_sync_waits(pair: _Pair) -> None:
    pytest.importorskip("glide_sync")
    client = _glide_standalone(pair, is_async=False)
    try:
        admin = pair.client()
        repo = ValkeySessionRepository(client, wait_for_replicas=1, wait_timeout=_TIMEOUT)
        before = _waits(admin)
        for _name, write in _writes(repo, "g"):
            write()
        assert _waits(admin) - before >= len(_writes(repo, "g"))
        pair.pause()
        try:
            with pytest.raises(ReplicationTimeoutError):
                repo.create_message("g", "a", _message(1))
        finally:
            pair.resume()
        admin.close()
    finally:
        client.close()


def test_glide_async_waits(pair: _Pair) -> None:
    pytest.importorskip("glide")

    async def run() -> None:
        client = await _glide_standalone(pair, is_async=True)
        try:
            repo = AsyncValkeySessionRepository(client, wait_for_replicas=1, wait_timeout=_TIMEOUT)
            await repo.create_session(Session(session_id="ga", session_type=SessionType.AGENT))
            await repo.create_agent("ga", SessionAgent("a", {}, {}))
            await repo.create_message("ga", "a", _message(0))
            pair.pause()
            try:
                with pytest.raises(ReplicationTimeoutError):
                    await repo.create_message("ga", "a", _message(1))
            finally:
                pair.resume()
        finally:
            await client.close()

    asyncio.run(run())


# -- cluster ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterProcess]:
    """A 3-primary, 1-replica-each Valkey 9 cluster of this module's own (a node gets killed)."""
    made = start_cluster("valkey9", primaries=3, replicas=1)
    try:
        yield made
    finally:
        for node in made.nodes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, signal.SIGCONT)
        made.stop()


def _cluster_client(cluster: ClusterProcess) -> Any:
    node: Any = valkey.cluster.ClusterNode
    return valkey.cluster.ValkeyCluster(startup_nodes=[node(h, p) for h, p in cluster.startup_nodes])


def _slot_nodes(cluster: ClusterProcess, key: str) -> tuple[ServerProcess, ServerProcess]:
    """The primary serving ``key``'s slot and its replica."""
    with contextlib.closing(_admin(cluster.nodes[0])) as admin:
        slot = int(admin.execute_command("CLUSTER", "KEYSLOT", key))
        ranges = admin.execute_command("CLUSTER", "SLOTS")
    port = next(int(r[2][1]) for r in ranges if int(r[0]) <= slot <= int(r[1]))
    by_port = {n.port: n for n in cluster.nodes}
    primary = by_port[port]
    with contextlib.closing(_admin(primary)) as admin:
        role = admin.execute_command("ROLE")
    return primary, by_port[int(role[2][0][1])]


def _glide_cluster(cluster: ClusterProcess) -> Any:
    import glide_sync

    addresses = [glide_sync.NodeAddress(h, p) for h, p in cluster.startup_nodes]
    config = glide_sync.GlideClusterClientConfiguration(addresses, request_timeout=5000)
    return glide_sync.GlideClusterClient.create(config)


@pytest.mark.parametrize("kind", ["valkey-py", "glide"])
def test_cluster_writes_wait_on_the_written_node(cluster: ClusterProcess, kind: str) -> None:
    """Every write path on a cluster: the WAIT reaches the node of the written slot, round trips
    are those without the wait, and a frozen replica of that node makes the write raise."""
    if kind == "glide":
        pytest.importorskip("glide_sync")
    client: Any = _cluster_client(cluster) if kind == "valkey-py" else _glide_cluster(cluster)
    sid = f"cl-{kind}"
    try:
        repo = ValkeySessionRepository(client, wait_for_replicas=1, wait_timeout=_TIMEOUT)
        keys = repo.session_keys(sid)
        primary, replica = _slot_nodes(cluster, keys.session)
        with contextlib.closing(_admin(primary)) as admin:
            before = _waits(admin)
            for _name, write in _writes(repo, sid):
                write()
            assert _waits(admin) - before >= len(_writes(repo, sid))
        if kind == "valkey-py":
            plain = ValkeySessionRepository(_cluster_client(cluster))
            plain.read_agent(sid, "a")  # learns that the session has orchestrator state (its shape)
            trips = {}
            for each in (plain, repo):
                with count_round_trips() as counted:
                    each.create_message(sid, "a", _message(5))
                    each.update_agent(sid, SessionAgent("a", {"n": 3}, {}))
                trips[each is repo] = counted.value
            assert trips[True] == trips[False] == 2
        os.kill(replica.pid, signal.SIGSTOP)
        try:
            with pytest.raises(ReplicationTimeoutError):
                repo.create_message(sid, "a", _message(6))
        finally:
            os.kill(replica.pid, signal.SIGCONT)
        repo.create_message(sid, "a", _message(7))
    finally:
        client.close()


@pytest.mark.slow
def test_cluster_failover_loses_no_acknowledged_append(cluster: ClusterProcess) -> None:
    """kill -9 of the session's primary right after 50 acknowledged appends (no waiting for the
    replica to catch up): the promoted replica holds every one of them."""
    client = _cluster_client(cluster)
    repo = ValkeySessionRepository(client, wait_for_replicas=1, check_versions=True)
    sid = "cl-failover"
    repo.create_session(Session(session_id=sid, session_type=SessionType.AGENT))
    repo.create_agent(sid, SessionAgent("a", {}, {}))
    for i in range(50):
        repo.create_message(sid, "a", _message(i))
    primary, replica = _slot_nodes(cluster, repo.session_keys(sid).session)
    kill9(primary)
    with contextlib.closing(_admin(replica)) as admin:
        _wait_until(lambda: admin.execute_command("ROLE")[0] == "master", "the replica was not promoted", 30)
    reader = ValkeySessionRepository(_cluster_client(cluster), retries=30, retry_backoff=0.2)
    stored = [m.message_id for m in reader.list_messages(sid, "a")]
    assert stored == list(range(50))
    # The killed node comes back as a replica of the new primary.
    restart(primary)
    cluster.wait_until_ok()
    client.close()


# -- a socket timeout that would cut the wait short --------------------------------------------------


def _faces(client: Any, *, manager: bool = True, **options: Any) -> list[Callable[[], object]]:
    """Constructors of every face; the manager's also creates its session (a write that waits)."""
    faces: list[Callable[[], object]] = [
        lambda: ValkeySessionRepository(client, **options),
        lambda: ValkeyStorage(client, **options),
    ]
    if manager:
        faces.append(lambda: ValkeySessionManager(session_id="timeouts", client=client, **options))
    return faces


def test_a_socket_timeout_not_above_wait_timeout_is_refused(valkey9_server: ServerProcess) -> None:
    """A WAIT whose reply the socket gives up on first would be retried on a new connection, find
    its write done and acknowledge it without proof: such a client is refused up front."""
    short: Any = valkey.Valkey(valkey9_server.host, valkey9_server.port, socket_timeout=0.5)
    equal: Any = valkey.Valkey(valkey9_server.host, valkey9_server.port, socket_timeout=1.0)
    long_enough: Any = valkey.Valkey(valkey9_server.host, valkey9_server.port, socket_timeout=5)
    unbounded: Any = valkey.Valkey(valkey9_server.host, valkey9_server.port)
    short_async: Any = valkey.asyncio.Valkey(host=valkey9_server.host, port=valkey9_server.port, socket_timeout=0.5)
    try:
        for client in (short, equal):
            for make in _faces(client, wait_for_replicas=1):
                with pytest.raises(
                    ValueError, match=r"wait_timeout=<1.0> \| must be below the client's socket_timeout"
                ):
                    make()
            for make in _faces(client, wait_aof=True):
                with pytest.raises(ValueError, match="socket_timeout"):
                    make()
        with pytest.raises(ValueError, match=r"socket_timeout=<0\.5>"):
            AsyncValkeySessionRepository(short_async, wait_for_replicas=1)
        # Accepted (the server has no replica, so only construction is tried, not a waiting write).
        for make in _faces(short, manager=False, wait_for_replicas=1, wait_timeout=0.2):
            make()  # a shorter wait fits
        for client in (long_enough, unbounded):
            for make in _faces(client, manager=False, wait_for_replicas=1):
                make()
        for make in _faces(short):
            make()  # no wait: nothing to cut short
    finally:
        for client in (short, equal, long_enough, unbounded):
            client.close()
        asyncio.run(short_async.aclose())


@pytest.mark.backends("cluster")
def test_a_cluster_client_socket_timeout_not_above_wait_timeout_is_refused(backend: Any) -> None:
    nodes = [valkey.cluster.ClusterNode(host, port) for host, port in backend.startup_nodes]
    client: Any = valkey.cluster.ValkeyCluster(startup_nodes=nodes, socket_timeout=0.5)
    try:
        for make in _faces(client, wait_for_replicas=1):
            with pytest.raises(ValueError, match=r"socket_timeout=<0\.5>"):
                make()
    finally:
        client.close()
