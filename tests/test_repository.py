"""Repository semantics on every server and client: the SDK's store contract plus our data model."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from strands.types.exceptions import SessionException
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import (
    AsyncValkeySessionRepository,
    CorruptRecordError,
    SessionNotFoundError,
    SessionTooLargeError,
    ValkeySessionRepository,
)
from strands_valkey_session_manager.transfer import SessionExport
from tests.blocking import BlockingFace
from tests.conftest import Backend
from tests.roundtrips import count_round_trips

HOSTILE_IDS = ["abc", "a:b", "{x}", "}{", "*", "?[a]\\", "with space", "ünï-会话-🙂", "%2A", "a/b"]


def _session(session_id: str = "s1") -> Session:
    return Session(session_id=session_id, session_type=SessionType.AGENT)


def _agent(agent_id: str = "agent", **state: Any) -> SessionAgent:
    return SessionAgent(agent_id=agent_id, state=dict(state), conversation_manager_state={"removed_message_count": 0})


def _message(message_id: int, text: str = "hello") -> SessionMessage:
    return SessionMessage(message={"role": "user", "content": [{"text": text}]}, message_id=message_id)


@pytest.fixture
def repo(repo_face: str, client: Any, backend: Backend, client_kind: str) -> Iterator[Any]:
    """The repository on ``client``, its asyncio twin on the same kind of client, and both faces
    on Valkey GLIDE clients to the same backend (``client`` then only serves the raw checks)."""
    if repo_face == "sync":
        yield ValkeySessionRepository(client)
        return
    if repo_face == "glide-sync":
        glide_client = backend.make_client(backend.glide_kind)
        try:
            yield ValkeySessionRepository(glide_client)
        finally:
            glide_client.close()
        return
    if repo_face == "glide-async":
        loop = asyncio.new_event_loop()
        glide_async = loop.run_until_complete(backend.make_async_client(backend.glide_kind))
        face = BlockingFace(AsyncValkeySessionRepository(glide_async), loop=loop)
    else:
        face = BlockingFace(AsyncValkeySessionRepository(backend.make_async_client(client_kind)))
    try:
        yield face
    finally:
        face.close()


def _with_agent(repo: ValkeySessionRepository, session_id: str = "s1", agent_id: str = "agent") -> None:
    repo.create_session(_session(session_id))
    repo.create_agent(session_id, _agent(agent_id))


def _with_history(repo: ValkeySessionRepository, count: int) -> None:
    """Session s1 with ``count`` messages of agent "agent", written in pipelined batches."""
    export = SessionExport(
        session=_session("s1"),
        agents=[_agent("agent")],
        messages={"agent": [_message(i, str(i)) for i in range(count)]},
    )
    repo.write_export(export)


# -- sessions ---------------------------------------------------------------------------------


def test_create_and_read_session(repo: ValkeySessionRepository) -> None:
    session = _session()
    assert repo.create_session(session) is session
    assert repo.read_session("s1") == session


def test_read_missing_session_is_none(repo: ValkeySessionRepository) -> None:
    assert repo.read_session("missing") is None


def test_create_existing_session_raises(repo: ValkeySessionRepository) -> None:
    repo.create_session(_session())
    with pytest.raises(SessionException, match="already exists"):
        repo.create_session(_session())


def test_delete_session_removes_every_key(repo: ValkeySessionRepository, client: Any) -> None:
    _with_agent(repo)
    repo.create_message("s1", "agent", _message(0))
    keys = repo.session_keys("s1").all()
    assert client.exists(*keys) >= 4
    repo.delete_session("s1")
    assert client.exists(*keys) == 0
    assert repo.read_session("s1") is None


def test_delete_missing_session_raises(repo: ValkeySessionRepository) -> None:
    with pytest.raises(SessionNotFoundError, match="does not exist"):  # a SessionException
        repo.delete_session("missing")


@pytest.mark.parametrize("victim", ["abc", "ab"])
def test_delete_leaves_prefix_and_glob_siblings_intact(repo: ValkeySessionRepository, victim: str) -> None:
    survivors = [s for s in ["abc", "abcd", "ab*", "abc*", "ab", "ab?", "[ab]c"] if s != victim]
    for session_id in [victim, *survivors]:
        _with_agent(repo, session_id)
        repo.create_message(session_id, "agent", _message(0, session_id))
    repo.delete_session(victim)
    assert repo.read_session(victim) is None
    for session_id in survivors:
        assert [m.message["content"][0]["text"] for m in repo.list_messages(session_id, "agent")] == [session_id]


@pytest.mark.parametrize("session_id", HOSTILE_IDS)
def test_hostile_ids_round_trip(repo: ValkeySessionRepository, session_id: str) -> None:
    agent_id = f"agent-{session_id}"
    _with_agent(repo, session_id, agent_id)
    repo.create_message(session_id, agent_id, _message(0, session_id))
    assert repo.read_session(session_id) == repo.read_session(session_id)
    assert repo.read_agent(session_id, agent_id).agent_id == agent_id  # type: ignore[union-attr]
    assert repo.list_messages(session_id, agent_id)[0].message["content"][0]["text"] == session_id


# -- agents -----------------------------------------------------------------------------------


def test_create_and_read_agent(repo: ValkeySessionRepository) -> None:
    repo.create_session(_session())
    agent = _agent(count=1)
    repo.create_agent("s1", agent)
    assert repo.read_agent("s1", "agent") == agent


def test_read_missing_agent_is_none(repo: ValkeySessionRepository) -> None:
    repo.create_session(_session())
    assert repo.read_agent("s1", "nobody") is None


def test_create_agent_without_session_raises_and_writes_nothing(repo: ValkeySessionRepository, client: Any) -> None:
    with pytest.raises(SessionException, match="does not exist"):
        repo.create_agent("ghost", _agent())
    assert client.exists(*repo.session_keys("ghost").all()) == 0


def test_update_agent_keeps_created_at(repo: ValkeySessionRepository) -> None:
    repo.create_session(_session())
    original = _agent(v=1)
    original.created_at = "2020-01-01T00:00:00+00:00"
    repo.create_agent("s1", original)
    changed = _agent(v=2)
    repo.update_agent("s1", changed)
    stored = repo.read_agent("s1", "agent")
    assert stored is not None
    assert stored.state == {"v": 2}
    assert stored.created_at == "2020-01-01T00:00:00+00:00"
    assert stored.updated_at == changed.updated_at


def test_update_missing_agent_raises(repo: ValkeySessionRepository) -> None:
    repo.create_session(_session())
    with pytest.raises(SessionException, match="does not exist"):
        repo.update_agent("s1", _agent("nobody"))


# -- messages ---------------------------------------------------------------------------------


def test_create_message_overwrites_same_id(repo: ValkeySessionRepository) -> None:
    _with_agent(repo)
    repo.create_message("s1", "agent", _message(0, "first"))
    repo.create_message("s1", "agent", _message(0, "second"))
    assert [m.message["content"][0]["text"] for m in repo.list_messages("s1", "agent")] == ["second"]


def test_create_message_for_missing_agent_raises_and_writes_nothing(repo: ValkeySessionRepository) -> None:
    repo.create_session(_session())
    with pytest.raises(SessionException, match="does not exist"):
        repo.create_message("s1", "nobody", _message(0))
    assert repo.read_message("s1", "nobody", 0) is None


def test_read_and_update_message_keeps_created_at(repo: ValkeySessionRepository) -> None:
    _with_agent(repo)
    message = _message(7)
    message.created_at = "2020-01-01T00:00:00+00:00"
    repo.create_message("s1", "agent", message)
    assert repo.read_message("s1", "agent", 7) == message
    redacted = _message(7)
    redacted.redact_message = {"role": "user", "content": [{"text": "[redacted]"}]}
    repo.update_message("s1", "agent", redacted)
    stored = repo.read_message("s1", "agent", 7)
    assert stored is not None
    assert stored.created_at == "2020-01-01T00:00:00+00:00"
    assert stored.to_message() == {"role": "user", "content": [{"text": "[redacted]"}]}


def test_read_missing_message_is_none_and_update_raises(repo: ValkeySessionRepository) -> None:
    _with_agent(repo)
    assert repo.read_message("s1", "agent", 99) is None
    with pytest.raises(SessionException, match="does not exist"):
        repo.update_message("s1", "agent", _message(99))


def test_list_messages_sorts_by_id_then_slices(repo: ValkeySessionRepository) -> None:
    _with_agent(repo)
    for message_id in [10, 2, 0, 1, 100, 11, 9]:
        repo.create_message("s1", "agent", _message(message_id, str(message_id)))
    ids = [m.message_id for m in repo.list_messages("s1", "agent")]
    assert ids == [0, 1, 2, 9, 10, 11, 100]
    assert [m.message_id for m in repo.list_messages("s1", "agent", offset=2)] == [2, 9, 10, 11, 100]
    assert [m.message_id for m in repo.list_messages("s1", "agent", limit=3, offset=1)] == [1, 2, 9]
    assert repo.list_messages("s1", "agent", limit=0) == []
    assert repo.list_messages("s1", "agent", offset=50) == []


def test_list_messages_of_unknown_agent_is_empty(repo: ValkeySessionRepository) -> None:
    repo.create_session(_session())
    assert repo.list_messages("s1", "nobody") == []


def test_agents_messages_never_mix(repo: ValkeySessionRepository) -> None:
    repo.create_session(_session())
    for agent_id in ["a", "a:b", "a;", "b"]:
        repo.create_agent("s1", _agent(agent_id))
        for i in range(3):
            repo.create_message("s1", agent_id, _message(i, agent_id))
    for agent_id in ["a", "a:b", "a;", "b"]:
        texts = {m.message["content"][0]["text"] for m in repo.list_messages("s1", agent_id)}
        assert texts == {agent_id}


def test_long_history_lists_completely(repo: ValkeySessionRepository) -> None:
    _with_history(repo, 2500)  # many of the script's 100-record chunks
    listed = repo.list_messages("s1", "agent", offset=1)
    assert [m.message_id for m in listed] == list(range(1, 2500))


@pytest.mark.validation
@pytest.mark.parametrize("bad", ["1", 1.5, None, True])
def test_non_integer_message_id_raises_value_error(repo: ValkeySessionRepository, bad: Any) -> None:
    _with_agent(repo)
    message = _message(0)
    message.message_id = bad
    with pytest.raises(ValueError, match="message id"):
        repo.create_message("s1", "agent", message)
    with pytest.raises(ValueError, match="message id"):
        repo.read_message("s1", "agent", bad)
    with pytest.raises(ValueError, match="message id"):
        repo.update_message("s1", "agent", message)


@pytest.mark.validation
@pytest.mark.parametrize(("limit", "offset"), [(-1, 0), (None, -1), ("5", 0), (None, 1.0)])
def test_bad_pagination_raises_value_error(repo: ValkeySessionRepository, limit: Any, offset: Any) -> None:
    with pytest.raises(ValueError):
        repo.list_messages("s1", "agent", limit=limit, offset=offset)


# -- multi-agent ------------------------------------------------------------------------------


class _Orchestrator:
    """Stands in for a Graph/Swarm: the repository only calls ``id`` and ``serialize_state``."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.id = "graph:{1}"
        self.state = state

    def serialize_state(self) -> dict[str, Any]:
        return self.state


