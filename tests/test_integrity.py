"""Integrity of a session against races, eviction, garbled fields, vanished sessions, foreign
values and deep nesting: every case either works exactly or raises a typed error having written
nothing.

- Agent-create race: ``create_agent`` of an agent that exists raises ``AgentExistsError`` and
  keeps the stored agent and its messages (a repeat of our own create is recognised).
- Eviction (``DEL`` of some of a session's keys, what ``allkeys-lru`` does): every restore and
  write raises ``DamagedSessionError`` naming what is gone, and nothing is written.
- A garbled field of the session hash (lifetime, version, count, shape, lease, fence): each
  script refuses before its first write (``CorruptRecordError`` naming the field and key).
- A session gone mid-conversation: every write raises ``SessionNotFoundError``.
- Foreign values under our keys: ``CorruptRecordError`` naming the key, never a bare
  ``TypeError``/``ValueError``.
- Nesting deeper than orjson (254) and json (about 500) recurse: records round-trip exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import valkey
import valkey.asyncio
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import (
    AgentExistsError,
    CorruptRecordError,
    DamagedSessionError,
    SessionConflictError,
    SessionNotFoundError,
    ValkeySessionRepository,
)
from strands_valkey_session_manager._client import run_plan
from strands_valkey_session_manager.aio import AsyncValkeySessionRepository
from strands_valkey_session_manager.encryption import LocalKeyProvider, reencrypt_session
from tests.nesting import depth_and_bottom, nested
from tests.roundtrips import count_round_trips
from tests.servers import HOST, start_server

SID = "s"
KINDS = ("session", "agents", "messages", "order", "multi")


def _session(session_id: str = SID) -> Session:
    return Session(session_id=session_id, session_type=SessionType.AGENT)


def _agent(agent_id: str, n: int = 0, state: dict[str, Any] | None = None) -> SessionAgent:
    return SessionAgent(agent_id=agent_id, state=state or {"n": n}, conversation_manager_state={})


def _message(message_id: int, text: str = "", body: dict[str, Any] | None = None) -> SessionMessage:
    content = body or {"role": "user", "content": [{"text": text or f"m{message_id}"}]}
    return SessionMessage(message=content, message_id=message_id)  # type: ignore[arg-type]


class _Orchestrator:
    """The part of ``MultiAgentBase`` the repository uses: ``id`` and ``serialize_state``."""

    def __init__(self, state: dict[str, Any], orchestrator_id: str = "g") -> None:
        self.id = orchestrator_id
        self._state = state

    def serialize_state(self) -> dict[str, Any]:
        return self._state


def _populated(client: Any, **options: Any) -> ValkeySessionRepository:
    """Session ``s``: agent ``a`` with messages 0 and 1, agent ``b`` without messages, and an
    orchestrator ``g``: every one of the five keys exists."""
    repo = ValkeySessionRepository(client, **options)
    repo.create_session(_session())
    repo.create_agent(SID, _agent("a"))
    repo.create_message(SID, "a", _message(0))
    repo.create_message(SID, "a", _message(1))
    repo.create_agent(SID, _agent("b"))
    repo.create_multi_agent(SID, _Orchestrator({"step": 1}))  # type: ignore[arg-type]
    return repo


def _snapshot(client: Any, repo: ValkeySessionRepository, session_id: str = SID) -> dict[str, Any]:
    """Everything stored under the session's five keys, with their expiry."""
    keys = repo.session_keys(session_id)
    snapshot: dict[str, Any] = {}
    for kind, key in zip(KINDS, keys.all(), strict=True):
        kind_of = client.type(key)
        kind_of = kind_of.decode() if isinstance(kind_of, bytes) else kind_of
        if kind_of == "hash":
            snapshot[kind] = client.hgetall(key)
        elif kind_of == "zset":
            snapshot[kind] = client.zrange(key, 0, -1)
        elif kind_of != "none":
            snapshot[kind] = client.get(key)
        snapshot[f"{kind} pttl"] = client.pttl(key) > 0
    return snapshot


