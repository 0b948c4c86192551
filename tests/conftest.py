"""Real servers for the whole test run: Valkey 9, Valkey 8, Redis 7 and a 3-primary Valkey 9 cluster.

Each server starts the first time a test needs it and stops when the run ends, failed tests or not.
Every test starts from empty data (FLUSHALL on every primary).

- ``backend``: parametrised over ``BACKENDS``; a ``Backend`` (name, nodes, url, ``make_client(kind)``).
- ``client``: one test per valid (backend, client kind) pair, ids like ``[valkey9-valkey-py-str]``.
- ``store_client``: the same, plus a synchronous Valkey GLIDE client per backend (``[valkey9-glide]``,
  ``[cluster-glide-cluster]``), for tests that only hand the client to a repository.
- ``repo_face``: with ``client``, which face the repository under test has: ``sync``/``async`` on
  every client kind, and ``glide-sync``/``glide-async`` once per backend (the test's ``client`` is
  then a valkey-py bytes client to the same server, for raw checks). See ``tests/test_repository.py``.
- ``standalone_client``: one ``valkey.Valkey(decode_responses=True)`` on the Valkey 9 server.
- ``valkey9_server``: the Valkey 9 ``ServerProcess`` itself.
- ``@pytest.mark.backends("valkey9", ...)`` limits a test's ``backend``/``client`` to those backends.
- ``@pytest.mark.validation`` marks a test of arguments refused before any I/O: it runs on one client
  kind per backend (the first of its list), on Valkey 9 only unless ``backends`` names others, and
  with ``repo_face`` once per face. The full matrix is for what server replies or behaviour decide.

Under pytest-xdist (``scripts/test`` runs ``-n auto --dist loadfile``) each worker starts its own
servers on free ports, and each test file runs whole on one worker. Per test, the flush is one round
trip per node on a connection kept for the run, and cluster clients made here reuse the command
table the first client of their kind read from the server (``_shared_command_table``).

A missing server binary is an error, since a green run must mean every server was tested; with
``SVSM_ALLOW_MISSING_SERVERS=1`` the tests that need it are skipped instead.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import valkey
import valkey.cluster

from tests.servers import (
    ClusterProcess,
    ServerError,
    ServerProcess,
    find_server_binary,
    start_cluster,
    start_server,
)

BACKENDS = ("valkey9", "valkey8", "redis7", "cluster")
STANDALONE_CLIENTS = ("valkey-py-str", "valkey-py-bytes", "redis-py-str", "redis-py-bytes")
CLUSTER_CLIENTS = ("valkey-cluster-str", "valkey-cluster-bytes", "redis-cluster-str", "redis-cluster-bytes")
# Valkey GLIDE (glide_sync / glide): not in the lists above, since ``client`` must stay a
# valkey-py/redis-py client for the tests' raw checks; see ``store_client`` and ``repo_face``.
GLIDE_STANDALONE_CLIENT = "glide"
GLIDE_CLUSTER_CLIENT = "glide-cluster"
# The raw-check client of the GLIDE repository faces.
_RAW_CLIENT = {False: "valkey-py-bytes", True: "valkey-cluster-bytes"}
REPO_FACES = ("sync", "async")
GLIDE_REPO_FACES = ("glide-sync", "glide-async")
# The binary each backend runs; the cluster is made of Valkey 9 nodes.
_FLAVOUR = {"valkey9": "valkey9", "valkey8": "valkey8", "redis7": "redis7", "cluster": "valkey9"}


def _allow_missing() -> bool:
    return os.environ.get("SVSM_ALLOW_MISSING_SERVERS") == "1"


@functools.cache
def _missing(backend: str) -> str | None:
    """Why the backend's server binary is unavailable, or None if it is there."""
    try:
        find_server_binary(_FLAVOUR[backend])
    except ServerError as e:
        return str(e)
    return None


# A cluster client reads the server's whole command table (COMMAND) when it is built; parsing that
# reply in Python is most of the cost of a test on the cluster. The first client of each kind on a
# backend reads it from the server; the next ones of that kind get the same reply. Only clients made
# by ``Backend.make_client`` share it: tests that build their own (ACL users) still send COMMAND.
_COMMAND_TABLES: dict[tuple[str, str], dict[Any, Any]] = {}


