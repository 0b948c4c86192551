"""The SDK's own session-store tests, ported to ``ValkeySessionManager`` on every server and client.

Sources (strands-agents 1.62, Apache-2.0):

* ``tests/strands/session/test_file_session_manager.py``: every test, against ``ValkeySessionManager``
  (which, like ``FileSessionManager``, is its own repository). Where the original opens the JSON file
  a record was written to, the port reads the record's raw JSON from the server (through the public
  ``session_keys()``) and keeps the same assertions on its content.
* ``tests/strands/session/test_repository_session_manager.py``: every test that goes through a
  repository, with the SDK's ``RepositorySessionManager`` over ``ValkeySessionRepository`` where the
  original used its in-memory ``MockedSessionRepository``. Calls are counted by a thin subclass that
  records them and delegates to the real methods; the one forced failure
  (``test_sync_agent_retries_on_failure``) is a real one: the agent record is removed on the server.

Adapted rather than dropped:

* ``test_corrupted_json_file`` writes invalid JSON under the session key and reads it back through
  the public API (the original calls the private ``_read_file``); the message says "not valid JSON"
  where the file store says "Invalid JSON".
* ``test_permission_error_handling`` patches ``open`` to raise ``PermissionError``; here a server
  ACL user without write permission gets the server's own NOPERM, raised as ``AccessDeniedError``
  (a ``SessionException``). It runs on the standalone Valkey 9 server only, since ACL users are
  per node.
* ``test__get_session_path_invalid_session_id`` and ``test__get_agent_path_invalid_agent_id`` expect
  the file store to reject ``/``; ids are data in this store, so the ports assert that such ids
  round-trip and stay apart from their look-alikes.
* ``test__get_message_path_invalid_message_id`` runs through ``read_message`` and ``create_message``
  with the same ``ValueError`` message.
* The Mock orchestrators and BidiAgents of the originals are small plain classes with the same
  attributes (``id``/``serialize_state``/``deserialize_state``; ``agent_id``/``messages``/``state``).

Dropped, because they test no store:

* ``test_create_session_multi_agent_directory_structure``: asserts a ``multi_agents`` directory;
  this store has no directories (the port keeps only "no orchestrator state before one is written").
* The ``_fix_broken_tool_use`` tests that call the private method on a hand-built list
  (``removes_stale_tool_results``, ``ignores_last_message``, ``ignores_single_orphaned_tool_use``,
  ``consecutive_orphaned_tool_uses``, ``does_not_change_valid_message``,
  ``removes_orphaned_tool_result_at_start``, ``does_not_affect_normal_conversations``,
  ``removes_orphaned_tool_result_mid_conversation``,
  ``keeps_non_tool_result_content_of_orphaned_message``,
  ``removes_orphaned_tool_result_after_prepended_message``,
  ``keeps_paired_tool_result_after_a_text_turn``): they never touch a repository. The three that
  repair a history restored from the repository are ported.
* ``test_file_session_manager_symlink_protection.py``: file-system only.

Deliberate differences from the file store, asserted at the end of the module: ``create_agent``
raises ``SessionException`` when the session does not exist, ``create_message`` raises when the
agent does not exist, ``list_messages`` of an unknown agent is ``[]`` (the file store raises), and
ids may hold any character, ``/`` included.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from strands.agent.agent import Agent
from strands.agent.conversation_manager.null_conversation_manager import NullConversationManager
from strands.agent.conversation_manager.sliding_window_conversation_manager import SlidingWindowConversationManager
from strands.agent.conversation_manager.summarizing_conversation_manager import SummarizingConversationManager
from strands.agent.state import AgentState
from strands.hooks import AfterInvocationEvent
from strands.interrupt import _InterruptState
from strands.session.repository_session_manager import RepositorySessionManager
from strands.types.content import ContentBlock, Message
from strands.types.exceptions import SessionException
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import (
    AccessDeniedError,
    DamagedSessionError,
    ValkeySessionManager,
    ValkeySessionRepository,
)
from strands_valkey_session_manager.scripted_model import ScriptedModel


def _raw(value: Any) -> dict[str, Any]:
    """A stored record as JSON (the file store's file content)."""
    assert value is not None
    parsed: dict[str, Any] = json.loads(value)
    return parsed


def _new_agent(**kwargs: Any) -> Agent:
    """An ``Agent`` that never leaves the machine (the originals use the default Bedrock model)."""
    kwargs.setdefault("model", ScriptedModel())
    return Agent(callback_handler=None, **kwargs)


@dataclass
class _Orchestrator:
    """Stands in for a Graph/Swarm where the originals use ``Mock()``."""

    id: str
    state: dict[str, Any] = field(default_factory=dict)
    restored: list[dict[str, Any]] = field(default_factory=list)

    def serialize_state(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state}

    def deserialize_state(self, payload: dict[str, Any]) -> None:
        self.restored.append(payload)


@dataclass
class _BidiAgent:
    """A non-``Agent`` local agent, as the originals' ``Mock(spec=BidiAgent)``."""

    agent_id: str
    messages: list[Message]
    state: AgentState
    storage: Any = None


# =============================================================================================
# test_file_session_manager.py
# =============================================================================================


@pytest.fixture
def file_manager(client: Any) -> ValkeySessionManager:
    return ValkeySessionManager(session_id="test", client=client)


@pytest.fixture
def multi_agent_manager(client: Any) -> ValkeySessionManager:
    return ValkeySessionManager(session_id="test", client=client)


@pytest.fixture
def sample_session() -> Session:
    return Session(session_id="test-session", session_type=SessionType.AGENT)


@pytest.fixture
def sample_agent() -> SessionAgent:
    return SessionAgent(
        agent_id="test-agent", state={"key": "value"}, conversation_manager_state=NullConversationManager().get_state()
    )


@pytest.fixture
def sample_message() -> SessionMessage:
    return SessionMessage.from_message(message={"role": "user", "content": [ContentBlock(text="Hello world")]}, index=0)


@pytest.fixture
def mock_multi_agent() -> _Orchestrator:
    return _Orchestrator(id="test-multi-agent", state={"key": "value"})


def test_create_session(file_manager: ValkeySessionManager, client: Any, sample_session: Session) -> None:
    file_manager.create_session(sample_session)

    session_key = file_manager.session_keys(sample_session.session_id).session
    assert client.exists(session_key) == 1
    data = _raw(client.hget(session_key, "record"))
    assert data["session_id"] == sample_session.session_id
    assert data["session_type"] == sample_session.session_type


def test_read_session(file_manager: ValkeySessionManager, sample_session: Session) -> None:
    file_manager.create_session(sample_session)

    result = file_manager.read_session(sample_session.session_id)

    assert result is not None
    assert result.session_id == sample_session.session_id
    assert result.session_type == sample_session.session_type


def test_read_nonexistent_session(file_manager: ValkeySessionManager) -> None:
    assert file_manager.read_session("nonexistent-session") is None


def test_delete_session(file_manager: ValkeySessionManager, client: Any, sample_session: Session) -> None:
    file_manager.create_session(sample_session)
    keys = file_manager.session_keys(sample_session.session_id).all()
    assert client.exists(*keys) >= 1

    file_manager.delete_session(sample_session.session_id)

    assert client.exists(*keys) == 0


def test_delete_nonexistent_session(file_manager: ValkeySessionManager) -> None:
    with pytest.raises(SessionException, match="does not exist"):
        file_manager.delete_session("nonexistent-session")


def test_create_agent(
    file_manager: ValkeySessionManager, client: Any, sample_session: Session, sample_agent: SessionAgent
) -> None:
    file_manager.create_session(sample_session)

    file_manager.create_agent(sample_session.session_id, sample_agent)

    agents_key = file_manager.session_keys(sample_session.session_id).agents
    assert client.hexists(agents_key, sample_agent.agent_id)
    data = _raw(client.hget(agents_key, sample_agent.agent_id))
    assert data["agent_id"] == sample_agent.agent_id
    assert data["state"] == sample_agent.state


def test_read_agent(file_manager: ValkeySessionManager, sample_session: Session, sample_agent: SessionAgent) -> None:
    file_manager.create_session(sample_session)
    file_manager.create_agent(sample_session.session_id, sample_agent)

    result = file_manager.read_agent(sample_session.session_id, sample_agent.agent_id)

    assert result is not None
    assert result.agent_id == sample_agent.agent_id
    assert result.state == sample_agent.state


def test_read_nonexistent_agent(file_manager: ValkeySessionManager, sample_session: Session) -> None:
    assert file_manager.read_agent(sample_session.session_id, "nonexistent_agent") is None


def test_update_agent(file_manager: ValkeySessionManager, sample_session: Session, sample_agent: SessionAgent) -> None:
    file_manager.create_session(sample_session)
    file_manager.create_agent(sample_session.session_id, sample_agent)

    sample_agent.state = {"updated": "value"}
    file_manager.update_agent(sample_session.session_id, sample_agent)

    result = file_manager.read_agent(sample_session.session_id, sample_agent.agent_id)
    assert result is not None
    assert result.state == {"updated": "value"}


def test_update_nonexistent_agent(
    file_manager: ValkeySessionManager, sample_session: Session, sample_agent: SessionAgent
) -> None:
    file_manager.create_session(sample_session)

    with pytest.raises(SessionException):
        file_manager.update_agent(sample_session.session_id, sample_agent)


def test_create_message(
    file_manager: ValkeySessionManager,
    client: Any,
    sample_session: Session,
    sample_agent: SessionAgent,
    sample_message: SessionMessage,
) -> None:
    file_manager.create_session(sample_session)
    file_manager.create_agent(sample_session.session_id, sample_agent)

    file_manager.create_message(sample_session.session_id, sample_agent.agent_id, sample_message)

    messages_key = file_manager.session_keys(sample_session.session_id).messages
    (stored,) = client.hvals(messages_key)
    data = _raw(stored)
    assert data["message_id"] == sample_message.message_id


def test_message_durable_id_persists(
    file_manager: ValkeySessionManager, client: Any, sample_session: Session, sample_agent: SessionAgent
) -> None:
    file_manager.create_session(sample_session)
    file_manager.create_agent(sample_session.session_id, sample_agent)

    message = SessionMessage.from_message(
        message={"role": "user", "content": [ContentBlock(text="Hello")], "tracking_id": "durable-1"}, index=0
    )
    file_manager.create_message(sample_session.session_id, sample_agent.agent_id, message)

    (stored,) = client.hvals(file_manager.session_keys(sample_session.session_id).messages)
    assert _raw(stored)["message"]["tracking_id"] == "durable-1"

    result = file_manager.read_message(sample_session.session_id, sample_agent.agent_id, message.message_id)
    assert result is not None
    assert result.to_message()["tracking_id"] == "durable-1"


def test_read_message(
    file_manager: ValkeySessionManager,
    sample_session: Session,
    sample_agent: SessionAgent,
    sample_message: SessionMessage,
) -> None:
    file_manager.create_session(sample_session)
    file_manager.create_agent(sample_session.session_id, sample_agent)
    file_manager.create_message(sample_session.session_id, sample_agent.agent_id, sample_message)

    sample_message.message_id = sample_message.message_id + 1
    file_manager.create_message(sample_session.session_id, sample_agent.agent_id, sample_message)

    result = file_manager.read_message(sample_session.session_id, sample_agent.agent_id, sample_message.message_id)

    assert result is not None
    assert result.message_id == sample_message.message_id
    assert result.message["role"] == sample_message.message["role"]
    assert result.message["content"] == sample_message.message["content"]


def test_read_messages_with_new_agent(
    file_manager: ValkeySessionManager, sample_session: Session, sample_agent: SessionAgent
) -> None:
    file_manager.create_session(sample_session)
    file_manager.create_agent(sample_session.session_id, sample_agent)

    assert file_manager.read_message(sample_session.session_id, sample_agent.agent_id, 999) is None


def test_read_nonexistent_message(
    file_manager: ValkeySessionManager, sample_session: Session, sample_agent: SessionAgent
) -> None:
    assert file_manager.read_message(sample_session.session_id, sample_agent.agent_id, 999) is None


def _store_messages(manager: ValkeySessionManager, session_id: str, agent_id: str, count: int) -> None:
    for i in range(count):
        message = SessionMessage(message={"role": "user", "content": [ContentBlock(text=f"Message {i}")]}, message_id=i)
        manager.create_message(session_id, agent_id, message)


def test_list_messages_all(
    file_manager: ValkeySessionManager, sample_session: Session, sample_agent: SessionAgent
) -> None:
    file_manager.create_session(sample_session)
    file_manager.create_agent(sample_session.session_id, sample_agent)
    _store_messages(file_manager, sample_session.session_id, sample_agent.agent_id, 5)

    result = file_manager.list_messages(sample_session.session_id, sample_agent.agent_id)

    assert len(result) == 5


def test_list_messages_with_limit(
    file_manager: ValkeySessionManager, sample_session: Session, sample_agent: SessionAgent
) -> None:
    file_manager.create_session(sample_session)
    file_manager.create_agent(sample_session.session_id, sample_agent)
    _store_messages(file_manager, sample_session.session_id, sample_agent.agent_id, 10)

    result = file_manager.list_messages(sample_session.session_id, sample_agent.agent_id, limit=3)

    assert len(result) == 3


def test_list_messages_with_offset(
    file_manager: ValkeySessionManager, sample_session: Session, sample_agent: SessionAgent
) -> None:
    file_manager.create_session(sample_session)
    file_manager.create_agent(sample_session.session_id, sample_agent)
    _store_messages(file_manager, sample_session.session_id, sample_agent.agent_id, 10)

    result = file_manager.list_messages(sample_session.session_id, sample_agent.agent_id, offset=5)

    assert len(result) == 5


def test_list_messages_with_new_agent(
    file_manager: ValkeySessionManager, sample_session: Session, sample_agent: SessionAgent
) -> None:
    file_manager.create_session(sample_session)
    file_manager.create_agent(sample_session.session_id, sample_agent)

    result = file_manager.list_messages(sample_session.session_id, sample_agent.agent_id)

    assert len(result) == 0


def test_update_message(
    file_manager: ValkeySessionManager,
    sample_session: Session,
    sample_agent: SessionAgent,
    sample_message: SessionMessage,
) -> None:
    file_manager.create_session(sample_session)
    file_manager.create_agent(sample_session.session_id, sample_agent)
    file_manager.create_message(sample_session.session_id, sample_agent.agent_id, sample_message)

    sample_message.message["content"] = [ContentBlock(text="Updated content")]
    file_manager.update_message(sample_session.session_id, sample_agent.agent_id, sample_message)

    result = file_manager.read_message(sample_session.session_id, sample_agent.agent_id, sample_message.message_id)
    assert result is not None
    assert result.message["content"][0]["text"] == "Updated content"


def test_update_nonexistent_message(
    file_manager: ValkeySessionManager,
    sample_session: Session,
    sample_agent: SessionAgent,
    sample_message: SessionMessage,
) -> None:
    file_manager.create_session(sample_session)
    file_manager.create_agent(sample_session.session_id, sample_agent)

    with pytest.raises(SessionException):
        file_manager.update_message(sample_session.session_id, sample_agent.agent_id, sample_message)


def test_corrupted_json_file(file_manager: ValkeySessionManager, client: Any) -> None:
    client.hset(file_manager.session_keys("corrupt").session, "record", "invalid json content")

    with pytest.raises(SessionException, match="not valid JSON"):
        file_manager.read_session("corrupt")


@pytest.fixture
def limited_user(standalone_client: Any) -> Iterator[Any]:
    """A client logged in as an ACL user that may read but not write (removed after the test)."""
    import valkey

    user = "svsm-conformance-readonly"
    standalone_client.acl_setuser(
        user, enabled=True, passwords=["+pw"], keys=["*"], commands=["+@read", "+@connection"]
    )
    kwargs = standalone_client.connection_pool.connection_kwargs
    limited = valkey.Valkey(
        host=kwargs["host"], port=kwargs["port"], username=user, password="pw", decode_responses=True
    )
    yield limited
    limited.close()  # type: ignore[no-untyped-call]
    standalone_client.acl_deluser(user)


def test_permission_error_handling(limited_user: Any) -> None:
    repository = ValkeySessionRepository(limited_user)
    session = Session(session_id="test", session_type=SessionType.AGENT)

    with pytest.raises(SessionException) as raised:
        repository.create_session(session)
    assert isinstance(raised.value, AccessDeniedError)


@pytest.mark.parametrize("session_id", ["a/../b", "a/b"])
def test_session_id_with_path_separators_round_trips(
    session_id: str, file_manager: ValkeySessionManager, sample_agent: SessionAgent
) -> None:
    # Port of test__get_session_path_invalid_session_id: accepted here, and kept apart from "b".
    file_manager.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))
    file_manager.create_session(Session(session_id="b", session_type=SessionType.AGENT))
    file_manager.create_agent(session_id, sample_agent)

    result = file_manager.read_session(session_id)
    assert result is not None
    assert result.session_id == session_id
    assert file_manager.read_agent(session_id, sample_agent.agent_id) is not None
    assert file_manager.read_agent("b", sample_agent.agent_id) is None
    file_manager.delete_session(session_id)
    assert file_manager.read_session("b") is not None