def _key(repo: ValkeySessionRepository, kind: str, session_id: str = SID) -> str:
    return repo.session_keys(session_id).all()[KINDS.index(kind)]


# -- 1. agent-create race ---------------------------------------------------------------------------


def test_create_agent_never_overwrites_an_agent_created_meanwhile(standalone_client: Any) -> None:
    """B found no agent; A created it and completed a turn; B's create must neither replace A's
    record nor restart the agent's messages at id 0."""
    a = ValkeySessionRepository(standalone_client, check_versions=True)
    b = ValkeySessionRepository(standalone_client, check_versions=True)
    a.create_session(_session())
    assert b.read_agent(SID, "agent") is None
    a.create_agent(SID, _agent("agent", n=1))
    a.create_message(SID, "agent", _message(0, "a0"))
    a.create_message(SID, "agent", _message(1, "a1"))
    before = _snapshot(standalone_client, a)
    with pytest.raises(AgentExistsError, match="already exists") as caught:
        b.create_agent(SID, _agent("agent", n=2))
    assert isinstance(caught.value, SessionConflictError)
    assert _snapshot(standalone_client, a) == before
    # B's view is not moved to the stored version: a write it still tries is a conflict.
    with pytest.raises(SessionConflictError):
        b.create_message(SID, "agent", _message(0, "b0"))
    restored = ValkeySessionRepository(standalone_client)
    agent = restored.read_agent(SID, "agent")
    assert agent is not None
    assert agent.state == {"n": 1}
    assert [m.message["content"][0]["text"] for m in restored.list_messages(SID, "agent")] == ["a0", "a1"]


def test_create_agent_race_on_the_asyncio_face(standalone_client: Any, valkey9_server: Any) -> None:
    sync = ValkeySessionRepository(standalone_client)
    sync.create_session(_session())
    sync.create_agent(SID, _agent("agent", n=1))
    sync.create_message(SID, "agent", _message(0))
    before = _snapshot(standalone_client, sync)

    async def create() -> None:
        client: Any = valkey.asyncio.Valkey(host=valkey9_server.host, port=valkey9_server.port)
        try:
            await AsyncValkeySessionRepository(client, check_versions=True).create_agent(SID, _agent("agent", n=2))
        finally:
            await client.aclose()

    with pytest.raises(AgentExistsError):
        asyncio.run(create())
    assert _snapshot(standalone_client, sync) == before


def test_a_refused_create_keeps_the_view_of_a_process_that_restored_the_agent(standalone_client: Any) -> None:
    """A process that restored the agent and then tries to create it again is refused, and its
    view stays the restored one: its next append is not a false conflict."""
    writer = ValkeySessionRepository(standalone_client, check_versions=True)
    writer.create_session(_session())
    writer.create_agent(SID, _agent("agent"))
    writer.create_message(SID, "agent", _message(0))
    restored = ValkeySessionRepository(standalone_client, check_versions=True)
    assert restored.read_agent(SID, "agent") is not None
    assert len(restored.list_messages(SID, "agent")) == 1
    with pytest.raises(AgentExistsError):
        restored.create_agent(SID, _agent("agent", n=5))
    restored.create_message(SID, "agent", _message(1))
    assert [m.message_id for m in writer.list_messages(SID, "agent")] == [0, 1]


def test_a_repeated_create_is_recognised_only_while_nothing_followed_it(standalone_client: Any) -> None:
    """The same create sent again (its reply lost) finds its own record at version 1: success.
    Once a message followed it, the same bytes are another writer's agent: refused."""
    repo = ValkeySessionRepository(standalone_client, check_versions=True)
    repo.create_session(_session())
    created = _agent("agent")
    repo.create_agent(SID, created)
    repo.create_agent(SID, created)
    repo.create_message(SID, "agent", _message(0))
    before = _snapshot(standalone_client, repo)
    with pytest.raises(AgentExistsError):
        repo.create_agent(SID, created)
    assert _snapshot(standalone_client, repo) == before