class _CommandAnswered:
    """The cluster client being built, with ``command()`` answered from a table read before."""

    def __init__(self, client: Any, table: dict[Any, Any]) -> None:
        self._client = client
        self._table = table

    def command(self) -> dict[Any, Any]:
        return dict(self._table)  # the parser renames keys in the dict it gets

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@contextlib.contextmanager
def _shared_command_table(module: Any, key: tuple[str, str]) -> Iterator[None]:
    """While a cluster client of ``module`` (valkey.cluster, redis.cluster) is built, its commands
    parser takes the command table of the first client of this kind and backend."""
    real = module.CommandsParser

    class Parser(real):  # type: ignore[misc, valid-type]
        def initialize(self, r: Any) -> None:
            table = _COMMAND_TABLES.get(key)
            if table is None:
                table = _COMMAND_TABLES[key] = r.command()
            super().initialize(_CommandAnswered(r, table))

    module.CommandsParser = Parser
    try:
        yield
    finally:
        module.CommandsParser = real


@dataclass
class Backend:
    """One running test backend: a standalone server or a cluster."""

    name: str
    target: ServerProcess | ClusterProcess
    _admins: dict[int, Any] = field(default_factory=dict, repr=False)

    @property
    def is_cluster(self) -> bool:
        return isinstance(self.target, ClusterProcess)

    @property
    def nodes(self) -> list[ServerProcess]:
        return self.target.nodes if isinstance(self.target, ClusterProcess) else [self.target]

    @property
    def host(self) -> str:
        return self.nodes[0].host

    @property
    def port(self) -> int:
        return self.nodes[0].port

    @property
    def url(self) -> str:
        return self.target.url

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(node.host, node.port) for node in self.nodes]

    def client_kinds(self) -> tuple[str, ...]:
        return CLUSTER_CLIENTS if self.is_cluster else STANDALONE_CLIENTS

    @property
    def glide_kind(self) -> str:
        return GLIDE_CLUSTER_CLIENT if self.is_cluster else GLIDE_STANDALONE_CLIENT

    def make_client(self, kind: str) -> Any:
        """A new client of ``kind`` (see ``client_kinds()``, or ``glide_kind``); the caller closes it."""
        if kind == self.glide_kind:
            return self._make_glide_client(is_async=False)
        if kind not in self.client_kinds():
            raise ValueError(f"client kind {kind!r} does not fit backend {self.name!r}")
        decode = kind.endswith("-str")
        if kind.startswith("valkey-py-"):
            return valkey.Valkey(self.host, self.port, decode_responses=decode)
        if kind.startswith("valkey-cluster-"):
            # Any: the client libraries leave these constructors unannotated.
            node_type: Any = valkey.cluster.ClusterNode
            nodes = [node_type(host, port) for host, port in self.startup_nodes]
            with _shared_command_table(valkey.cluster, (kind, self.name)):
                return valkey.cluster.ValkeyCluster(startup_nodes=nodes, decode_responses=decode)
        import redis
        import redis.cluster

        if kind.startswith("redis-py-"):
            return redis.Redis(host=self.host, port=self.port, decode_responses=decode)
        redis_node_type: Any = redis.cluster.ClusterNode
        redis_nodes = [redis_node_type(host, port) for host, port in self.startup_nodes]
        with _shared_command_table(redis.cluster, (kind, self.name)):
            return redis.cluster.RedisCluster(startup_nodes=redis_nodes, decode_responses=decode)

    def make_async_client(self, kind: str) -> Any:
        """The asyncio twin of ``make_client(kind)``: same library, same decoding, same topology.

        For ``glide_kind`` an awaitable of the GLIDE asyncio client: it is bound to the event loop
        it is made in, so await it in the loop that will use it.
        """
        if kind == self.glide_kind:
            return self._make_glide_client(is_async=True)
        if kind not in self.client_kinds():
            raise ValueError(f"client kind {kind!r} does not fit backend {self.name!r}")
        decode = kind.endswith("-str")
        if kind.startswith("valkey-"):
            import valkey.asyncio
            import valkey.asyncio.cluster

            if kind.startswith("valkey-py-"):
                return valkey.asyncio.Valkey(host=self.host, port=self.port, decode_responses=decode)
            node: Any = valkey.asyncio.cluster.ClusterNode
            nodes = [node(host, port) for host, port in self.startup_nodes]
            return valkey.asyncio.cluster.ValkeyCluster(startup_nodes=nodes, decode_responses=decode)
        import redis.asyncio
        import redis.asyncio.cluster

        if kind.startswith("redis-py-"):
            return redis.asyncio.Redis(host=self.host, port=self.port, decode_responses=decode)
        redis_node: Any = redis.asyncio.cluster.ClusterNode
        redis_nodes = [redis_node(host, port) for host, port in self.startup_nodes]
        return redis.asyncio.cluster.RedisCluster(startup_nodes=redis_nodes, decode_responses=decode)

    def _make_glide_client(self, *, is_async: bool) -> Any:
        """A GLIDE client (``glide_sync``), or the coroutine making one (``glide``), on this backend."""
        library: Any = importlib.import_module("glide" if is_async else "glide_sync")
        addresses = [library.NodeAddress(host, port) for host, port in self.startup_nodes]
        if self.is_cluster:
            return library.GlideClusterClient.create(library.GlideClusterClientConfiguration(addresses))
        return library.GlideClient.create(library.GlideClientConfiguration(addresses))

    def flushall(self) -> None:
        """Empty every primary (replicas follow by themselves and refuse writes anyway): one round
        trip per node, on an admin connection kept for the run (made again after a restart)."""
        for node in self.nodes:
            if not node.is_running():
                continue  # a fault test may have killed it
            try:
                self._flush(node)
            except valkey.ConnectionError:
                self._admins.pop(node.port).close()  # the node was restarted: a new connection
                self._flush(node)

    def _flush(self, node: ServerProcess) -> None:
        admin = self._admins.get(node.port)
        if admin is None:
            admin = self._admins[node.port] = valkey.Valkey(node.host, node.port, decode_responses=True)
        with contextlib.suppress(valkey.ReadOnlyError):  # a replica
            admin.flushall()

    def close_admins(self) -> None:
        while self._admins:
            self._admins.popitem()[1].close()


