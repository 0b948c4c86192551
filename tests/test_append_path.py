"""The append script's work on the server, counted by the server itself (``INFO commandstats``).

A session without lifetime pays only for what it needs: one read of the session hash (version,
count, shape, lifetime and the agent's lease in one HMGET), one EXISTS for the damage check, the
clock, and the three writes. The expiry step runs only where it can change something: a lifetime,
or a key this write creates.
"""

from __future__ import annotations

from typing import Any

import pytest
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import ValkeySessionRepository
from tests.roundtrips import commandstats, count_round_trips

pytestmark = pytest.mark.backends("valkey9")


def _setup(repo: ValkeySessionRepository, session_id: str = "s") -> None:
    repo.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))
    repo.create_agent(session_id, SessionAgent(agent_id="a", state={}, conversation_manager_state={}))


def _append(repo: ValkeySessionRepository, message_id: int, session_id: str = "s") -> None:
    message = SessionMessage(message={"role": "user", "content": [{"text": str(message_id)}]}, message_id=message_id)
    repo.create_message(session_id, "a", message)


def _script_calls(client: Any, repo: ValkeySessionRepository, message_id: int) -> dict[str, int]:
    """Commands the server ran for one append (EVALSHA and the commands the script called)."""
    client.config_resetstat()
    with count_round_trips() as trips:
        _append(repo, message_id)
    assert trips.value == 1, trips
    calls = commandstats(client)
    calls.pop("config|resetstat", None)
    calls.pop("info", None)
    return calls


@pytest.mark.parametrize("check_versions", [False, True])
def test_append_without_lifetime_runs_six_commands(client: Any, check_versions: bool) -> None:
    repo = ValkeySessionRepository(client, check_versions=check_versions)
    _setup(repo)
    _append(repo, 0)
    assert _script_calls(client, repo, 1) == {
        "evalsha": 1,
        "hmget": 1,  # version, count, shape, ttl, deadline, lease
        "exists": 1,  # damage check
        "time": 1,
        "hset": 2,  # the record; version, count, updated
        "zadd": 1,
    }


def test_append_with_ttl_gives_every_key_the_new_expiry(client: Any) -> None:
    repo = ValkeySessionRepository(client, ttl=60)
    _setup(repo)
    _append(repo, 0)
    calls = _script_calls(client, repo, 1)
    # The four keys an agent-only session has: its scripts do not declare the multi key
    # (ARCHITECTURE.md, "Declared keys").
    assert calls["pexpireat"] == 4
    assert "pexpiretime" not in calls and "hget" not in calls


def test_first_message_of_a_session_without_lifetime_takes_the_session_hash_expiry(client: Any) -> None:
    """The messages and order keys the first append creates expire with the session hash."""
    repo = ValkeySessionRepository(client)
    _setup(repo)
    keys = repo.session_keys("s")
    at = int(client.time()[0]) * 1000 + 3_600_000
    client.pexpireat(keys.session, at)
    calls = _script_calls(client, repo, 0)
    assert calls["pexpiretime"] == 1
    assert {client.pexpiretime(k) for k in (keys.session, keys.agents, keys.messages, keys.order)} == {at}


def test_later_appends_without_lifetime_leave_expiries_alone(client: Any) -> None:
    """No key is created, so no expiry can disagree: nothing is read or set."""
    repo = ValkeySessionRepository(client)
    _setup(repo)
    _append(repo, 0)
    keys = repo.session_keys("s")
    assert {client.pexpiretime(k) for k in keys.all()[:4]} == {-1}
    calls = _script_calls(client, repo, 1)
    assert "pexpiretime" not in calls and "pexpireat" not in calls
    assert {client.pexpiretime(k) for k in keys.all()[:4]} == {-1}


def test_append_after_script_flush_loads_the_script_and_runs_it_again(client: Any) -> None:
    repo = ValkeySessionRepository(client, check_versions=True)
    _setup(repo)
    client.script_flush()
    with count_round_trips() as trips:
        _append(repo, 0)
    assert trips.value == 3, trips  # EVALSHA (NOSCRIPT), SCRIPT LOAD, EVALSHA
    assert repo.read_message("s", "a", 0) is not None


def test_append_sends_the_whole_script_when_the_load_does_not_reach_the_node(client: Any) -> None:
    # A cluster client whose view of the primary went stale loads the script on another node: here
    # the load is dropped, so the server still answers NOSCRIPT to the second EVALSHA.
    repo = ValkeySessionRepository(client, check_versions=True)
    _setup(repo)
    client.script_flush()
    client.script_load = lambda source: None
    client.config_resetstat()
    with count_round_trips() as trips:
        _append(repo, 0)
    assert trips.value == 3, trips  # EVALSHA (NOSCRIPT), EVALSHA (NOSCRIPT), EVAL
    assert commandstats(client).get("eval") == 1
    assert repo.read_message("s", "a", 0) is not None