# -- 2. damaged sessions (eviction) -----------------------------------------------------------------


def _writes(repo: ValkeySessionRepository) -> dict[str, Callable[[], object]]:
    return {
        "create_message a": lambda: repo.create_message(SID, "a", _message(2)),
        "create_message b": lambda: repo.create_message(SID, "b", _message(0)),
        "update_agent a": lambda: repo.update_agent(SID, _agent("a", n=9)),
        "update_agent b": lambda: repo.update_agent(SID, _agent("b", n=9)),
        "update_message a": lambda: repo.update_message(SID, "a", _message(0, "redacted")),
        "create_agent c": lambda: repo.create_agent(SID, _agent("c")),
        "create_multi_agent": lambda: repo.create_multi_agent(SID, _Orchestrator({"step": 2})),  # type: ignore[arg-type]
        "update_multi_agent": lambda: repo.update_multi_agent(SID, _Orchestrator({"step": 3})),  # type: ignore[arg-type]
    }


@pytest.mark.backends("valkey9", "redis7", "cluster")
@pytest.mark.parametrize("kind", ["agents", "messages", "order", "multi"])
def test_a_session_missing_one_key_is_damaged_for_every_restore_and_write(client: Any, kind: str) -> None:
    """One of the session's keys evicted (DEL has the same effect): restoring any agent raises
    ``DamagedSessionError`` naming the key (not an empty or partial history), and no write builds
    on the session, whatever agent or orchestrator it touches."""
    repo = _populated(client)
    gone = _key(repo, kind)
    client.delete(gone)
    before = _snapshot(client, repo)
    for agent_id in ("a", "b"):
        fresh = ValkeySessionRepository(client, check_versions=True)
        with pytest.raises(DamagedSessionError, match=f"session_id=<{SID}>") as caught:
            fresh.read_agent(SID, agent_id)
        assert gone in str(caught.value)
        with pytest.raises(DamagedSessionError) as listed:
            fresh.list_messages(SID, agent_id)
        assert gone in str(listed.value) or kind == "agents"
    writer = ValkeySessionRepository(client)
    for name, write in _writes(writer).items():
        with pytest.raises(DamagedSessionError):
            write()
        assert _snapshot(client, repo) == before, f"{name} wrote into a damaged session"


@pytest.mark.parametrize("kind", ["agents", "messages", "order"])
def test_damage_is_noticed_by_a_repository_that_holds_the_agent(standalone_client: Any, kind: str) -> None:
    """The writer restored the agent before the eviction (it checks versions and knows the
    version): its next append, update or redaction is refused all the same."""
    repo = _populated(standalone_client, check_versions=True)
    repo.read_agent(SID, "a")
    repo.list_messages(SID, "a")
    standalone_client.delete(_key(repo, kind))
    before = _snapshot(standalone_client, repo)
    writes: list[Callable[[], object]] = [
        lambda: repo.create_message(SID, "a", _message(2)),
        lambda: repo.update_agent(SID, _agent("a", n=5)),
        lambda: repo.update_message(SID, "a", _message(1, "redacted")),
    ]
    for write in writes:
        with pytest.raises(DamagedSessionError):
            write()
        assert _snapshot(standalone_client, repo) == before


def test_a_message_record_gone_from_its_index_is_damage(standalone_client: Any) -> None:
    repo = _populated(standalone_client)
    order = _key(repo, "order")
    standalone_client.zrem(order, standalone_client.zrange(order, 0, 0)[0])
    with pytest.raises(DamagedSessionError, match="counts 2 messages") as caught:
        repo.list_messages(SID, "a")
    assert order in str(caught.value)
    # Another agent's history is intact and readable.
    assert repo.list_messages(SID, "b") == []