@pytest.mark.parametrize("agent_id", ["a/../b", "a/b"])
def test_agent_id_with_path_separators_round_trips(
    agent_id: str, file_manager: ValkeySessionManager, sample_message: SessionMessage
) -> None:
    # Port of test__get_agent_path_invalid_agent_id: accepted here, and kept apart from "b".
    file_manager.create_agent(
        "test", SessionAgent(agent_id=agent_id, state={"id": agent_id}, conversation_manager_state={})
    )
    file_manager.create_agent("test", SessionAgent(agent_id="b", state={"id": "b"}, conversation_manager_state={}))
    file_manager.create_message("test", agent_id, sample_message)

    agent = file_manager.read_agent("test", agent_id)
    assert agent is not None
    assert agent.state == {"id": agent_id}
    assert file_manager.list_messages("test", agent_id) == [sample_message]
    assert file_manager.list_messages("test", "b") == []


@pytest.mark.validation
@pytest.mark.parametrize(
    "message_id", ["../../../secret", "../../attack", "../escape", "path/traversal", "not_an_int", None, []]
)
def test_invalid_message_id(message_id: Any, file_manager: ValkeySessionManager) -> None:
    file_manager.create_agent("test", SessionAgent(agent_id="agent1", state={}, conversation_manager_state={}))
    with pytest.raises(ValueError, match=r"message_id=<.*> \| message id must be an integer"):
        file_manager.read_message("test", "agent1", message_id)
    message = SessionMessage(message={"role": "user", "content": [{"text": "x"}]}, message_id=message_id)
    with pytest.raises(ValueError, match=r"message_id=<.*> \| message id must be an integer"):
        file_manager.create_message("test", "agent1", message)
    assert file_manager.list_messages("test", "agent1") == []