@dataclass
class ServerTargets:
    """Starts each backend on first use, remembers failures so they are reported once, stops all at the end."""

    started: dict[str, Backend] = field(default_factory=dict)
    failed: dict[str, ServerError] = field(default_factory=dict)

    def get(self, name: str) -> Backend:
        if name not in BACKENDS:
            raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
        reason = _missing(name)
        if reason is not None and _allow_missing():
            pytest.skip(f"{name}: {reason} (SVSM_ALLOW_MISSING_SERVERS=1)")
        if name in self.failed:
            raise self.failed[name]
        if name not in self.started:
            try:
                target: ServerProcess | ClusterProcess = (
                    start_cluster(_FLAVOUR[name], primaries=3) if name == "cluster" else start_server(_FLAVOUR[name])
                )
            except ServerError as e:
                self.failed[name] = e
                raise
            self.started[name] = Backend(name, target)
        return self.started[name]

    def stop_all(self) -> None:
        while self.started:
            _, backend = self.started.popitem()
            backend.close_admins()
            backend.target.stop()


# ``scripts/test`` runs with ``--hypothesis-profile=ci``: the same examples on every run.
hypothesis.settings.register_profile("ci", derandomize=True, database=None, print_blob=True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backends(*names): run the backend/client fixtures only on these backends")
    config.addinivalue_line(
        "markers", "validation: checks arguments refused before any I/O; one client kind per backend (see conftest)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Under pytest-xdist, as scripts/test runs it (``--dist loadfile --no-loadscope-reorder``), each
    # file runs whole on one worker (a module's own servers, clusters and browser start once, and
    # figures summed over a file's tests see all of them) and files are handed out in this order:
    # files with slow tests first, so the long ones start at once and the short ones fill the end.
    if not hasattr(config, "workerinput"):
        return

    def file_of(item: pytest.Item) -> str:
        return item.nodeid.split("::")[0]

    slow = {file_of(item) for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: file_of(item) not in slow)  # stable: the order within a file stays


def _is_validation(metafunc: pytest.Metafunc) -> bool:
    return metafunc.definition.get_closest_marker("validation") is not None


def _backend_params(metafunc: pytest.Metafunc) -> list[str]:
    marker = metafunc.definition.get_closest_marker("backends")
    names = list(marker.args) if marker else ["valkey9"] if _is_validation(metafunc) else list(BACKENDS)
    unknown = set(names) - set(BACKENDS)
    if unknown:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: unknown backends {sorted(unknown)}")
    return names


def _kinds(metafunc: pytest.Metafunc, backend: str, *, glide: bool = False) -> tuple[str, ...]:
    """The client kinds a test runs on for ``backend``: all of them, or the first for a validation test."""
    kinds = CLUSTER_CLIENTS if backend == "cluster" else STANDALONE_CLIENTS
    if _is_validation(metafunc):
        return kinds[:1]
    return (*kinds, GLIDE_CLUSTER_CLIENT if backend == "cluster" else GLIDE_STANDALONE_CLIENT) if glide else kinds


def _marks(backend: str) -> list[pytest.MarkDecorator]:
    marks = [pytest.mark.cluster] if backend == "cluster" else []
    reason = _missing(backend)
    if reason is not None and _allow_missing():
        marks.append(pytest.mark.skip(reason=f"{reason} (SVSM_ALLOW_MISSING_SERVERS=1)"))
    return marks


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Parametrised here rather than on the fixtures so that invalid (backend, client) pairs
    # are never generated, instead of showing up as skips.
    if "repo_face" in metafunc.fixturenames:
        # Every face on every client kind, and the GLIDE faces once per backend.
        params = []
        for name in _backend_params(metafunc):
            kinds = _kinds(metafunc, name)
            params += [
                pytest.param(name, kind, face, id=f"{face}-{name}-{kind}", marks=_marks(name))
                for face in REPO_FACES
                for kind in kinds
            ]
            raw = _RAW_CLIENT[name == "cluster"]
            params += [
                pytest.param(name, raw, face, id=f"{face}-{name}", marks=_marks(name)) for face in GLIDE_REPO_FACES
            ]
        metafunc.parametrize(("backend", "client_kind", "repo_face"), params, indirect=True)
    elif "store_client" in metafunc.fixturenames:
        metafunc.parametrize(
            ("backend", "client_kind"),
            [
                pytest.param(name, kind, id=f"{name}-{kind}", marks=_marks(name))
                for name in _backend_params(metafunc)
                for kind in _kinds(metafunc, name, glide=True)
            ],
            indirect=True,
        )
    elif "client" in metafunc.fixturenames:
        metafunc.parametrize(
            ("backend", "client_kind"),
            [
                pytest.param(name, kind, id=f"{name}-{kind}", marks=_marks(name))
                for name in _backend_params(metafunc)
                for kind in _kinds(metafunc, name)
            ],
            indirect=True,
        )
    elif "backend" in metafunc.fixturenames:
        metafunc.parametrize(
            "backend",
            [pytest.param(name, id=name, marks=_marks(name)) for name in _backend_params(metafunc)],
            indirect=True,
        )


@pytest.fixture(scope="session")
def server_targets() -> Iterator[ServerTargets]:
    targets = ServerTargets()
    try:
        yield targets
    finally:
        targets.stop_all()


@pytest.fixture
def backend(request: pytest.FixtureRequest, server_targets: ServerTargets) -> Backend:
    """The backend named by the test's parameter, with all data flushed."""
    chosen = server_targets.get(request.param)
    chosen.flushall()
    return chosen


@pytest.fixture
def client_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def client(backend: Backend, client_kind: str) -> Iterator[Any]:
    """A fresh client of ``client_kind`` on the (flushed) ``backend``, closed after the test."""
    made = backend.make_client(client_kind)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def store_client(backend: Backend, client_kind: str) -> Iterator[Any]:
    """Like ``client``, with GLIDE among the kinds: for tests that only give it to a repository."""
    made = backend.make_client(client_kind)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def repo_face(request: pytest.FixtureRequest) -> str:
    face: str = request.param
    return face


@pytest.fixture(scope="session")
def valkey9_server(server_targets: ServerTargets) -> ServerProcess:
    target = server_targets.get("valkey9").target
    assert isinstance(target, ServerProcess)
    return target


@pytest.fixture
def standalone_client(valkey9_server: ServerProcess) -> Iterator[valkey.Valkey]:
    """``valkey.Valkey(decode_responses=True)`` on the Valkey 9 server, data flushed."""
    made: Any = valkey.Valkey(valkey9_server.host, valkey9_server.port, decode_responses=True)
    try:
        made.flushall()
        yield made
    finally:
        made.close()
