"""Every row of ARCHITECTURE.md's "Round trips per operation", counted on a real standalone server.

Steady state: each sequence runs once on other sessions first, so every script is loaded and the
counted run is what a long-lived process pays.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import ValkeySessionManager, ValkeySessionRepository
from strands_valkey_session_manager._keys import KeyLayout, expiry_member
from strands_valkey_session_manager.encryption import LocalKeyProvider, reencrypt_session, rotate_wrapping_key
from tests.roundtrips import count_round_trips


class _Orchestrator:
    """Stands in for a Graph/Swarm: the repository only calls ``id`` and ``serialize_state``."""

    id = "graph"

    def __init__(self, step: int) -> None:
        self.step = step

    def serialize_state(self) -> dict[str, Any]:
        return {"step": self.step}


def _agent(agent_id: str = "a", n: int = 0) -> SessionAgent:
    return SessionAgent(agent_id=agent_id, state={"n": n}, conversation_manager_state={})


def _message(message_id: int) -> SessionMessage:
    return SessionMessage(message={"role": "user", "content": [{"text": str(message_id)}]}, message_id=message_id)


def _session(session_id: str) -> Session:
    return Session(session_id=session_id, session_type=SessionType.AGENT)


def _trips(call: Callable[[], object]) -> int:
    with count_round_trips() as trips:
        call()
    return trips.value


def _repository_rows(repo: ValkeySessionRepository, sid: str) -> dict[str, int]:
    """The repository's rows, run on session ``sid`` (and ids derived from it)."""
    multi: Any = _Orchestrator(1)
    counted = {
        "create_session": _trips(lambda: repo.create_session(_session(sid))),
        "read_session": _trips(lambda: repo.read_session(sid)),
        "create_agent": _trips(lambda: repo.create_agent(sid, _agent())),
        "create_multi_agent": _trips(lambda: repo.create_multi_agent(sid, multi)),
        "read_agent": _trips(lambda: repo.read_agent(sid, "a")),
        "read_multi_agent": _trips(lambda: repo.read_multi_agent(sid, "graph")),
        "create_message": _trips(lambda: repo.create_message(sid, "a", _message(0))),
        "read_message": _trips(lambda: repo.read_message(sid, "a", 0)),
        "update_agent": _trips(lambda: repo.update_agent(sid, _agent(n=1))),
        "update_message": _trips(lambda: repo.update_message(sid, "a", _message(0))),
        "update_multi_agent": _trips(lambda: repo.update_multi_agent(sid, _Orchestrator(2))),  # type: ignore[arg-type]
        "list_messages": _trips(lambda: repo.list_messages(sid, "a")),
        "agent restore": _trips(lambda: (repo.read_agent(sid, "a"), repo.list_messages(sid, "a"))),
        "session_info": _trips(lambda: repo.session_info(sid)),
        "list_sessions page": _trips(repo.list_sessions),
        "sweep_catalog, nothing due": _trips(repo.sweep_catalog),
        "fork_session, encrypted": _trips(lambda: repo.fork_session(sid, sid + "-fork")),
        "rotate_wrapping_key": _trips(lambda: rotate_wrapping_key(repo, sid)),
        "reencrypt_session": _trips(lambda: reencrypt_session(repo, sid)),
    }
    repo.create_agent(sid, _agent("b"))
    counted["export_session, 2 agents"] = _trips(lambda: repo.export_session(sid))
    export = repo.export_session(sid)
    counted["delete_session"] = _trips(lambda: repo.delete_session(sid))
    counted["import_session, 4 records"] = _trips(lambda: repo.import_session(export))
    counted["import_session(overwrite=True), 4 records"] = _trips(lambda: repo.import_session(export, overwrite=True))
    repo.delete_session(sid)
    repo.delete_session(sid + "-fork")
    return counted


REPOSITORY_ROWS = {
    "create_session": 1,
    "read_session": 1,
    "create_agent": 1,
    "create_multi_agent": 1,
    "read_agent": 1,
    "read_multi_agent": 1,
    "create_message": 1,
    "read_message": 1,
    "update_agent": 1,
    "update_message": 1,
    "update_multi_agent": 1,
    "list_messages": 1,
    "agent restore": 2,
    "session_info": 1,
    "list_sessions page": 2,
    "sweep_catalog, nothing due": 1,
    # DUMP pipeline; then, the records being bound to their session, an export of the source (3 + 1
    # agent), the target's create and one batch of writes under its own data key.
    "fork_session, encrypted": 1 + (3 + 1) + 1 + 1,
    "rotate_wrapping_key": 2,
    "reencrypt_session": 2,  # one attempt
    "export_session, 2 agents": 3 + 2,
    "delete_session": 2,
    "import_session, 4 records": 2 + 1,  # one batch of up to 500 records
    "import_session(overwrite=True), 4 records": 2 + 1,  # the catalog entry is the same: no ZREM step
}