def test_a_session_whose_hash_alone_was_evicted_is_gone_for_writes(standalone_client: Any) -> None:
    repo = _populated(standalone_client)
    standalone_client.delete(_key(repo, "session"))
    before = _snapshot(standalone_client, repo)
    for write in _writes(ValkeySessionRepository(standalone_client, check_versions=True)).values():
        with pytest.raises(SessionNotFoundError):
            write()
    assert _snapshot(standalone_client, repo) == before
    with pytest.raises(DamagedSessionError, match="session hash is gone"):
        repo.read_agent(SID, "a")
    with pytest.raises(DamagedSessionError, match="session hash"):
        repo.list_messages(SID, "a")


def test_checks_keep_restore_and_append_round_trips(standalone_client: Any) -> None:
    repo = _populated(standalone_client, check_versions=True, touch_on_read=True, ttl=60)
    repo.read_agent(SID, "a")  # scripts loaded, as in steady state
    repo.list_messages(SID, "a")
    fresh = ValkeySessionRepository(standalone_client, check_versions=True, touch_on_read=True, ttl=60)
    with count_round_trips() as restore:
        assert fresh.read_agent(SID, "a") is not None
        assert len(fresh.list_messages(SID, "a")) == 2
    assert restore.value == 2
    with count_round_trips() as append:
        fresh.create_message(SID, "a", _message(2))
    assert append.value == 1


def test_a_key_evicted_by_the_server_damages_the_session() -> None:
    """A real eviction under ``maxmemory``: with ``volatile-lru`` the server may evict only keys
    that have an expiry, and here only the session's messages key has one, so memory pressure
    from other keys evicts exactly that key (deterministically, whatever the LRU clock says).
    Restores and writes then raise ``DamagedSessionError`` naming it, instead of restoring the
    agent with an empty history."""
    server = start_server("valkey9")
    client: Any = valkey.Valkey(HOST, server.port)
    try:
        repo = _populated(client)
        messages = _key(repo, "messages")
        client.pexpire(messages, 3_600_000)
        client.config_set("maxmemory-policy", "volatile-lru")
        client.config_set("maxmemory", str(int(client.info("memory")["used_memory"]) + 64 * 1024))
        filler = 0
        while client.exists(messages):
            client.set(f"filler:{filler}", b"x" * 1024)
            filler += 1
            assert filler < 10_000, "the server did not evict the messages key"
        assert int(client.info("stats")["evicted_keys"]) == 1
        client.config_set("maxmemory", "0")
        with pytest.raises(DamagedSessionError) as caught:
            ValkeySessionRepository(client).read_agent(SID, "a")
        assert messages in str(caught.value)
        before = _snapshot(client, repo)
        with pytest.raises(DamagedSessionError):
            repo.create_message(SID, "a", _message(2))
        assert _snapshot(client, repo) == before
    finally:
        client.close()
        server.stop()


# -- 3. garbled fields: each script refuses before its first write ---------------------------------


_OPERATIONS: dict[str, tuple[Callable[[ValkeySessionRepository], object], tuple[str, ...]]] = {
    # operation: (call, the session hash fields its script reads)
    "create_message": (
        lambda r: r.create_message(SID, "a", _message(2)),
        ("ttl", "deadline", "v:a", "n:a", "shape", "lease:a", "w:a"),
    ),
    "create_message over an existing id": (
        lambda r: r.create_message(SID, "a", _message(0, "again")),
        ("w:a",),
    ),
    "update_agent": (
        lambda r: r.update_agent(SID, _agent("a", n=7)),
        ("ttl", "deadline", "v:a", "n:a", "shape", "lease:a"),
    ),
    "update_message": (
        lambda r: r.update_message(SID, "a", _message(0, "redacted")),
        ("ttl", "deadline", "v:a", "n:a", "shape", "lease:a", "w:a"),
    ),
    "create_agent": (lambda r: r.create_agent(SID, _agent("c")), ("ttl", "deadline", "shape")),
    "create_multi_agent": (
        lambda r: r.create_multi_agent(SID, _Orchestrator({"step": 2}, "h")),  # type: ignore[arg-type]
        ("ttl", "deadline", "shape"),
    ),
    "update_multi_agent": (
        lambda r: r.update_multi_agent(SID, _Orchestrator({"step": 3})),  # type: ignore[arg-type]
        ("ttl", "deadline", "shape"),
    ),
    "list_messages": (lambda r: r.list_messages(SID, "a"), ("ttl", "deadline", "v:a", "n:a", "shape", "w:a")),
    "read_agent": (lambda r: r.read_agent(SID, "a"), ("v:a", "n:a", "shape")),
    "read_agent touching": (lambda r: r.read_agent(SID, "a"), ("ttl", "deadline")),
    "acquire_lease": (lambda r: _acquire(r, SID, "a"), ("lease:a", "fence:a")),
}
_GARBAGE = {"lease:a": "garbage"}