def test_create_multi_agent(
    multi_agent_manager: ValkeySessionManager, client: Any, sample_session: Session, mock_multi_agent: _Orchestrator
) -> None:
    multi_agent_manager.create_session(sample_session)
    multi_agent_manager.create_multi_agent(sample_session.session_id, mock_multi_agent)  # type: ignore[arg-type]

    multi_key = multi_agent_manager.session_keys(sample_session.session_id).multi
    assert client.hexists(multi_key, mock_multi_agent.id)
    data = _raw(client.hget(multi_key, mock_multi_agent.id))
    assert data["id"] == mock_multi_agent.id
    assert data["state"] == mock_multi_agent.state


def test_read_multi_agent(
    multi_agent_manager: ValkeySessionManager, sample_session: Session, mock_multi_agent: _Orchestrator
) -> None:
    multi_agent_manager.create_session(sample_session)
    multi_agent_manager.create_multi_agent(sample_session.session_id, mock_multi_agent)  # type: ignore[arg-type]

    result = multi_agent_manager.read_multi_agent(sample_session.session_id, mock_multi_agent.id)

    assert result is not None
    assert result["id"] == mock_multi_agent.id
    assert result["state"] == mock_multi_agent.state


def test_read_nonexistent_multi_agent(multi_agent_manager: ValkeySessionManager, sample_session: Session) -> None:
    assert multi_agent_manager.read_multi_agent(sample_session.session_id, "nonexistent") is None