def test_multi_agent_create_read_update(repo: ValkeySessionRepository) -> None:
    repo.create_session(_session())
    repo.create_multi_agent("s1", _Orchestrator({"status": "running", "n": 1}))  # type: ignore[arg-type]
    assert repo.read_multi_agent("s1", "graph:{1}") == {"status": "running", "n": 1}
    repo.update_multi_agent("s1", _Orchestrator({"status": "done"}))  # type: ignore[arg-type]
    assert repo.read_multi_agent("s1", "graph:{1}") == {"status": "done"}
    assert repo.read_multi_agent("s1", "other") is None


def test_update_missing_multi_agent_raises(repo: ValkeySessionRepository) -> None:
    repo.create_session(_session())
    with pytest.raises(SessionException, match="does not exist"):
        repo.update_multi_agent("s1", _Orchestrator({}))  # type: ignore[arg-type]


# -- bad input and foreign data ---------------------------------------------------------------


@pytest.mark.validation
def test_oversize_record_raises_and_writes_nothing(client: Any) -> None:
    repo = ValkeySessionRepository(client, max_record_bytes=4096)
    _with_agent(repo)
    with pytest.raises(SessionTooLargeError, match="max_record_bytes"):
        repo.create_message("s1", "agent", _message(0, "x" * 5000))
    assert repo.read_message("s1", "agent", 0) is None
    with pytest.raises(SessionTooLargeError):
        repo.update_agent("s1", _agent(blob="y" * 5000))
    assert repo.read_agent("s1", "agent") == repo.read_agent("s1", "agent")