def _acquire(repo: ValkeySessionRepository, session_id: str, agent_id: str) -> object:
    """What ``lock=True`` does when the manager initializes an agent: take its lease."""
    return run_plan(repo._db, repo._p_lease(session_id, agent_id, "owner", 10_000, "acquire"))


@pytest.mark.parametrize(
    ("operation", "field"), [(op, field) for op, (_, fields) in _OPERATIONS.items() for field in fields]
)
@pytest.mark.parametrize("garbage", ["12abc", "1.5"])
def test_a_garbled_field_refuses_the_script_before_its_first_write(
    standalone_client: Any, operation: str, field: str, garbage: str
) -> None:
    """The field holds something the script cannot read: ``CorruptRecordError`` naming the field
    and the session hash, nothing written (no record, no version bump, no expiry); once the field
    is repaired, the same writer goes on without a false conflict."""
    repo = _populated(standalone_client, check_versions=True, ttl=600, touch_on_read=True)
    repo.read_agent(SID, "a")
    repo.list_messages(SID, "a")
    session_key = _key(repo, "session")
    good = standalone_client.hget(session_key, field)
    standalone_client.hset(session_key, field, _GARBAGE.get(field, garbage))
    before = _snapshot(standalone_client, repo)
    call, _ = _OPERATIONS[operation]
    with pytest.raises(CorruptRecordError) as caught:
        call(repo)
    assert not isinstance(caught.value, DamagedSessionError)
    assert field in str(caught.value)
    assert session_key in str(caught.value)
    assert _snapshot(standalone_client, repo) == before, f"{operation} wrote before failing on {field}"
    if good is None:
        standalone_client.hdel(session_key, field)
    else:
        standalone_client.hset(session_key, field, good)
    call(repo)


@pytest.mark.parametrize(("field", "good"), [("v:b", "1"), ("w:a", "0")])
def test_a_garbled_version_refuses_reencryption_before_its_first_write(
    standalone_client: Any, field: str, good: str
) -> None:
    provider = LocalKeyProvider({"k1": LocalKeyProvider.generate_key()}, "k1")
    repo = _populated(standalone_client, key_provider=provider)
    session_key = _key(repo, "session")
    standalone_client.hset(session_key, field, "x")
    before = _snapshot(standalone_client, repo)
    with pytest.raises(CorruptRecordError, match=field):
        reencrypt_session(repo, SID)
    assert _snapshot(standalone_client, repo) == before
    standalone_client.hset(session_key, field, good)
    reencrypt_session(repo, SID)
    assert [m.message_id for m in repo.list_messages(SID, "a")] == [0, 1]


# -- 4. a session gone mid-conversation ----------------------------------------------------------