def test_update_multi_agent(
    multi_agent_manager: ValkeySessionManager, sample_session: Session, mock_multi_agent: _Orchestrator
) -> None:
    multi_agent_manager.create_session(sample_session)
    multi_agent_manager.create_multi_agent(sample_session.session_id, mock_multi_agent)  # type: ignore[arg-type]

    updated = _Orchestrator(id=mock_multi_agent.id, state={"updated": "value"})
    multi_agent_manager.update_multi_agent(sample_session.session_id, updated)  # type: ignore[arg-type]

    result = multi_agent_manager.read_multi_agent(sample_session.session_id, mock_multi_agent.id)
    assert result is not None
    assert result["state"] == {"updated": "value"}


def test_update_nonexistent_multi_agent(multi_agent_manager: ValkeySessionManager, sample_session: Session) -> None:
    multi_agent_manager.create_session(sample_session)

    with pytest.raises(SessionException):
        multi_agent_manager.update_multi_agent(sample_session.session_id, _Orchestrator(id="nonexistent"))  # type: ignore[arg-type]


def test_new_session_has_no_multi_agent_state(
    multi_agent_manager: ValkeySessionManager, sample_session: Session
) -> None:
    # What is left of test_create_session_multi_agent_directory_structure without directories.
    multi_agent_manager.create_session(sample_session)

    assert multi_agent_manager.read_session(sample_session.session_id) is not None
    assert multi_agent_manager.read_multi_agent(sample_session.session_id, "anything") is None


# =============================================================================================
# test_repository_session_manager.py
# =============================================================================================


