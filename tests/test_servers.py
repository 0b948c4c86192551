"""The test servers themselves: right versions, a healthy cluster, honest round-trip counts, clean stops."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import valkey

from tests.conftest import ServerTargets
from tests.roundtrips import commandstats, count_round_trips
from tests.servers import (
    CLUSTER_SLOTS,
    HOST,
    ServerError,
    ServerProcess,
    find_server_binary,
    free_port,
    kill9,
    restart,
    start_server,
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@pytest.mark.parametrize(
    ("flavour", "server_name", "major"),
    [("valkey9", "valkey", "9"), ("valkey8", "valkey", "8"), ("redis7", "redis", "7")],
)
def test_each_flavour_answers_ping_with_its_version(
    server_targets: ServerTargets, flavour: str, server_name: str, major: str
) -> None:
    server = server_targets.get(flavour).nodes[0]
    with valkey.Valkey(server.host, server.port, decode_responses=True) as admin:
        assert admin.ping() is True
        info = admin.info("server")
    # Valkey also reports a redis_version (7.2.4) for compatibility, so look at its own field first.
    version = str(info["valkey_version"] if server_name == "valkey" else info["redis_version"])
    assert version.split(".", maxsplit=1)[0] == major
    assert server_name != "redis" or "valkey_version" not in info
    assert server.url == f"redis://{HOST}:{server.port}"


@pytest.mark.cluster
def test_cluster_is_ok_with_every_slot_assigned(server_targets: ServerTargets) -> None:
    cluster = server_targets.get("cluster")
    assert len(cluster.startup_nodes) == 3
    for host, port in cluster.startup_nodes:
        with valkey.Valkey(host, port, decode_responses=True) as admin:
            info = admin.cluster("info")
        assert info["cluster_state"] == "ok"
        assert int(info["cluster_slots_assigned"]) == CLUSTER_SLOTS
        assert int(info["cluster_known_nodes"]) == 3
        assert int(info["cluster_size"]) == 3


@pytest.mark.backends("cluster")
def test_cluster_clients_reach_every_primary(client: Any, client_kind: str) -> None:
    # Keys in different slots land on different primaries; all must be writable and readable.
    keys = [f"key-{i}" for i in range(30)]
    for key in keys:
        client.set(key, key)
    assert [_text(client.get(key)) for key in keys] == keys
    assert client_kind.endswith("-str") == isinstance(client.get(keys[0]), str)


def test_every_test_starts_empty(client: Any) -> None:
    # Runs on each backend twice over (per client kind), so a leftover key would fail here.
    assert client.get("{leak}marker") is None
    client.set("{leak}marker", "1")


def test_single_command_is_one_round_trip(client: Any) -> None:
    with count_round_trips() as trips:
        client.get("{rt}missing")
    # The first command also opens a connection; its handshake is counted apart.
    assert trips.value == 1, trips
    assert trips.commands == ["GET"]


def test_pipeline_is_one_round_trip(client: Any) -> None:
    client.ping()  # connect first, so only the pipeline's traffic is in the block
    with count_round_trips() as trips:
        pipe = client.pipeline(transaction=False)
        pipe.set("{rt}a", 1)
        pipe.incr("{rt}a")
        pipe.get("{rt}a")
        results = pipe.execute()
    assert trips.value == 1, trips
    assert trips.handshakes == 0
    assert _text(results[2]) == "2"


@pytest.mark.backends("valkey9", "valkey8", "redis7")
def test_transaction_is_one_round_trip(client: Any) -> None:
    with count_round_trips() as trips:
        pipe = client.pipeline(transaction=True)
        pipe.set("{rt}a", 1)
        pipe.incr("{rt}a")
        pipe.get("{rt}a")
        pipe.execute()
    assert trips.value == 1, trips
    assert trips.commands == ["MULTI"]


def test_round_trip_counters_nest(standalone_client: valkey.Valkey) -> None:
    standalone_client.ping()
    with count_round_trips() as outer:
        standalone_client.get("a")
        with count_round_trips() as inner:
            standalone_client.get("b")
        standalone_client.get("c")
    assert (outer.value, inner.value) == (3, 1)
    # Restored afterwards: nothing counts any more.
    standalone_client.get("d")
    assert outer.value == 3


def test_commandstats_counts_calls(standalone_client: valkey.Valkey) -> None:
    standalone_client.config_resetstat()
    standalone_client.set("a", "1")
    standalone_client.set("b", "2")
    standalone_client.get("a")
    stats = commandstats(standalone_client)
    assert stats["set"] == 2
    assert stats["get"] == 1


def test_stop_ends_the_process_and_removes_its_directory() -> None:
    server = start_server("valkey9")
    assert server.is_running()
    assert server.workdir.is_dir()
    server.stop()
    assert server.process.poll() is not None
    assert not server.workdir.exists()
    with pytest.raises(OSError), socket.create_connection((server.host, server.port), timeout=1.0):
        pass
    server.stop()  # a second stop is harmless


def test_context_manager_stops_even_on_error() -> None:
    with pytest.raises(RuntimeError, match="boom"), start_server("valkey9") as server:
        raise RuntimeError("boom")
    assert not server.is_running()


def test_kill9_and_restart_keep_appendonly_data() -> None:
    with start_server("valkey9", appendonly=True) as server:
        with valkey.Valkey(server.host, server.port) as admin:
            admin.set("survivor", "yes")
        port = server.port
        kill9(server)
        assert not server.is_running()
        restart(server)
        assert server.port == port
        with valkey.Valkey(server.host, server.port) as admin:
            assert admin.get("survivor") == b"yes"


def test_failed_start_reports_the_log() -> None:
    with pytest.raises(ServerError, match=r"(?i)bad directive|unknown option|fatal"):
        start_server("valkey9", extra_args=("--no-such-option", "1"))


def test_taken_explicit_port_is_an_error() -> None:
    with socket.socket() as squatter:
        squatter.bind((HOST, 0))
        squatter.listen()
        with pytest.raises(ServerError, match="already in use"):
            start_server("valkey9", port=squatter.getsockname()[1])


def test_free_port_is_bindable_and_leaves_room_for_the_cluster_bus() -> None:
    port = free_port(cluster_bus=True)
    for candidate in (port, port + 10000):
        with socket.socket() as sock:
            sock.bind((HOST, candidate))


def test_unknown_flavour_names_the_choices() -> None:
    with pytest.raises(ValueError, match="valkey9"):
        find_server_binary("valkey7")
    with pytest.raises(ValueError, match="valkey9"):
        start_server("valkey7")


def test_valkey9_server_fixture_is_the_shared_server(valkey9_server: ServerProcess, standalone_client: Any) -> None:
    assert standalone_client.connection_pool.connection_kwargs["port"] == valkey9_server.port