def test_every_repository_row(standalone_client: Any) -> None:
    provider = LocalKeyProvider({"k1": os.urandom(32)}, "k1")
    repo = ValkeySessionRepository(standalone_client, key_provider=provider)
    _repository_rows(repo, "warm-up")
    assert _repository_rows(repo, "s") == REPOSITORY_ROWS


def test_fork_of_a_plain_session(standalone_client: Any) -> None:
    repo = ValkeySessionRepository(standalone_client)
    for sid in ("warm-up", "s"):
        repo.create_session(_session(sid))
        repo.create_agent(sid, _agent())
        repo.create_message(sid, "a", _message(0))
    repo.fork_session("warm-up", "warm-up-fork")
    assert _trips(lambda: repo.fork_session("s", "s-fork")) == 2  # DUMP pipeline; create with RESTOREs


def test_manager_start(standalone_client: Any) -> None:
    ValkeySessionManager(session_id="warm-up", client=standalone_client)
    assert _trips(lambda: ValkeySessionManager(session_id="s", client=standalone_client)) == 2  # new: HGET, create
    assert _trips(lambda: ValkeySessionManager(session_id="s", client=standalone_client)) == 1  # existing: HGET


def _same_shard(layout: KeyLayout, session_id: str, stem: str) -> str:
    shard = layout.catalog_shard(session_id)
    return next(f"{stem}{i}" for i in range(1000) if layout.catalog_shard(f"{stem}{i}") == shard)


def _expired(repo: ValkeySessionRepository, client: Any, session_id: str) -> None:
    """A session with a lifetime that has run out: its keys gone, its expiry entry due."""
    repo.create_session(_session(session_id))
    layout = KeyLayout()
    expiry = layout.catalog_expiry(layout.catalog_shard(session_id))
    (entry,) = client.zrange(expiry, 0, -1)
    member = client.hget(repo.session_keys(session_id).session, "catalog")
    client.delete(*repo.session_keys(session_id).all())  # what expiry does
    client.zrem(expiry, entry)
    client.zadd(expiry, {expiry_member(1, member, None, ()): 0})  # due since 1970


@pytest.mark.parametrize("sweep", ["create_session", "sweep_catalog"])
def test_a_due_expiry_entry_costs_two_more(standalone_client: Any, sweep: str) -> None:
    repo = ValkeySessionRepository(standalone_client, ttl=3600)
    _expired(repo, standalone_client, "warm-up")
    repo.sweep_catalog()  # scripts loaded
    _expired(repo, standalone_client, "gone")
    layout = KeyLayout()
    if sweep == "create_session":
        other = _same_shard(layout, "gone", "new")
        assert _trips(lambda: repo.create_session(_session(other))) == 3  # create; session_info; ZREM/ZADD
    else:
        # A pass: due ranges, session_info, ZREM/ZADD; then the due ranges again, found empty.
        assert _trips(repo.sweep_catalog) == 3 + 1
    assert standalone_client.zcard(layout.catalog_expiry(layout.catalog_shard("gone"))) == (
        1 if sweep == "create_session" else 0
    )


def test_prune(standalone_client: Any) -> None:
    repo = ValkeySessionRepository(standalone_client)
    for sid in ("warm-up", "idle"):
        repo.create_session(_session(sid))
        standalone_client.hset(repo.session_keys(sid).session, "updated", 1_600_000_000_000)  # idle since 2020
        if sid == "warm-up":
            assert repo.prune(older_than=3600) == 1  # scripts loaded
    # sweep (nothing due: 1) + one listing page (2) + the delete (script, then the catalog ZREMs).
    assert _trips(lambda: repo.prune(older_than=3600)) == 1 + 2 + 2
    assert repo.read_session("idle") is None
    # Nothing listed: the page's ranges come back empty and no session_info follows.
    assert _trips(lambda: repo.prune(older_than=3600)) == 1 + 1
    assert _trips(repo.list_sessions) == 1
