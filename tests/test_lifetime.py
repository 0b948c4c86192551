"""Session lifetime on real servers: ttl slides on every write, max_age is absolute, nothing half-expires."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import ValkeySessionRepository
from tests.roundtrips import count_round_trips


def _setup(repo: ValkeySessionRepository, session_id: str = "s") -> None:
    repo.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))
    repo.create_agent(session_id, SessionAgent(agent_id="a", state={}, conversation_manager_state={}))


def _append(repo: ValkeySessionRepository, message_id: int, session_id: str = "s") -> None:
    message = SessionMessage(message={"role": "user", "content": [{"text": str(message_id)}]}, message_id=message_id)
    repo.create_message(session_id, "a", message)


def _pttls(client: Any, repo: ValkeySessionRepository, session_id: str = "s") -> list[int]:
    return [client.pttl(k) for k in repo.session_keys(session_id).all()]


def test_ttl_applies_to_every_key_of_the_session(client: Any) -> None:
    repo = ValkeySessionRepository(client, ttl=60)
    _setup(repo)
    _append(repo, 0)
    repo.create_multi_agent("s", _Orchestrator())  # type: ignore[arg-type]
    pttls = _pttls(client, repo)
    assert all(55_000 < p <= 60_000 for p in pttls), pttls


def test_every_write_slides_the_whole_session(client: Any) -> None:
    repo = ValkeySessionRepository(client, ttl=timedelta(seconds=30))
    _setup(repo)
    keys = repo.session_keys("s")
    client.pexpire(keys.session, 1000)
    client.pexpire(keys.agents, 1000)
    _append(repo, 0)
    assert all(p > 25_000 for p in _pttls(client, repo) if p != -2)


def test_append_with_ttl_is_still_one_round_trip(client: Any) -> None:
    repo = ValkeySessionRepository(client, ttl=60, max_age=3600)
    _setup(repo)
    _append(repo, 0)
    with count_round_trips() as trips:
        _append(repo, 1)
    assert trips.value == 1


def test_max_age_caps_sliding_ttl(client: Any) -> None:
    repo = ValkeySessionRepository(client, ttl=3600, max_age=20)
    _setup(repo)
    _append(repo, 0)
    assert all(0 < p <= 20_000 for p in _pttls(client, repo) if p != -2)


def test_writer_without_config_keeps_the_sessions_lifetime(client: Any) -> None:
    ValkeySessionRepository(client, ttl=60).create_session(Session(session_id="s", session_type=SessionType.AGENT))
    plain = ValkeySessionRepository(client)
    plain.create_agent("s", SessionAgent(agent_id="a", state={}, conversation_manager_state={}))
    _append(plain, 0)
    # The stored ttl slides the session for writers that did not configure one: no key lives forever.
    assert all(0 < p <= 60_000 for p in _pttls(client, plain) if p != -2)
    assert -1 not in _pttls(client, plain)


def test_touch_on_read_extends_and_plain_reads_do_not(client: Any) -> None:
    repo = ValkeySessionRepository(client, ttl=60)
    _setup(repo)
    _append(repo, 0)
    for key in repo.session_keys("s").all():
        client.pexpire(key, 5000)
    repo.list_messages("s", "a")
    repo.read_agent("s", "a")
    assert max(_pttls(client, repo)) <= 5000
    toucher = ValkeySessionRepository(client, ttl=60, touch_on_read=True)
    assert toucher.read_agent("s", "a") is not None
    assert min(p for p in _pttls(client, repo) if p != -2) > 50_000
    for key in repo.session_keys("s").all():
        client.pexpire(key, 5000)
    assert len(toucher.list_messages("s", "a")) == 1
    assert min(p for p in _pttls(client, repo) if p != -2) > 50_000


@pytest.mark.backends("valkey9", "redis7", "cluster")
def test_expired_session_leaves_nothing_and_vanishes_from_the_catalog(client: Any) -> None:
    repo = ValkeySessionRepository(client, ttl=0.4, user_id="u", tags=["t"])
    _setup(repo, "short")
    _append(repo, 0, "short")
    keep = ValkeySessionRepository(client, user_id="u", tags=["t"])
    _setup(keep, "long")
    time.sleep(0.6)
    assert client.exists(*repo.session_keys("short").all()) == 0
    for kwargs in ({}, {"user_id": "u"}, {"tag": "t"}):
        assert [s.session_id for s in repo.list_sessions(**kwargs).sessions] == ["long"]  # type: ignore[arg-type]
    # Listing removed the dead entries: no trace of the expired session is left in the keyspace.
    assert not [k for k in _all_keys(client) if b"short" in (k if isinstance(k, bytes) else k.encode())]


@pytest.mark.backends("valkey9", "cluster")
def test_active_session_never_half_expires(client: Any) -> None:
    repo = ValkeySessionRepository(client, ttl=0.5)
    _setup(repo)
    deadline = time.monotonic() + 1.2
    message_id = 0
    while time.monotonic() < deadline:
        _append(repo, message_id)
        message_id += 1
        # After each acknowledged write every key of the session exists and shares one expiry.
        keys = repo.session_keys("s")
        assert client.exists(keys.session, keys.agents, keys.messages, keys.order) == 4
        expiries = {client.pexpiretime(k) for k in (keys.session, keys.agents, keys.messages, keys.order)}
        assert len(expiries) == 1
        time.sleep(0.05)
    assert [m.message_id for m in repo.list_messages("s", "a")] == list(range(message_id))


@pytest.mark.validation
@pytest.mark.parametrize("bad", [0, -1, "60", True, timedelta(0)])
def test_bad_lifetimes_raise_value_error(client: Any, bad: Any) -> None:
    with pytest.raises(ValueError, match="ttl"):
        ValkeySessionRepository(client, ttl=bad)
    with pytest.raises(ValueError, match="max_age"):
        ValkeySessionRepository(client, max_age=bad)


class _Orchestrator:
    id = "graph"

    def serialize_state(self) -> dict[str, Any]:
        return {"status": "running"}


def _all_keys(client: Any) -> list[Any]:
    # Test-only inspection of the whole keyspace (every primary on a cluster).
    if hasattr(client, "get_nodes"):
        return list(client.keys("*", target_nodes=client.PRIMARIES))
    return list(client.keys("*"))
