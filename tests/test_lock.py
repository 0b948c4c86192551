"""lock=True: one owner per agent, a second fails fast, leases renew, expire after a crash, and fence."""

from __future__ import annotations

import time
from typing import Any

import pytest
from strands import Agent
from strands.types.session import SessionMessage

from strands_valkey_session_manager import SessionLockedError, ValkeySessionManager
from strands_valkey_session_manager.scripted_model import ScriptedModel


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