@pytest.mark.validation
def test_wrong_record_types_raise_type_error(repo: ValkeySessionRepository) -> None:
    with pytest.raises(TypeError, match="Session"):
        repo.create_session({"session_id": "s1"})  # type: ignore[arg-type]
    repo.create_session(_session())
    with pytest.raises(TypeError, match="SessionAgent"):
        repo.create_agent("s1", "agent")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="SessionMessage"):
        repo.create_message("s1", "agent", {"role": "user"})  # type: ignore[arg-type]


def test_unsupported_client_raises_type_error() -> None:
    with pytest.raises(TypeError, match="valkey-py or redis-py"):
        ValkeySessionRepository(object())


def test_garbled_message_names_key_and_neighbours_stay_readable(repo: ValkeySessionRepository, client: Any) -> None:
    repo.create_session(_session())
    for agent_id in ["good", "bad"]:
        repo.create_agent("s1", _agent(agent_id))
        repo.create_message("s1", agent_id, _message(0))
        repo.create_message("s1", agent_id, _message(1))
    keys = repo.session_keys("s1")
    member = next(m for m in client.zrange(keys.order, 0, -1) if (m.decode() if isinstance(m, bytes) else m)[0] == "b")
    client.hset(keys.messages, member, "garbage{")
    with pytest.raises(CorruptRecordError, match="s1") as caught:
        repo.list_messages("s1", "bad")
    assert keys.messages in str(caught.value)
    with pytest.raises(CorruptRecordError, match="s1"):
        repo.read_message("s1", "bad", 0)
    with pytest.raises(CorruptRecordError):
        repo.update_message("s1", "bad", _message(0))
    assert [m.message_id for m in repo.list_messages("s1", "good")] == [0, 1]
    assert repo.read_message("s1", "bad", 1) is not None


