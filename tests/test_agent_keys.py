"""The keys an agent's scripts declare: four for a session without orchestrator state, five once the
session has a multi key.

While a cluster moves a slot, the source node refuses (``TRYAGAIN``) every command or script that
declares a key it lacks, until the whole slot has moved; an agent-only session never has its multi
key. So the scripts of an agent's turn (``put_in_session`` for an agent, ``append_message``,
``update_record`` of an agent or message, ``list_messages``) are sent with the session's first
four keys, and ``lease``/``session_dek`` with the session hash alone. A script sent so to a session
that has a multi key answers ``R_NEEDS_ALL_KEYS`` before its first write, and is sent again with
all five (the cluster case: ``tests/test_fault_injection.py``, the migrating slot).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from strands_valkey_session_manager import ValkeySessionRepository
from strands_valkey_session_manager._client import ScriptCall
from strands_valkey_session_manager._engine import run_plan
from strands_valkey_session_manager._schema import R_NEEDS_ALL_KEYS
from tests.conftest import Backend
from tests.interleave import Orchestrator, agent, message, session

SID, AID = "s", "a"
AGENT_SCRIPTS = {"put_in_session", "append_message", "update_record", "list_messages"}


class Recording:
    """An adapter that keeps every script call it executes with its reply, and (``snapshot``) the
    session's stored keys just before and after each call."""

    def __init__(self, inner: Any, snapshot: Any = None) -> None:
        self._inner = inner
        self._snapshot = snapshot
        self.calls: list[tuple[ScriptCall, Any, Any, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def execute(self, call: Any) -> Any:
        before = self._snapshot() if self._snapshot else None
        reply = self._inner.execute(call)
        after = self._snapshot() if self._snapshot else None
        for one, answer in zip(call, reply, strict=True) if isinstance(call, list) else [(call, reply)]:
            if isinstance(one, ScriptCall):
                self.calls.append((one, answer, before, after))
        return reply


def _refused(reply: Any) -> bool:
    code = reply[0] if isinstance(reply, list) else reply
    return int(code) == R_NEEDS_ALL_KEYS


@pytest.fixture
def raw(backend: Backend) -> Iterator[Any]:
    """A valkey-py client of the backend, for reading what is stored."""
    made = backend.make_client("valkey-cluster-bytes" if backend.is_cluster else "valkey-py-bytes")
    try:
        yield made
    finally:
        made.close()


def _stored(raw: Any, repo: ValkeySessionRepository) -> dict[str, Any]:
    """Every key of the session: its contents and expiry."""
    out: dict[str, Any] = {}
    for key in repo.session_keys(SID).all():
        kind = raw.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        contents = {"hash": raw.hgetall, "zset": lambda k: raw.zrange(k, 0, -1), "none": lambda k: None}[kind](key)
        out[key] = (kind, contents, raw.pexpiretime(key))
    return out


def test_an_agent_only_session_s_turn_leaves_out_the_multi_key(store_client: Any) -> None:
    """A restore and a whole turn of an agent (append, redaction, agent update, a second agent,
    a lease) declare no key that an agent-only session does not have."""
    setup = ValkeySessionRepository(store_client, ttl=timedelta(hours=1))
    setup.create_session(session(SID))
    setup.create_agent(SID, agent(AID))
    for i in range(3):
        setup.create_message(SID, AID, message(SID, AID, i, "seed"))
    repo = ValkeySessionRepository(store_client, check_versions=True, ttl=timedelta(hours=1))
    repo.restore_step_records = 1  # a restore in three steps
    recording = Recording(repo._db)
    repo._db = recording
    assert repo.read_agent(SID, AID) is not None
    assert len(repo.list_messages(SID, AID)) == 3
    repo.create_message(SID, AID, message(SID, AID, 3, "turn"))
    repo.update_message(SID, AID, message(SID, AID, 3, "redacted"))
    repo.update_agent(SID, agent(AID, turn=1))
    repo.create_agent(SID, agent("b"))
    run_plan(repo._db, repo._p_lease(SID, AID, "owner-1", 30_000, "acquire"))
    repo.create_message(SID, AID, message(SID, AID, 4, "leased"))
    keys = repo.session_keys(SID)
    declared = {(call.name, tuple(call.keys)) for call, *_ in recording.calls}
    assert {name for name, _ in declared} == {*AGENT_SCRIPTS, "lease"}, declared
    for name, names in declared:
        assert list(names) == ([keys.session] if name == "lease" else keys.without_multi()), (name, names)
    assert not any(_refused(reply) for _, reply, *_ in recording.calls)
    assert [m.message_id for m in setup.list_messages(SID, AID)] == [0, 1, 2, 3, 4]


def test_a_process_unaware_of_orchestrator_state_writes_once_with_all_five_keys(store_client: Any, raw: Any) -> None:
    """Another process adds orchestrator state after this one restored its agent: the next append
    is refused with R_NEEDS_ALL_KEYS (nothing stored, nothing expired), then sent with all five
    keys, and extends the multi key's lifetime with the others'; from then on one call each."""
    ttl = timedelta(hours=1)
    setup = ValkeySessionRepository(store_client, ttl=ttl)
    setup.create_session(session(SID))
    setup.create_agent(SID, agent(AID))
    setup.create_message(SID, AID, message(SID, AID, 0, "seed"))
    repo = ValkeySessionRepository(store_client, check_versions=True, ttl=ttl)
    assert repo.read_agent(SID, AID) is not None
    repo.list_messages(SID, AID)
    ValkeySessionRepository(store_client, ttl=ttl).create_multi_agent(SID, Orchestrator("graph", {"node": "a"}))  # type: ignore[arg-type]
    time.sleep(0.01)  # this process's writes expire the keys later than the orchestrator's create did
    recording = Recording(repo._db, snapshot=lambda: _stored(raw, repo))
    repo._db = recording
    repo.create_message(SID, AID, message(SID, AID, 1, "turn"))
    (first, refused, before, after), (second, version, _, stored) = recording.calls
    assert (first.name, second.name) == ("append_message", "append_message")
    assert _refused(refused) and before == after, "the refused script wrote something"
    keys = repo.session_keys(SID)
    assert (first.keys, second.keys) == (keys.without_multi(), keys.all())
    assert int(version) == 3
    expiries = {key: expiry for key, (_, _, expiry) in stored.items()}
    assert len(set(expiries.values())) == 1 and next(iter(expiries.values())) > 0, expiries
    repo.update_agent(SID, agent(AID, turn=1))
    repo.update_message(SID, AID, message(SID, AID, 1, "redacted"))
    assert len(repo.list_messages(SID, AID)) == 2
    assert [c.keys for c, *_ in recording.calls[2:]] == [keys.all()] * 3
    assert [m.message_id for m in setup.list_messages(SID, AID)] == [0, 1]


@pytest.mark.parametrize("operation", ["create_agent", "update_agent", "update_message", "list_messages"])
def test_every_agent_script_refuses_before_writing_when_the_session_has_a_multi_key(
    store_client: Any, raw: Any, operation: str
) -> None:
    """Each script of an agent's turn, sent with four keys to a session with orchestrator state,
    answers R_NEEDS_ALL_KEYS with the session unchanged; the operation then succeeds."""
    setup = ValkeySessionRepository(store_client, ttl=timedelta(hours=1))
    setup.create_session(session(SID))
    setup.create_agent(SID, agent(AID))
    setup.create_message(SID, AID, message(SID, AID, 0, "seed"))
    setup.create_multi_agent(SID, Orchestrator("graph", {"node": "a"}))  # type: ignore[arg-type]
    repo = ValkeySessionRepository(store_client, ttl=timedelta(hours=1), touch_on_read=True)
    run = {
        "create_agent": lambda: repo.create_agent(SID, agent("b")),
        "update_agent": lambda: repo.update_agent(SID, agent(AID, turn=1)),
        "update_message": lambda: repo.update_message(SID, AID, message(SID, AID, 0, "redacted")),
        "list_messages": lambda: repo.list_messages(SID, AID),
    }[operation]
    time.sleep(0.01)
    recording = Recording(repo._db, snapshot=lambda: _stored(raw, repo))
    repo._db = recording
    run()
    (_, refused, before, after), (_, _, _, stored) = recording.calls
    assert _refused(refused) and before == after
    assert len({expiry for _, _, expiry in stored.values()}) == 1, stored
