"""Fixtures for the ``ValkeyStorage`` tests: real servers, every client library, sync and asyncio.

A *case* is (backend, client kind, flavour): the backend and client kind of the root conftest, and
``sync`` (``ValkeyStorage`` on that client) or ``async`` (on the asyncio client of the same library,
topology and ``decode_responses``). Ids look like ``[cluster-redis-cluster-str-async]``.

- ``storage``: one ``ValkeyStorage`` per case of ``CORE_CASES``: every backend, and on each both
  libraries, both decodings and both flavours across the cases, and Valkey GLIDE (sync and
  asyncio, standalone and cluster): 12 cases. The conformance suite
  runs on these, to keep the whole run short.
- ``any_storage``: the same, over ``ALL_CASES`` (20 client kinds, GLIDE's included, x 2 flavours = 40 cases).
- ``make_storage(cls=ValkeyStorage, **kwargs)`` / ``make_any_storage(...)``: more storages on the
  same case and client, closed after the test. Each case has one client for the whole run
  (``storage_clients``), since cluster clients are slow to build.
- ``make_snapshot_storage(...)``: the same over ``SNAPSHOT_CASES`` (4 cases, two of them GLIDE), for the ported
  ``SnapshotSessionManager`` suite, which builds real agents.
- ``storage_backend``: the case's backend (flushed before the test); ``storage_case``: the case.
- ``@pytest.mark.backends(...)`` narrows the cases as it narrows the root fixtures, and
  ``@pytest.mark.storage_flavours("sync")`` keeps one flavour.
- ``anyio_backend``: async tests run on asyncio (``pytestmark = pytest.mark.anyio``).

These fixtures deliberately do not use the root ``backend``/``client`` fixtures: those are
parametrised over every client kind, and the conformance suite on all 40 cases would take minutes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import valkey

from strands_valkey_session_manager._engine import io_loop
from strands_valkey_session_manager.storage import ValkeyStorage
from tests.conftest import (
    BACKENDS,
    CLUSTER_CLIENTS,
    GLIDE_CLUSTER_CLIENT,
    GLIDE_STANDALONE_CLIENT,
    STANDALONE_CLIENTS,
    Backend,
    ServerTargets,
    _marks,
)
from tests.servers import ServerProcess


@dataclass(frozen=True)
class Case:
    backend: str
    kind: str
    flavour: str

    @property
    def id(self) -> str:
        return f"{self.backend}-{self.kind}-{self.flavour}"


ALL_CASES = tuple(
    Case(backend, kind, flavour)
    for backend in BACKENDS
    for kind in (
        (*CLUSTER_CLIENTS, GLIDE_CLUSTER_CLIENT)
        if backend == "cluster"
        else (*STANDALONE_CLIENTS, GLIDE_STANDALONE_CLIENT)
    )
    for flavour in ("sync", "async")
)
CORE_CASES = (
    Case("valkey9", "valkey-py-str", "sync"),
    Case("valkey9", "redis-py-bytes", "async"),
    Case("valkey8", "redis-py-str", "sync"),
    Case("valkey8", "valkey-py-bytes", "async"),
    Case("redis7", "redis-py-bytes", "sync"),
    Case("redis7", "valkey-py-str", "async"),
    Case("cluster", "redis-cluster-str", "sync"),
    Case("cluster", "valkey-cluster-bytes", "async"),
    # Valkey GLIDE: glide_sync and glide (asyncio), standalone and cluster.
    Case("valkey9", GLIDE_STANDALONE_CLIENT, "sync"),
    Case("redis7", GLIDE_STANDALONE_CLIENT, "async"),
    Case("cluster", GLIDE_CLUSTER_CLIENT, "sync"),
    Case("cluster", GLIDE_CLUSTER_CLIENT, "async"),
)
# The ported SnapshotSessionManager suite builds real agents: cases opposite on every axis.
SNAPSHOT_CASES = (
    Case("valkey9", "valkey-py-str", "sync"),
    Case("cluster", "redis-cluster-bytes", "async"),
    Case("valkey9", GLIDE_STANDALONE_CLIENT, "async"),
    Case("cluster", GLIDE_CLUSTER_CLIENT, "sync"),
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "storage_flavours(*names): run the storage cases of these flavours only")


def _params(metafunc: pytest.Metafunc, cases: tuple[Case, ...]) -> list[Any]:
    backends = metafunc.definition.get_closest_marker("backends")
    flavours = metafunc.definition.get_closest_marker("storage_flavours")
    wanted_backends = set(backends.args) if backends else set(BACKENDS)
    wanted_flavours = set(flavours.args) if flavours else {"sync", "async"}
    return [
        pytest.param(case, id=case.id, marks=_marks(case.backend))
        for case in cases
        if case.backend in wanted_backends and case.flavour in wanted_flavours
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "any_storage_case" in metafunc.fixturenames:
        metafunc.parametrize("any_storage_case", _params(metafunc, ALL_CASES))
    elif "snapshot_storage_case" in metafunc.fixturenames:
        metafunc.parametrize("snapshot_storage_case", _params(metafunc, SNAPSHOT_CASES))
    elif "core_storage_case" in metafunc.fixturenames:
        metafunc.parametrize("core_storage_case", _params(metafunc, CORE_CASES))


def make_async_client(backend: Backend, kind: str) -> Any:
    """The asyncio client matching a sync client kind of the root conftest (same library, topology, decoding).

    An asyncio GLIDE client is made on the storage's I/O loop, the loop it will answer on.
    """
    if kind == backend.glide_kind:
        return io_loop.submit(backend.make_async_client(kind)).result()
    decode = kind.endswith("-str")
    if kind.startswith("valkey-py-"):
        import valkey.asyncio

        return valkey.asyncio.Valkey(host=backend.host, port=backend.port, decode_responses=decode)
    if kind.startswith("redis-py-"):
        import redis.asyncio

        return redis.asyncio.Redis(host=backend.host, port=backend.port, decode_responses=decode)
    if kind.startswith("valkey-cluster-"):
        import valkey.asyncio.cluster as vac

        node: Any = vac.ClusterNode
        return vac.ValkeyCluster(startup_nodes=[node(h, p) for h, p in backend.startup_nodes], decode_responses=decode)
    if kind.startswith("redis-cluster-"):
        import redis.asyncio.cluster as rac

        rnode: Any = rac.ClusterNode
        return rac.RedisCluster(startup_nodes=[rnode(h, p) for h, p in backend.startup_nodes], decode_responses=decode)
    raise ValueError(f"no asyncio twin for client kind {kind!r}")


def close_async_client(client: Any) -> None:
    """Close an asyncio client whose connections a closed storage already released."""
    if type(client).__module__.startswith("glide"):
        io_loop.submit(client.close()).result()
        return

    async def close() -> None:
        await (getattr(client, "aclose", None) or client.close)()

    asyncio.run(close())


class ClientCache:
    """One client per case for the whole run: cluster clients cost a topology and COMMAND fetch each.

    Sharing is safe: every test starts from flushed data, and a closed storage leaves a client it
    was given usable (an asyncio client's connections are dropped, to be remade on next use).
    """

    def __init__(self) -> None:
        self._clients: dict[Case, Any] = {}

    def get(self, backend: Backend, case: Case) -> Any:
        if case not in self._clients:
            sync = case.flavour == "sync"
            self._clients[case] = backend.make_client(case.kind) if sync else make_async_client(backend, case.kind)
        return self._clients[case]

    def close_all(self) -> None:
        while self._clients:
            case, client = self._clients.popitem()
            if case.flavour == "sync":
                client.close()
            else:
                close_async_client(client)


class StorageFactory:
    """Makes storages for one case, on the case's shared client, and closes them at teardown."""

    def __init__(self, backend: Backend, case: Case, clients: ClientCache) -> None:
        self.backend = backend
        self.case = case
        self._clients = clients
        self._made: list[ValkeyStorage] = []

    def client(self) -> Any:
        """The case's client (shared by the tests of the case)."""
        return self._clients.get(self.backend, self.case)

    def __call__(self, cls: type[ValkeyStorage] = ValkeyStorage, **kwargs: Any) -> ValkeyStorage:
        storage = cls(self.client(), **kwargs)
        self._made.append(storage)
        return storage

    def close(self) -> None:
        for storage in reversed(self._made):
            storage.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server(valkey9_server: ServerProcess) -> ServerProcess:
    """The session's Valkey 9 server, flushed (for tests that make their own clients)."""
    admin = valkey.Valkey(valkey9_server.host, valkey9_server.port)
    admin.flushall()
    admin.close()
    return valkey9_server


@pytest.fixture(scope="session")
def storage_clients() -> Iterator[ClientCache]:
    clients = ClientCache()
    try:
        yield clients
    finally:
        clients.close_all()


def _factory(server_targets: ServerTargets, clients: ClientCache, case: Case) -> Iterator[StorageFactory]:
    backend = server_targets.get(case.backend)
    backend.flushall()
    factory = StorageFactory(backend, case, clients)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def make_storage(
    server_targets: ServerTargets, storage_clients: ClientCache, core_storage_case: Case
) -> Iterator[StorageFactory]:
    yield from _factory(server_targets, storage_clients, core_storage_case)


@pytest.fixture
def make_any_storage(
    server_targets: ServerTargets, storage_clients: ClientCache, any_storage_case: Case
) -> Iterator[StorageFactory]:
    yield from _factory(server_targets, storage_clients, any_storage_case)


@pytest.fixture
def make_snapshot_storage(
    server_targets: ServerTargets, storage_clients: ClientCache, snapshot_storage_case: Case
) -> Iterator[StorageFactory]:
    yield from _factory(server_targets, storage_clients, snapshot_storage_case)


@pytest.fixture
def storage(make_storage: StorageFactory) -> ValkeyStorage:
    """A ``ValkeyStorage`` for one of ``CORE_CASES``."""
    return make_storage()


@pytest.fixture
def any_storage(make_any_storage: StorageFactory) -> ValkeyStorage:
    """A ``ValkeyStorage`` for one of ``ALL_CASES``."""
    return make_any_storage()


@pytest.fixture
def storage_backend(make_storage: StorageFactory) -> Backend:
    """The backend of the ``storage`` case."""
    return make_storage.backend


@pytest.fixture
def storage_case(make_storage: StorageFactory) -> Case:
    return make_storage.case


StorageMaker = Callable[..., ValkeyStorage]
