"""lock=True: one owner per agent, a second fails fast, leases renew, expire after a crash, and fence."""

from __future__ import annotations

import time
from typing import Any

import pytest
import valkey
from strands import Agent
from strands.types.session import SessionMessage

from strands_valkey_session_manager import (
    SessionLockedError,
    SessionNotFoundError,
    ValkeySessionManager,
    ValkeySessionRepository,
)
from strands_valkey_session_manager._write_behind import WriteBehindError
from strands_valkey_session_manager.scripted_model import ScriptedModel
from tests.servers import ServerProcess


def _agent(manager: ValkeySessionManager, agent_id: str = "a", turns: list[Any] | None = None) -> Agent:
    return Agent(agent_id=agent_id, model=ScriptedModel(turns or []), session_manager=manager, callback_handler=None)


@pytest.mark.backends("valkey9", "redis7", "cluster")
def test_a_second_owner_fails_fast_and_cannot_write(client: Any) -> None:
    owner = ValkeySessionManager(session_id="s", client=client, lock=True)
    agent = _agent(owner, turns=["hello back"])
    agent("hello")
    rival = ValkeySessionManager(session_id="s", client=client, lock=True)
    started = time.monotonic()
    with pytest.raises(SessionLockedError, match=r"agent_id=<a> \| the agent is locked by owner"):
        _agent(rival)
    assert time.monotonic() - started < 2
    # A writer that did not ask for the lock is fenced out as well: exclusive means exclusive.
    plain = ValkeySessionManager(session_id="s", client=client)
    with pytest.raises(SessionLockedError, match="nothing was written"):
        plain.create_message("s", "a", SessionMessage(message={"role": "user", "content": []}, message_id=99))
    assert len(plain.list_messages("s", "a")) == 2
    # Other agents of the session are not locked.
    _agent(rival, "b", ["ok"])("hi")
    owner.close()
    rival.close()


def test_close_releases_and_the_next_owner_takes_over(standalone_client: Any) -> None:
    owner = ValkeySessionManager(session_id="s", client=standalone_client, lock=True)
    _agent(owner, turns=["one"])("first")
    owner.close()
    successor = ValkeySessionManager(session_id="s", client=standalone_client, lock=True)
    agent = _agent(successor, turns=["two"])
    assert len(agent.messages) == 2
    agent("second")
    assert len(successor.list_messages("s", "a")) == 4
    successor.close()


def test_renewal_keeps_the_lease_beyond_its_time(standalone_client: Any) -> None:
    owner = ValkeySessionManager(session_id="s", client=standalone_client, lock=True, lock_ttl=0.6)
    _agent(owner)
    time.sleep(1.5)  # more than twice the lease time: only renewal keeps it
    with pytest.raises(SessionLockedError):
        _agent(ValkeySessionManager(session_id="s", client=standalone_client, lock=True))
    owner.close()


def test_a_crashed_owner_expires_and_its_late_writes_are_fenced(standalone_client: Any) -> None:
    crashed = ValkeySessionManager(session_id="s", client=standalone_client, lock=True, lock_ttl=0.5)
    agent = _agent(crashed, turns=["before the crash"])
    agent("hello")
    # A crash: renewal stops, nothing is released.
    assert crashed._lease is not None
    crashed._lease._stop.set()
    time.sleep(0.8)
    successor = ValkeySessionManager(session_id="s", client=standalone_client, lock=True, check_versions=False)
    _agent(successor, turns=["after"])("taking over")
    # The old owner wakes up and writes with its old fencing token: refused, nothing written.
    late = SessionMessage(message={"role": "user", "content": [{"text": "late"}]}, message_id=2)
    with pytest.raises(SessionLockedError):
        ValkeySessionManager.create_message(crashed, "s", "a", late)
    texts = [m.message["content"][0]["text"] for m in successor.list_messages("s", "a")]
    assert "late" not in texts
    assert texts[-1] == "after"
    successor.close()


def test_bad_lock_ttl_raises_value_error(standalone_client: Any) -> None:
    with pytest.raises(ValueError, match="lock_ttl"):
        ValkeySessionManager(session_id="s", client=standalone_client, lock=True, lock_ttl=0)


def _closed(client: Any) -> bool:
    """Whether every connection of a valkey-py client's pool is closed (it had some)."""
    pool = client.connection_pool
    connections = [*pool._available_connections, *pool._in_use_connections]
    return bool(connections) and all(connection._sock is None for connection in connections)


def test_a_vanished_session_stops_renewal_and_close_still_closes_the_client(valkey9_server: ServerProcess) -> None:
    manager = ValkeySessionManager.from_url(
        valkey9_server.url, session_id="s", lock=True, lock_ttl=0.3, write_behind=True
    )
    assert manager._lease is not None
    _agent(manager, turns=["hi"])("hello")
    admin: Any = valkey.Valkey.from_url(valkey9_server.url)
    try:
        ValkeySessionRepository(admin).delete_session("s")  # expired, pruned, lost by a restart
    finally:
        admin.close()
    # The next renewal finds the session gone: the loss is recorded and renewal of it stops.
    assert manager._lease._lost_event.wait(timeout=10)
    lost = manager.lost_leases
    assert list(lost) == ["a"]
    assert isinstance(lost["a"], SessionNotFoundError)
    thread = manager._lease._thread
    assert thread is not None
    assert thread.is_alive()  # it did not die of the error
    # A write queued into the vanished session fails in the background; close reports it, after
    # closing the client it made.
    manager.create_message("s", "a", SessionMessage(message={"role": "user", "content": []}, message_id=2))
    client = manager.client
    with pytest.raises(WriteBehindError, match="does not exist"):
        manager.close()
    assert _closed(client)
    assert not thread.is_alive()
    manager.close()  # closing again is a no-op


def test_close_closes_the_client_when_a_lease_cannot_be_released(valkey9_server: ServerProcess) -> None:
    manager = ValkeySessionManager.from_url(valkey9_server.url, session_id="s", lock=True)
    _agent(manager)
    ValkeySessionRepository(manager.client).delete_session("s")
    client = manager.client
    manager.close()  # the release fails (the session is gone): logged, the lease expires anyway
    assert _closed(client)
    assert manager.lost_leases == {}  # never renewed: the loss was not observed, only the release failed


def test_a_lease_taken_over_is_recorded_lost_and_no_longer_renewed(standalone_client: Any) -> None:
    owner = ValkeySessionManager(session_id="s", client=standalone_client, lock=True, lock_ttl=0.3)
    assert owner._lease is not None
    _agent(owner)
    key = owner.session_keys("s").session
    # Another owner's live lease, as after a takeover (its token from the fence, which only grows).
    token = standalone_client.hincrby(key, "fence:a", 1)
    standalone_client.hset(key, "lease:a", f"{token} {int(time.time() * 1000) + 60_000} other")
    assert owner._lease._lost_event.wait(timeout=10)
    assert isinstance(owner.lost_leases["a"], SessionLockedError)
    owner.close()
    assert standalone_client.hget(key, "lease:a").endswith(" other")  # neither renewed nor released over it
