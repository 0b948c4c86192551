"""Test-only server tools: crash a server (``kill9``), start it again on the same port and data
(``restart``), and local clusters (``start_cluster``). The shipped
:mod:`strands_valkey_session_manager.servers` starts single servers; its names are re-exported here
so tests import every server helper from one place."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from strands_valkey_session_manager.servers import (
    _START_TIMEOUT,
    FLAVOURS,
    HOST,
    ServerError,
    ServerProcess,
    _live,
    _port_in_use_failure,
    _spawn,
    _wait_for_ping,
    find_server_binary,
    free_port,
    start_server,
)

__all__ = [
    "CLUSTER_SLOTS",
    "FLAVOURS",
    "HOST",
    "ClusterProcess",
    "ServerError",
    "ServerProcess",
    "find_server_binary",
    "free_port",
    "kill9",
    "restart",
    "start_cluster",
    "start_server",
]

CLUSTER_SLOTS = 16384
_CLUSTER_TIMEOUT = 20.0


def kill9(server: ServerProcess) -> None:
    """SIGKILL the server, as a crash would: no shutdown, no final fsync. The directory stays."""
    if server.is_running():
        server.process.kill()
    server.process.wait()


def restart(server: ServerProcess, *, timeout: float = _START_TIMEOUT) -> None:
    """Start the server again on the same port and directory, so AOF data and nodes.conf survive."""
    server._terminate()
    deadline = time.monotonic() + timeout
    while True:
        server.process = _spawn(server.args, server.workdir)
        _live.add(server)
        try:
            _wait_for_ping(server, deadline)
            return
        except ServerError:
            # The old socket can linger for a moment after a kill; try again until the deadline.
            if not _port_in_use_failure(server) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


@dataclass(eq=False)
class ClusterProcess:
    """A cluster of server processes on loopback: ``stop()`` it, or use it as a context manager."""

    nodes: list[ServerProcess]
    primaries: int = 3
    replicas: int = 0

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(node.host, node.port) for node in self.nodes]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def wait_until_ok(self, timeout: float = _CLUSTER_TIMEOUT) -> None:
        """Wait until every running node reports cluster_state:ok and all of them agree on the layout."""
        _wait_for_agreement([node for node in self.nodes if node.is_running()], timeout)

    def __enter__(self) -> ClusterProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_cluster(
    flavour_or_binary: str | os.PathLike[str] = "valkey9",
    primaries: int = 3,
    replicas: int = 0,
    *,
    timeout: float = _CLUSTER_TIMEOUT,
) -> ClusterProcess:
    """Start ``primaries * (1 + replicas)`` nodes, join them, spread the 16384 slots, wait for cluster_state:ok."""
    if primaries < 1 or replicas < 0:
        raise ValueError("a cluster needs at least one primary and a non-negative number of replicas")
    cluster = ClusterProcess([], primaries, replicas)
    try:
        # Replicas sync at once instead of after the default 5 s wait for more replicas to batch up.
        extra = ("--repl-diskless-sync-delay", "0")
        for _ in range(primaries * (1 + replicas)):
            cluster.nodes.append(start_server(flavour_or_binary, cluster_enabled=True, extra_args=extra))
        _form_cluster(cluster.nodes, primaries, timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _admin(node: ServerProcess) -> Any:
    # valkey-py is a dependency of the package anyway; only the cluster set-up needs it here.
    import valkey

    return valkey.Valkey(node.host, node.port, decode_responses=True, socket_timeout=5.0)


def _form_cluster(nodes: list[ServerProcess], primaries: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    admins = [_admin(node) for node in nodes]
    try:
        # Distinct config epochs up front, as valkey-cli --cluster create does, so no epoch collisions
        # need resolving after the slots are assigned.
        for epoch, admin in enumerate(admins, start=1):
            admin.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
        for node in nodes[1:]:
            admins[0].execute_command("CLUSTER", "MEET", node.host, node.port)
        # A replica can only follow a primary it knows, so wait for the gossip to reach everyone.
        _wait(
            deadline,
            lambda: all(_known_nodes(admin) == len(nodes) for admin in admins),
            "nodes did not all meet",
            nodes,
        )
        for index, admin in enumerate(admins[:primaries]):
            first = index * CLUSTER_SLOTS // primaries
            last = (index + 1) * CLUSTER_SLOTS // primaries - 1
            admin.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        ids = [admin.execute_command("CLUSTER", "MYID") for admin in admins]
        for index, admin in enumerate(admins[primaries:]):
            admin.execute_command("CLUSTER", "REPLICATE", ids[index % primaries])
    finally:
        for admin in admins:
            admin.close()
    _wait_for_agreement(nodes, max(deadline - time.monotonic(), 0.0))


def _known_nodes(admin: Any) -> int:
    info = admin.execute_command("CLUSTER", "INFO")
    return int(_cluster_info(info).get("cluster_known_nodes", "0"))


def _cluster_info(text: str) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def _cluster_view(text: str) -> frozenset[tuple[str, ...]]:
    """One node's CLUSTER NODES reply reduced to what all nodes must agree on.

    Per node: id, host:port, role, primary id and slot ranges; the "myself" flag, link state and
    timestamps naturally differ between observers, so they are left out.
    """
    view: set[tuple[str, ...]] = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        node_id, address, flags, primary = fields[0], fields[1].split("@")[0], fields[2], fields[3]
        roles = {"master", "slave"} & set(flags.split(","))
        failed = {"fail", "fail?", "handshake", "noaddr"} & set(flags.split(","))
        view.add((node_id, address, ",".join(sorted(roles | failed)), primary, *sorted(fields[8:])))
    return frozenset(view)


def _wait_for_agreement(nodes: list[ServerProcess], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    admins = [_admin(node) for node in nodes]

    def agreed() -> bool:
        views: set[frozenset[tuple[str, ...]]] = set()
        for admin in admins:
            info = _cluster_info(admin.execute_command("CLUSTER", "INFO"))
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_assigned") != str(CLUSTER_SLOTS):
                return False
            if info.get("cluster_slots_pfail") != "0" or info.get("cluster_slots_fail") != "0":
                return False
            # Every node must also see every other at its loopback address (not ":port" as at birth).
            view = _cluster_view(admin.execute_command("CLUSTER", "NODES"))
            if any(not entry[1].startswith(f"{HOST}:") for entry in view):
                return False
            views.add(view)
            role = admin.execute_command("ROLE")
            if role[0] == "slave" and role[3] != "connected":
                return False
        return len(views) == 1

    try:
        _wait(deadline, agreed, "cluster did not reach cluster_state:ok on every node", nodes)
    finally:
        for admin in admins:
            admin.close()


def _wait(deadline: float, done: Callable[[], bool], what: str, nodes: list[ServerProcess]) -> None:
    last_error: Exception | None = None
    while True:
        try:
            if done():
                return
        except Exception as e:  # a node still busy starting up; the deadline bounds the retries
            last_error = e
        dead = [node for node in nodes if not node.is_running()]
        if dead or time.monotonic() >= deadline:
            detail = "\n".join(f"--- node {node.port}:\n{node.log_tail(10)}" for node in nodes)
            reason = f"node on port {dead[0].port} died" if dead else "timed out"
            suffix = f" (last error: {last_error})" if last_error else ""
            raise ServerError(f"{what}: {reason}{suffix}\n{detail}")
        time.sleep(0.05)