class RecordingRepository(ValkeySessionRepository):
    """``ValkeySessionRepository`` that records which reads and updates the manager makes."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.calls: list[tuple[str, str, str]] = []

    def read_agent(self, session_id: str, agent_id: str, **kwargs: Any) -> SessionAgent | None:
        self.calls.append(("read_agent", session_id, agent_id))
        return super().read_agent(session_id, agent_id, **kwargs)

    def update_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        self.calls.append(("update_agent", session_id, session_agent.agent_id))
        super().update_agent(session_id, session_agent, **kwargs)

    def read_multi_agent(self, session_id: str, multi_agent_id: str, **kwargs: Any) -> dict[str, Any] | None:
        self.calls.append(("read_multi_agent", session_id, multi_agent_id))
        return super().read_multi_agent(session_id, multi_agent_id, **kwargs)

    def count(self, name: str) -> int:
        return sum(1 for call in self.calls if call[0] == name)


@pytest.fixture
def mock_repository(client: Any) -> RecordingRepository:
    return RecordingRepository(client)


@pytest.fixture
def session_manager(mock_repository: RecordingRepository) -> RepositorySessionManager:
    return RepositorySessionManager(session_id="test-session", session_repository=mock_repository)


@pytest.fixture
def existing_session_manager(mock_repository: RecordingRepository) -> RepositorySessionManager:
    mock_repository.create_session(Session(session_id="test-session", session_type=SessionType.AGENT))
    return RepositorySessionManager(session_id="test-session", session_repository=mock_repository)


@pytest.fixture
def agent() -> Agent:
    return _new_agent(messages=[{"role": "user", "content": [{"text": "Hello!"}]}])


@pytest.fixture
def mock_bidi_agent() -> _BidiAgent:
    return _BidiAgent(
        agent_id="bidi-agent-1",
        messages=[{"role": "user", "content": [{"text": "Hello from bidi!"}]}],
        state=AgentState({"key": "value"}),
    )


def test_init_creates_session_if_not_exists(mock_repository: RecordingRepository) -> None:
    assert mock_repository.read_session("test-session") is None

    RepositorySessionManager(session_id="test-session", session_repository=mock_repository)

    session = mock_repository.read_session("test-session")
    assert session is not None
    assert session.session_id == "test-session"
    assert session.session_type == SessionType.AGENT


def test_init_uses_existing_session(mock_repository: RecordingRepository) -> None:
    session = Session(session_id="test-session", session_type=SessionType.AGENT)
    mock_repository.create_session(session)

    manager = RepositorySessionManager(session_id="test-session", session_repository=mock_repository)

    assert manager.session == session


def test_initialize_with_existing_agent_id(session_manager: RepositorySessionManager, agent: Agent) -> None:
    agent.agent_id = "custom-agent"

    session_manager.initialize(agent)

    agent_data = session_manager.session_repository.read_agent("test-session", "custom-agent")
    assert agent_data is not None
    assert agent_data.agent_id == "custom-agent"


def test_initialize_multiple_agents_without_id(session_manager: RepositorySessionManager, agent: Agent) -> None:
    agent.agent_id = "custom-agent"
    session_manager.initialize(agent)

    agent2 = _new_agent(agent_id="custom-agent")

    with pytest.raises(SessionException, match=r"The `agent_id` of an agent must be unique in a session\."):
        session_manager.initialize(agent2)


def test_initialize_restores_existing_agent(existing_session_manager: RepositorySessionManager, agent: Agent) -> None:
    agent.agent_id = "existing-agent"
    session_agent = SessionAgent(
        agent_id="existing-agent",
        state={"key": "value"},
        conversation_manager_state=SlidingWindowConversationManager().get_state(),
        _internal_state={"interrupt_state": {"interrupts": {}, "context": {"test": "init"}, "activated": False}},
    )
    existing_session_manager.session_repository.create_agent("test-session", session_agent)
    message = SessionMessage(message={"role": "user", "content": [ContentBlock(text="Hello")]}, message_id=0)
    existing_session_manager.session_repository.create_message("test-session", "existing-agent", message)

    existing_session_manager.initialize(agent)

    assert agent.state.get("key") == "value"
    assert len(agent.messages) == 1
    assert agent.messages[0]["role"] == "user"
    assert agent.messages[0]["content"][0]["text"] == "Hello"
    assert agent._interrupt_state == _InterruptState(interrupts={}, context={"test": "init"}, activated=False)


def test_initialize_restores_existing_agent_with_summarizing_conversation_manager(
    existing_session_manager: RepositorySessionManager,
) -> None:
    conversation_manager = SummarizingConversationManager()
    conversation_manager.removed_message_count = 1
    conversation_manager._summary_message = {"role": "assistant", "content": [{"text": "summary"}]}
    session_agent = SessionAgent(
        agent_id="existing-agent", state={"key": "value"}, conversation_manager_state=conversation_manager.get_state()
    )
    existing_session_manager.session_repository.create_agent("test-session", session_agent)
    message = SessionMessage(message={"role": "user", "content": [ContentBlock(text="Hello")]}, message_id=0)
    existing_session_manager.session_repository.create_message("test-session", "existing-agent", message)
    message.message_id = 1
    existing_session_manager.session_repository.create_message("test-session", "existing-agent", message)

    agent = _new_agent(agent_id="existing-agent", conversation_manager=SummarizingConversationManager())
    existing_session_manager.initialize(agent)

    assert agent.state.get("key") == "value"
    assert len(agent.messages) == 2
    assert agent.messages[1]["role"] == "user"
    assert agent.messages[1]["content"][0]["text"] == "Hello"
    assert agent.conversation_manager.removed_message_count == 1


def test_append_message(session_manager: RepositorySessionManager) -> None:
    agent = _new_agent(agent_id="test-agent", session_manager=session_manager)
    message: Any = {"role": "user", "content": [{"type": "text", "text": "Hello"}]}

    session_manager.append_message(message, agent)

    messages = session_manager.session_repository.list_messages("test-session", "test-agent")
    assert len(messages) == 1
    assert messages[0].message["role"] == "user"
    assert messages[0].message["content"][0]["text"] == "Hello"


def test_sync_multi_agent(session_manager: RepositorySessionManager, mock_multi_agent: _Orchestrator) -> None:
    session_manager.session_repository.create_multi_agent("test-session", mock_multi_agent)  # type: ignore[arg-type]

    session_manager.sync_multi_agent(mock_multi_agent)  # type: ignore[arg-type]

    state = session_manager.session_repository.read_multi_agent("test-session", mock_multi_agent.id)
    assert state is not None
    assert state["id"] == "test-multi-agent"
    assert state["state"] == {"key": "value"}


def test_initialize_multi_agent_new(session_manager: RepositorySessionManager, mock_multi_agent: _Orchestrator) -> None:
    session_manager.initialize_multi_agent(mock_multi_agent)  # type: ignore[arg-type]

    state = session_manager.session_repository.read_multi_agent("test-session", mock_multi_agent.id)
    assert state is not None
    assert state["id"] == "test-multi-agent"
    assert state["state"] == {"key": "value"}


def test_initialize_multi_agent_existing(
    existing_session_manager: RepositorySessionManager, mock_multi_agent: _Orchestrator
) -> None:
    existing_session_manager.session_repository.create_multi_agent("test-session", mock_multi_agent)  # type: ignore[arg-type]
    existing_state = {"id": "test-multi-agent", "state": {"restored": "data"}}
    updated = _Orchestrator(id="test-multi-agent", state={"restored": "data"})
    existing_session_manager.session_repository.update_multi_agent("test-session", updated)  # type: ignore[arg-type]

    existing_session_manager.initialize_multi_agent(mock_multi_agent)  # type: ignore[arg-type]

    assert mock_multi_agent.restored == [existing_state]


class _StatefulModel(ScriptedModel):
    """A model that keeps the conversation server-side (``stateful``)."""

    @property
    def stateful(self) -> bool:
        return True


def test_initialize_skips_message_restore_for_server_managed_conversation(
    existing_session_manager: RepositorySessionManager,
) -> None:
    session_agent = SessionAgent(
        agent_id="existing-agent",
        state={},
        conversation_manager_state=NullConversationManager().get_state(),
        _internal_state={
            "interrupt_state": {"interrupts": {}, "context": {}, "activated": False},
            "model_state": {"response_id": "resp_abc123"},
        },
    )
    existing_session_manager.session_repository.create_agent("test-session", session_agent)
    message = SessionMessage.from_message({"role": "user", "content": [{"text": "Hello"}]}, 0)
    existing_session_manager.session_repository.create_message("test-session", "existing-agent", message)

    agent = _new_agent(agent_id="existing-agent", model=_StatefulModel())
    existing_session_manager.initialize(agent)

    assert agent.messages == []
    assert agent._model_state == {"response_id": "resp_abc123"}
    assert existing_session_manager.session_repository.list_messages("test-session", "existing-agent") == [message]


def _store_history(manager: RepositorySessionManager, messages: list[Any]) -> None:
    manager.session_repository.create_agent(
        "test-session",
        SessionAgent(
            agent_id="existing-agent",
            state={"key": "value"},
            conversation_manager_state=SlidingWindowConversationManager().get_state(),
        ),
    )
    for index, message in enumerate(messages):
        manager.session_repository.create_message(
            "test-session", "existing-agent", SessionMessage(message=message, message_id=index)
        )


def test_fix_broken_tool_use_adds_missing_tool_results(existing_session_manager: RepositorySessionManager) -> None:
    _store_history(
        existing_session_manager,
        [
            {
                "role": "assistant",
                "content": [
                    {"toolUse": {"toolUseId": "orphaned-123", "name": "test_tool", "input": {"input": "test"}}}
                ],
            },
            {"role": "user", "content": [{"text": "Some other message"}]},
        ],
    )

    agent = _new_agent(agent_id="existing-agent")
    existing_session_manager.initialize(agent)

    fixed_messages = agent.messages
    assert len(fixed_messages) == 3
    assert "toolResult" in fixed_messages[1]["content"][0]
    assert fixed_messages[1]["content"][0]["toolResult"]["toolUseId"] == "orphaned-123"
    assert fixed_messages[1]["content"][0]["toolResult"]["status"] == "error"
    assert fixed_messages[1]["content"][0]["toolResult"]["content"][0]["text"] == "Tool was interrupted."
    assert isinstance(fixed_messages[1].get("tracking_id"), str)
    assert fixed_messages[1]["tracking_id"]


def test_fix_broken_tool_use_extends_partial_tool_results(existing_session_manager: RepositorySessionManager) -> None:
    _store_history(
        existing_session_manager,
        [
            {
                "role": "assistant",
                "content": [
                    {"toolUse": {"toolUseId": "complete-123", "name": "test_tool", "input": {"input": "test1"}}},
                    {"toolUse": {"toolUseId": "missing-456", "name": "test_tool", "input": {"input": "test2"}}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "complete-123", "status": "success", "content": [{"text": "result"}]}}
                ],
            },
        ],
    )

    agent = _new_agent(agent_id="existing-agent")
    existing_session_manager.initialize(agent)

    fixed_messages = agent.messages
    assert len(fixed_messages) == 2
    assert len(fixed_messages[1]["content"]) == 2
    tool_use_ids = {tr["toolResult"]["toolUseId"] for tr in fixed_messages[1]["content"]}
    assert tool_use_ids == {"complete-123", "missing-456"}
    missing_result = next(tr for tr in fixed_messages[1]["content"] if tr["toolResult"]["toolUseId"] == "missing-456")
    assert missing_result["toolResult"]["status"] == "error"
    assert missing_result["toolResult"]["content"][0]["text"] == "Tool was interrupted."


def test_fix_broken_tool_use_handles_multiple_orphaned_tools(
    existing_session_manager: RepositorySessionManager,
) -> None:
    _store_history(
        existing_session_manager,
        [
            {
                "role": "assistant",
                "content": [
                    {"toolUse": {"toolUseId": "orphaned-123", "name": "test_tool", "input": {"input": "test1"}}},
                    {"toolUse": {"toolUseId": "orphaned-456", "name": "test_tool", "input": {"input": "test2"}}},
                ],
            },
            {"role": "user", "content": [{"text": "Next message"}]},
        ],
    )

    agent = _new_agent(agent_id="existing-agent")
    existing_session_manager.initialize(agent)

    fixed_messages = agent.messages
    assert len(fixed_messages) == 3
    assert len(fixed_messages[1]["content"]) == 2
    tool_use_ids = {tr["toolResult"]["toolUseId"] for tr in fixed_messages[1]["content"]}
    assert tool_use_ids == {"orphaned-123", "orphaned-456"}


# -- BidiAgent (any non-Agent local agent) ----------------------------------------------------


def test_initialize_with_bidi_creates_new(
    session_manager: RepositorySessionManager, mock_bidi_agent: _BidiAgent
) -> None:
    session_manager.initialize(mock_bidi_agent)  # type: ignore[arg-type]

    agent_data = session_manager.session_repository.read_agent("test-session", "bidi-agent-1")
    assert agent_data is not None
    assert agent_data.agent_id == "bidi-agent-1"
    assert agent_data.conversation_manager_state == {}
    assert agent_data.state == {"key": "value"}
    messages = session_manager.session_repository.list_messages("test-session", "bidi-agent-1")
    assert len(messages) == 1
    assert messages[0].message["role"] == "user"


def test_initialize_with_bidi_restores_existing(
    existing_session_manager: RepositorySessionManager, mock_bidi_agent: _BidiAgent
) -> None:
    session_agent = SessionAgent(agent_id="bidi-agent-1", state={"restored": "state"}, conversation_manager_state={})
    existing_session_manager.session_repository.create_agent("test-session", session_agent)
    msg1 = SessionMessage.from_message({"role": "user", "content": [{"text": "Message 1"}]}, 0)
    msg2 = SessionMessage.from_message({"role": "assistant", "content": [{"text": "Response 1"}]}, 1)
    existing_session_manager.session_repository.create_message("test-session", "bidi-agent-1", msg1)
    existing_session_manager.session_repository.create_message("test-session", "bidi-agent-1", msg2)

    existing_session_manager.initialize(mock_bidi_agent)  # type: ignore[arg-type]

    assert mock_bidi_agent.state.get() == {"restored": "state"}
    assert len(mock_bidi_agent.messages) == 2
    assert mock_bidi_agent.messages[0]["role"] == "user"
    assert mock_bidi_agent.messages[1]["role"] == "assistant"


def test_append_message_with_bidi(session_manager: RepositorySessionManager, mock_bidi_agent: _BidiAgent) -> None:
    session_manager.initialize(mock_bidi_agent)  # type: ignore[arg-type]

    session_manager.append_message({"role": "assistant", "content": [{"text": "Response"}]}, mock_bidi_agent)  # type: ignore[arg-type]

    messages = session_manager.session_repository.list_messages("test-session", "bidi-agent-1")
    assert len(messages) == 2
    assert messages[1].message["role"] == "assistant"


def test_sync_agent_with_bidi(
    session_manager: RepositorySessionManager, mock_repository: RecordingRepository, mock_bidi_agent: _BidiAgent
) -> None:
    session_manager.initialize(mock_bidi_agent)  # type: ignore[arg-type]
    mock_repository.calls.clear()

    mock_bidi_agent.state = AgentState({"updated": "state"})
    session_manager.sync_agent(mock_bidi_agent)  # type: ignore[arg-type]
    session_manager.sync_agent(mock_bidi_agent)  # type: ignore[arg-type]

    agent_data = session_manager.session_repository.read_agent("test-session", "bidi-agent-1")
    assert agent_data is not None
    assert agent_data.state == {"updated": "state"}
    assert mock_repository.count("update_agent") == 2


def test_bidi_agent_no_conversation_manager(
    session_manager: RepositorySessionManager, mock_bidi_agent: _BidiAgent
) -> None:
    session_manager.initialize(mock_bidi_agent)  # type: ignore[arg-type]

    agent_data = session_manager.session_repository.read_agent("test-session", "bidi-agent-1")
    assert agent_data is not None
    assert agent_data.conversation_manager_state == {}


def test_bidi_agent_unique_id_constraint(
    session_manager: RepositorySessionManager, mock_bidi_agent: _BidiAgent
) -> None:
    session_manager.initialize(mock_bidi_agent)  # type: ignore[arg-type]
    agent2 = _BidiAgent(agent_id="bidi-agent-1", messages=[], state=AgentState({}))

    with pytest.raises(SessionException, match=r"The `agent_id` of an agent must be unique in a session\."):
        session_manager.initialize(agent2)  # type: ignore[arg-type]


def test_bidi_agent_messages_with_offset_zero(
    existing_session_manager: RepositorySessionManager, mock_bidi_agent: _BidiAgent
) -> None:
    session_agent = SessionAgent(agent_id="bidi-agent-1", state={}, conversation_manager_state={})
    existing_session_manager.session_repository.create_agent("test-session", session_agent)
    for i in range(5):
        msg = SessionMessage.from_message({"role": "user", "content": [{"text": f"Message {i}"}]}, i)
        existing_session_manager.session_repository.create_message("test-session", "bidi-agent-1", msg)

    existing_session_manager.initialize(mock_bidi_agent)  # type: ignore[arg-type]

    assert len(mock_bidi_agent.messages) == 5


def test_register_hooks_persists_messages_and_state(session_manager: RepositorySessionManager) -> None:
    async def scenario() -> None:
        agent = _new_agent(agent_id="shared", session_manager=session_manager)
        message: Message = {"role": "user", "content": [{"text": "Hello"}], "tracking_id": "message-1"}
        agent.state.set("saved", "state")
        await agent._append_messages(message)

        repository = session_manager.session_repository
        stored_agent = repository.read_agent("test-session", "shared")
        assert stored_agent is not None
        assert stored_agent.state == {"saved": "state"}
        tru_messages = [(m.message_id, m.to_message()) for m in repository.list_messages("test-session", "shared")]
        assert tru_messages == [(0, message)]

        agent.state.set("completed", True)
        await agent.hooks.invoke_callbacks_async(AfterInvocationEvent(agent=agent))

        stored_agent = repository.read_agent("test-session", "shared")
        assert stored_agent is not None
        assert stored_agent.state == {"saved": "state", "completed": True}

    asyncio.run(scenario())


# -- conditional sync -------------------------------------------------------------------------


def _synced_agent(mock_repository: RecordingRepository) -> tuple[RepositorySessionManager, Agent]:
    session_manager = RepositorySessionManager(session_id="test-session", session_repository=mock_repository)
    agent = _new_agent(agent_id="test-agent", session_manager=session_manager)
    mock_repository.calls.clear()
    return session_manager, agent


def test_sync_agent_skips_update_when_state_not_dirty_and_internal_state_unchanged(
    mock_repository: RecordingRepository,
) -> None:
    session_manager, agent = _synced_agent(mock_repository)

    session_manager.sync_agent(agent)
    assert mock_repository.count("update_agent") == 1
    mock_repository.calls.clear()

    session_manager.sync_agent(agent)
    assert mock_repository.count("update_agent") == 0


def test_sync_agent_calls_update_when_state_is_dirty(mock_repository: RecordingRepository) -> None:
    session_manager, agent = _synced_agent(mock_repository)
    session_manager.sync_agent(agent)
    mock_repository.calls.clear()

    agent.state.set("key", "value")
    session_manager.sync_agent(agent)

    assert mock_repository.count("update_agent") == 1
    stored = mock_repository.read_agent("test-session", "test-agent")
    assert stored is not None
    assert stored.state == {"key": "value"}


def test_sync_agent_calls_update_when_internal_state_changed(mock_repository: RecordingRepository) -> None:
    session_manager, agent = _synced_agent(mock_repository)
    session_manager.sync_agent(agent)
    mock_repository.calls.clear()

    agent._interrupt_state.activate()
    session_manager.sync_agent(agent)

    assert mock_repository.count("update_agent") == 1


def test_sync_agent_calls_update_when_conversation_manager_state_changed(mock_repository: RecordingRepository) -> None:
    session_manager, agent = _synced_agent(mock_repository)
    session_manager.sync_agent(agent)
    mock_repository.calls.clear()

    agent.conversation_manager.removed_message_count = 5
    session_manager.sync_agent(agent)

    assert mock_repository.count("update_agent") == 1
    stored = mock_repository.read_agent("test-session", "test-agent")
    assert stored is not None
    assert stored.conversation_manager_state["removed_message_count"] == 5


def test_sync_agent_calls_update_when_model_state_changed(mock_repository: RecordingRepository) -> None:
    session_manager, agent = _synced_agent(mock_repository)
    session_manager.sync_agent(agent)
    mock_repository.calls.clear()

    agent._model_state["response_id"] = "resp_abc123"
    session_manager.sync_agent(agent)

    assert mock_repository.count("update_agent") == 1


def test_sync_agent_tracks_version_after_successful_sync(mock_repository: RecordingRepository) -> None:
    session_manager, agent = _synced_agent(mock_repository)
    session_manager.sync_agent(agent)
    initial_version = agent.state._get_version()

    agent.state.set("key", "value")
    assert agent.state._get_version() == initial_version + 1
    mock_repository.calls.clear()

    session_manager.sync_agent(agent)
    assert mock_repository.count("update_agent") == 1

    mock_repository.calls.clear()
    session_manager.sync_agent(agent)
    assert mock_repository.count("update_agent") == 0


def test_sync_agent_retries_on_failure(mock_repository: RecordingRepository, client: Any) -> None:
    session_manager, agent = _synced_agent(mock_repository)
    session_manager.sync_agent(agent)
    agent.state.set("key", "value")

    # A real failure: the agent record is gone from the server (the session is damaged), so
    # update_agent raises and writes nothing.
    agents_key = mock_repository.session_keys("test-session").agents
    raw = client.hget(agents_key, "test-agent")
    assert raw is not None
    client.hdel(agents_key, "test-agent")
    with pytest.raises(DamagedSessionError):
        session_manager.sync_agent(agent)

    # Once the record is back, the next sync retries, because the version was not recorded.
    client.hset(agents_key, "test-agent", raw)
    mock_repository.calls.clear()
    session_manager.sync_agent(agent)
    assert mock_repository.count("update_agent") == 1
    restored = mock_repository.read_agent("test-session", "test-agent")
    assert restored is not None
    assert restored.state == {"key": "value"}


def test_sync_agent_first_sync_always_updates(mock_repository: RecordingRepository) -> None:
    session_manager, agent = _synced_agent(mock_repository)

    session_manager.sync_agent(agent)

    assert mock_repository.count("update_agent") == 1


# -- new-session optimisation (SDK issue #1828) -----------------------------------------------


def test_is_new_session_true_when_session_created(mock_repository: RecordingRepository) -> None:
    assert mock_repository.read_session("new-session") is None

    manager = RepositorySessionManager(session_id="new-session", session_repository=mock_repository)

    assert manager._is_new_session is True


def test_is_new_session_false_when_session_exists(mock_repository: RecordingRepository) -> None:
    mock_repository.create_session(Session(session_id="existing-session", session_type=SessionType.AGENT))

    manager = RepositorySessionManager(session_id="existing-session", session_repository=mock_repository)

    assert manager._is_new_session is False


def test_initialize_skips_read_agent_for_new_session(mock_repository: RecordingRepository) -> None:
    manager = RepositorySessionManager(session_id="new-session", session_repository=mock_repository)
    assert manager._is_new_session is True

    manager.initialize(_new_agent(agent_id="test-agent"))

    assert mock_repository.count("read_agent") == 0
    assert mock_repository.read_agent("new-session", "test-agent") is not None


def test_initialize_calls_read_agent_for_existing_session(mock_repository: RecordingRepository) -> None:
    mock_repository.create_session(Session(session_id="existing-session", session_type=SessionType.AGENT))
    manager = RepositorySessionManager(session_id="existing-session", session_repository=mock_repository)
    assert manager._is_new_session is False

    manager.initialize(_new_agent(agent_id="test-agent"))

    assert [c for c in mock_repository.calls if c[0] == "read_agent"] == [
        ("read_agent", "existing-session", "test-agent")
    ]


def test_initialize_with_bidi_skips_read_agent_for_new_session(mock_repository: RecordingRepository) -> None:
    manager = RepositorySessionManager(session_id="new-session", session_repository=mock_repository)
    assert manager._is_new_session is True
    bidi_agent = _BidiAgent(
        agent_id="bidi-agent-1", messages=[{"role": "user", "content": [{"text": "Hello!"}]}], state=AgentState({})
    )

    manager.initialize(bidi_agent)  # type: ignore[arg-type]

    assert mock_repository.count("read_agent") == 0


def test_initialize_with_bidi_calls_read_agent_for_existing_session(mock_repository: RecordingRepository) -> None:
    mock_repository.create_session(Session(session_id="existing-session", session_type=SessionType.AGENT))
    manager = RepositorySessionManager(session_id="existing-session", session_repository=mock_repository)
    assert manager._is_new_session is False
    bidi_agent = _BidiAgent(
        agent_id="bidi-agent-1", messages=[{"role": "user", "content": [{"text": "Hello!"}]}], state=AgentState({})
    )

    manager.initialize(bidi_agent)  # type: ignore[arg-type]

    assert [c for c in mock_repository.calls if c[0] == "read_agent"] == [
        ("read_agent", "existing-session", "bidi-agent-1")
    ]


def test_initialize_multi_agent_skips_read_for_new_session(mock_repository: RecordingRepository) -> None:
    manager = RepositorySessionManager(session_id="new-session", session_repository=mock_repository)
    assert manager._is_new_session is True

    manager.initialize_multi_agent(_Orchestrator(id="test-multi-agent"))  # type: ignore[arg-type]

    assert mock_repository.count("read_multi_agent") == 0
    assert mock_repository.read_multi_agent("new-session", "test-multi-agent") == {
        "id": "test-multi-agent",
        "state": {},
    }


def test_initialize_multi_agent_calls_read_for_existing_session(mock_repository: RecordingRepository) -> None:
    mock_repository.create_session(Session(session_id="existing-session", session_type=SessionType.AGENT))
    manager = RepositorySessionManager(session_id="existing-session", session_repository=mock_repository)
    assert manager._is_new_session is False

    manager.initialize_multi_agent(_Orchestrator(id="test-multi-agent"))  # type: ignore[arg-type]

    assert [c for c in mock_repository.calls if c[0] == "read_multi_agent"] == [
        ("read_multi_agent", "existing-session", "test-multi-agent")
    ]


def test_prune_held_records_drops_removed_messages(session_manager: RepositorySessionManager) -> None:
    agent = _new_agent(agent_id="a", session_manager=session_manager)
    m1: Message = {"role": "user", "content": [{"text": "one"}]}
    m2: Message = {"role": "assistant", "content": [{"text": "two"}]}
    session_manager.append_message(m1, agent)
    session_manager.append_message(m2, agent)

    agent.messages = [m2]
    session_manager._prune_held_records(agent)
    assert len(session_manager._held_records["a"]) == 1


def test_restore_after_redacting_alias_records_returns_redacted_conversation(client: Any) -> None:
    sm = ValkeySessionManager(session_id="s", client=client)
    agent = _new_agent(agent_id="a", conversation_manager=NullConversationManager(), session_manager=sm)
    msg: Message = {"role": "user", "content": [{"text": "secret"}]}
    sm.append_message(msg, agent)  # record 0
    sm.append_message(msg, agent)  # record 1, the same object

    msg["content"] = [{"text": "[redacted]"}]
    sm.redact_latest_message(msg, agent)

    # A new process: fresh manager and agent over the same server.
    sm2 = ValkeySessionManager(session_id="s", client=client)
    restored = _new_agent(agent_id="a", conversation_manager=NullConversationManager(), session_manager=sm2)

    assert len(restored.messages) == 2
    assert restored.messages[0]["content"] == [{"text": "[redacted]"}]
    assert restored.messages[1]["content"] == [{"text": "[redacted]"}]


# =============================================================================================
# Deliberate differences from the SDK's file store
# =============================================================================================


def test_create_agent_requires_the_session(file_manager: ValkeySessionManager, sample_agent: SessionAgent) -> None:
    with pytest.raises(SessionException, match="does not exist"):
        file_manager.create_agent("no-such-session", sample_agent)
    assert file_manager.read_agent("no-such-session", sample_agent.agent_id) is None


def test_create_message_requires_the_agent(file_manager: ValkeySessionManager, sample_message: SessionMessage) -> None:
    with pytest.raises(SessionException, match="does not exist"):
        file_manager.create_message("test", "no-such-agent", sample_message)
    assert file_manager.read_message("test", "no-such-agent", sample_message.message_id) is None
    assert file_manager.list_messages("test", "no-such-agent") == []


def test_list_messages_of_unknown_agent_or_session_is_empty(file_manager: ValkeySessionManager) -> None:
    assert file_manager.list_messages("test", "nobody") == []
    assert file_manager.list_messages("no-such-session", "nobody") == []


def test_create_message_overwrites_a_reused_id(
    file_manager: ValkeySessionManager, sample_agent: SessionAgent, sample_message: SessionMessage
) -> None:
    # As the file store: message ids are positions and are reused, so create overwrites.
    file_manager.create_agent("test", sample_agent)
    file_manager.create_message("test", sample_agent.agent_id, sample_message)
    replacement = copy.deepcopy(sample_message)
    replacement.message["content"] = [{"text": "second"}]
    file_manager.create_message("test", sample_agent.agent_id, replacement)

    assert file_manager.list_messages("test", sample_agent.agent_id) == [replacement]


@pytest.mark.parametrize("odd_id", ["a/b", "/", "../x", "a:b", "{tag}", "*", "ünï/会话"])
def test_any_id_round_trips_through_an_agent(odd_id: str, client: Any) -> None:
    manager = ValkeySessionManager(session_id=odd_id, client=client)
    # Agent ids may not hold "/" (the Agent itself refuses), so the agent id drops it.
    agent_id = odd_id.replace("/", "|")
    agent = _new_agent(agent_id=agent_id, session_manager=manager, model=ScriptedModel(["ok"]))
    agent("hello")
    manager.create_multi_agent(odd_id, _Orchestrator(id=odd_id, state={"k": odd_id}))  # type: ignore[arg-type]

    again = ValkeySessionManager(session_id=odd_id, client=client)
    restored = _new_agent(agent_id=agent_id, session_manager=again)
    assert restored.messages == agent.messages
    assert again.read_multi_agent(odd_id, odd_id) == {"id": odd_id, "state": {"k": odd_id}}
    again.delete_session(odd_id)
    assert again.read_session(odd_id) is None