def test_foreign_value_type_is_a_clear_error(repo: ValkeySessionRepository, client: Any) -> None:
    repo.create_session(_session())
    keys = repo.session_keys("s1")
    client.set(keys.agents, "not a hash")
    with pytest.raises(CorruptRecordError, match=r"read_agent.*s1"):
        repo.read_agent("s1", "agent")
    client.hset(keys.multi, "m", "[1, 2]")
    with pytest.raises(CorruptRecordError, match="JSON object"):
        repo.read_multi_agent("s1", "m")


# -- round trips ------------------------------------------------------------------------------


# A restore reads up to 1,000 records in its first step, then one step per 1,000 more.
@pytest.mark.parametrize(("history", "restore_trips"), [(10, 2), (1500, 2), (3000, 3)])
def test_round_trips_are_constant(client: Any, history: int, restore_trips: int) -> None:
    repo = ValkeySessionRepository(client)
    _with_history(repo, history)
    with pytest.raises(SessionException):
        repo.delete_session("not-there")  # loads the scripts, as in steady state
    repo.list_messages("s1", "agent", limit=1)
    with count_round_trips() as append:
        repo.create_message("s1", "agent", _message(history))
    assert append.value == 1
    with count_round_trips() as restore:
        assert repo.read_agent("s1", "agent") is not None
        assert len(repo.list_messages("s1", "agent", offset=history // 2)) == history + 1 - history // 2
    assert restore.value == restore_trips
    with count_round_trips() as delete:
        repo.delete_session("s1")
    assert delete.value == 2  # the five keys in one script, then the catalog entries