@pytest.mark.backends("valkey9", "cluster")
@pytest.mark.parametrize("encrypted", [False, True])
def test_every_write_into_a_vanished_session_raises_session_not_found(client: Any, encrypted: bool) -> None:
    """The session expired, was deleted, or the server restarted without persistence (all five
    keys gone): each write says so with ``SessionNotFoundError``, creating nothing."""
    options: dict[str, Any] = {"check_versions": True}
    if encrypted:
        options["key_provider"] = LocalKeyProvider({"k1": LocalKeyProvider.generate_key()}, "k1")
    repo = _populated(client, **options)
    repo.read_agent(SID, "a")
    keys = repo.session_keys(SID).all()
    for name, write in _writes(repo).items():
        client.delete(*keys)
        with pytest.raises(SessionNotFoundError, match="does not exist"):
            write()
        assert not any(client.exists(key) for key in keys), f"{name} wrote into a vanished session"
    # A repository that never saw the session: an encrypted write first looks for its data key.
    with pytest.raises(SessionNotFoundError, match="does not exist"):
        ValkeySessionRepository(client, **options).create_message(SID, "a", _message(2))
    assert not any(client.exists(key) for key in keys)


# -- 5. foreign values --------------------------------------------------------------------------


_FOREIGN_MESSAGES = [
    b'{"message": 5}',
    b'{"message": 5, "message_id": 0, "created_at": "t", "updated_at": "t"}',
    b'{"message": {"role": "user", "content": []}, "message_id": "0", "created_at": "t", "updated_at": "t"}',
    b'{"message": {"role": "user", "content": []}, "message_id": true, "created_at": "t", "updated_at": "t"}',
    b'{"message": {"role": "user", "content": []}, "message_id": 0, "created_at": 5, "updated_at": "t"}',
    b'{"message": {"role": "user", "content": []}, "message_id": 0, "redact_message": [], '
    b'"created_at": "t", "updated_at": "t"}',
    b"[1, 2]",
    b'"text"',
    b"5",
    b"null",
    b"{not json",
    b"\xff\xfe",
]
_FOREIGN_AGENTS = [
    b'{"agent_id": "a"}',
    b'{"agent_id": "a", "state": [], "conversation_manager_state": {}, "created_at": "t", "updated_at": "t"}',
    b'{"agent_id": 5, "state": {}, "conversation_manager_state": {}, "created_at": "t", "updated_at": "t"}',
    b'{"agent_id": "a", "state": {}, "conversation_manager_state": "x", "created_at": "t", "updated_at": "t"}',
    b"[1, 2]",
    b"5",
]


@pytest.mark.parametrize("value", _FOREIGN_MESSAGES)
def test_a_foreign_message_record_is_a_corrupt_record_error(standalone_client: Any, value: bytes) -> None:
    repo = _populated(standalone_client)
    messages = _key(repo, "messages")
    member = standalone_client.zrange(_key(repo, "order"), 0, 0)[0]
    standalone_client.hset(messages, member, value)
    for read in (lambda: repo.read_message(SID, "a", 0), lambda: repo.list_messages(SID, "a")):
        with pytest.raises(CorruptRecordError) as caught:
            read()
        assert messages in str(caught.value)


@pytest.mark.parametrize("value", _FOREIGN_AGENTS)
def test_a_foreign_agent_record_is_a_corrupt_record_error(standalone_client: Any, value: bytes) -> None:
    repo = _populated(standalone_client)
    agents = _key(repo, "agents")
    standalone_client.hset(agents, "a", value)
    with pytest.raises(CorruptRecordError) as caught:
        ValkeySessionRepository(standalone_client, check_versions=True).read_agent(SID, "a")
    assert agents in str(caught.value)


@pytest.mark.parametrize("value", [b"[]", b'{"session_id": 5}', b'{"session_id": "s", "session_type": []}', b"7"])
def test_a_foreign_session_record_is_a_corrupt_record_error(standalone_client: Any, value: bytes) -> None:
    repo = _populated(standalone_client)
    standalone_client.hset(_key(repo, "session"), "record", value)
    with pytest.raises(CorruptRecordError) as caught:
        repo.read_session(SID)
    assert _key(repo, "session") in str(caught.value)


@pytest.mark.parametrize("value", [b"[]", b"7", b'"text"', b"null", b"{not json"])
def test_a_foreign_orchestrator_record_is_a_corrupt_record_error(standalone_client: Any, value: bytes) -> None:
    repo = _populated(standalone_client)
    standalone_client.hset(_key(repo, "multi"), "g", value)
    with pytest.raises(CorruptRecordError) as caught:
        repo.read_multi_agent(SID, "g")
    assert _key(repo, "multi") in str(caught.value)


@pytest.mark.parametrize("field", ["v:a", "n:a", "shape"])
def test_a_foreign_counter_is_a_corrupt_record_error_on_reads_and_writes(standalone_client: Any, field: str) -> None:
    repo = _populated(standalone_client)
    session_key = _key(repo, "session")
    standalone_client.hset(session_key, field, "not a number")
    for call in (
        lambda: ValkeySessionRepository(standalone_client, check_versions=True).read_agent(SID, "a"),
        lambda: repo.list_messages(SID, "a"),
        lambda: repo.create_message(SID, "a", _message(2)),
        lambda: repo.update_agent(SID, _agent("a", n=3)),
    ):
        with pytest.raises(CorruptRecordError) as caught:
            call()
        assert session_key in str(caught.value)
        assert field in str(caught.value)


# -- 6. deep nesting ------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [300, 1000, 100_000])
def test_deeply_nested_records_round_trip_exactly(standalone_client: Any, depth: int) -> None:
    """Beyond orjson's 254 levels and json's recursion (~500 levels to encode, ~1000 to decode):
    messages, agent state and orchestrator state are stored and restored exactly."""
    repo = ValkeySessionRepository(standalone_client, check_versions=True)
    repo.create_session(_session())
    repo.create_agent(SID, _agent("a", state={"deep": nested(depth)}))
    repo.create_message(SID, "a", _message(0, body=nested(depth)))
    repo.create_message(SID, "a", _message(1))
    repo.update_message(SID, "a", _message(1, body=nested(depth)))
    repo.create_multi_agent(SID, _Orchestrator({"deep": nested(depth)}))  # type: ignore[arg-type]
    fresh = ValkeySessionRepository(standalone_client)
    listed = fresh.list_messages(SID, "a")
    read = fresh.read_message(SID, "a", 0)
    agent = fresh.read_agent(SID, "a")
    state = fresh.read_multi_agent(SID, "g")
    assert read is not None and agent is not None and state is not None
    for body in (listed[0].message, listed[1].message, read.message, agent.state["deep"], state["deep"]):
        assert depth_and_bottom(body) == (depth, {"bottom": b"\x00\xff", "n": 10**30})


def test_create_multi_agent_never_overwrites_state_created_meanwhile(standalone_client: Any) -> None:
    """B found no orchestrator state; A created it and ran on; B's create must not replace it."""
    a = ValkeySessionRepository(standalone_client)
    b = ValkeySessionRepository(standalone_client)
    a.create_session(_session())
    assert b.read_multi_agent(SID, "g") is None
    a.create_multi_agent(SID, _Orchestrator({"step": 1}))  # type: ignore[arg-type]
    a.update_multi_agent(SID, _Orchestrator({"step": 5}))  # type: ignore[arg-type]
    before = _snapshot(standalone_client, a)
    with pytest.raises(AgentExistsError, match=r"multi_agent_id=<g>.*multi-agent state already exists"):
        b.create_multi_agent(SID, _Orchestrator({"step": 0}))  # type: ignore[arg-type]
    assert _snapshot(standalone_client, a) == before
    assert b.read_multi_agent(SID, "g") == {"step": 5}


def test_a_repeated_multi_agent_create_is_a_success_and_writes_nothing_more(standalone_client: Any) -> None:
    """The same create sent again after a lost reply finds its own record: success."""
    repo = ValkeySessionRepository(standalone_client)
    repo.create_session(_session())
    repo.create_multi_agent(SID, _Orchestrator({"step": 1}))  # type: ignore[arg-type]
    before = _snapshot(standalone_client, repo)
    repo.create_multi_agent(SID, _Orchestrator({"step": 1}))  # type: ignore[arg-type]
    assert _snapshot(standalone_client, repo) == before
