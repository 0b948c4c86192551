"""``migrate_to_snapshots``: message-log sessions become ``SnapshotSessionManager`` sessions in ``ValkeyStorage``.

The source sessions are written by real ``strands.Agent``s (``ScriptedModel``, so the SDK's own
event loop, tool executor, conversation managers and session hooks run) through
``ValkeySessionManager`` or the SDK's ``FileSessionManager``. Four agents share a session: one with
tool calls, an image and agent state; one whose ``SlidingWindowConversationManager`` trimmed its
history; one stopped on an interrupt; one whose ``SummarizingConversationManager`` summarised.
Each is then restored twice, by the message-log manager and by ``SnapshotSessionManager`` on the
migrated storage, and everything an agent restores (messages, state, conversation-manager state,
interrupt state, model state, system prompt) must be equal. The interrupted agent then resumes from
the snapshot. A Swarm that crashed mid-run resumes from its migrated orchestrator snapshot.

Idempotence and dry runs are checked on the server itself: every key of every primary, with its
``DUMP``, before and after.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import valkey
from strands import Agent, tool
from strands.agent.conversation_manager import (
    ConversationManager,
    SlidingWindowConversationManager,
    SummarizingConversationManager,
)
from strands.hooks import BeforeNodeCallEvent, BeforeToolCallEvent, HookProvider, HookRegistry
from strands.multiagent import Status, Swarm
from strands.session import SnapshotSessionManager
from strands.session.file_session_manager import FileSessionManager
from strands.session.session_manager import SessionManager
from strands.types.content import ContentBlock
from strands.types.exceptions import ContextWindowOverflowException
from strands.types.interrupt import InterruptResponseContent
from strands.types.streaming import StreamEvent

from strands_valkey_session_manager import ValkeySessionManager, ValkeySessionRepository
from strands_valkey_session_manager.migration import (
    SnapshotMigrationError,
    SourceNotFoundError,
    migrate_to_snapshots,
)
from strands_valkey_session_manager.scripted_model import ScriptedModel, ToolCall, TurnLike
from strands_valkey_session_manager.storage import ValkeyStorage
from tests.conftest import Backend
from tests.storage.conftest import StorageFactory

pytestmark = pytest.mark.filterwarnings("ignore:context_window_limit is not set:UserWarning")

SESSION_ID = "tenant:7 {chat} ü"
SYSTEM_PROMPT = "You are terse."
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
AGENTS = ("support", "trimmed", "approver", "summarized")


# -- tools, hooks and models of the source conversations ---------------------------------------


@tool
def lookup_order(order_id: str) -> str:
    """Look up an order."""
    return f"order {order_id}: shipped"


@tool(name="time_tool")
def time_tool() -> str:
    """Tell the time."""
    return "12:00"


class _Approval(HookProvider):
    """Interrupts ``time_tool`` until a human answers "APPROVE"."""

    def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None:
        registry.add_callback(BeforeToolCallEvent, self._before)

    def _before(self, event: BeforeToolCallEvent) -> None:
        if event.tool_use["name"] == "time_tool" and event.interrupt("approval", reason="need approval") != "APPROVE":
            event.cancel_tool = "rejected"


class _OverflowingModel(ScriptedModel):
    """Raises a context-window overflow on chosen calls (1-based), as a provider does."""

    def __init__(self, turns: Sequence[TurnLike], overflow_on: set[int]) -> None:
        super().__init__(turns)
        self.overflow_on = overflow_on
        self.calls = 0

    async def stream(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls in self.overflow_on:
            raise ContextWindowOverflowException("input is too long")
        event: StreamEvent
        async for event in super().stream(*args, **kwargs):
            yield event


def _conversation_manager(agent_id: str) -> ConversationManager:
    if agent_id == "trimmed":
        return SlidingWindowConversationManager(window_size=4)
    if agent_id == "summarized":
        summarizer = Agent(model=ScriptedModel(["Summary: one and two."]), callback_handler=None)
        return SummarizingConversationManager(
            summary_ratio=0.5, preserve_recent_messages=2, summarization_agent=summarizer
        )
    return SlidingWindowConversationManager(window_size=40)


def _agent(manager: SessionManager, agent_id: str, model: ScriptedModel | None = None) -> Agent:
    """The agent as the application builds it, in any process, with any session manager."""
    return Agent(
        model=model or ScriptedModel(),
        agent_id=agent_id,
        session_manager=manager,
        conversation_manager=_conversation_manager(agent_id),
        tools=[lookup_order, time_tool],
        hooks=[_Approval()],
        system_prompt=SYSTEM_PROMPT,
        callback_handler=None,
    )


def _converse(new_manager: Callable[[], SessionManager]) -> dict[str, Agent]:
    """Write the four conversations through a message-log manager (one manager per agent, as processes do)."""
    support = _agent(
        new_manager(), "support", ScriptedModel([ToolCall("lookup_order", {"order_id": "A-1"}), "Shipped."])
    )
    support.state.set("customer", {"tier": "gold", "id": 7})
    first: list[ContentBlock] = [{"text": "Where is A-1?"}, {"image": {"format": "png", "source": {"bytes": IMAGE}}}]
    support(first)

    trimmed = _agent(new_manager(), "trimmed", ScriptedModel(["r1", "r2", "r3", "r4"]))
    for prompt in ("q1", "q2", "q3", "q4"):
        trimmed(prompt)
    assert trimmed.conversation_manager.removed_message_count > 0

    approver = _agent(new_manager(), "approver", ScriptedModel([ToolCall("time_tool", tool_use_id="t-1")]))
    assert approver("What time is it?").stop_reason == "interrupt"

    summarized = _agent(new_manager(), "summarized", _OverflowingModel(["s1", "s2", "s3"], overflow_on={3}))
    for prompt in ("one", "two", "three"):
        summarized(prompt)
    assert summarized.messages[0]["content"][0]["text"].startswith("Summary")
    return {"support": support, "trimmed": trimmed, "approver": approver, "summarized": summarized}


def _facts(agent: Agent) -> dict[str, Any]:
    """Everything a session restores into an agent."""
    return {
        "messages": agent.messages,
        "state": agent.state.get(),
        "conversation_manager": agent.conversation_manager.get_state(),
        "interrupt_state": agent._interrupt_state.to_dict(),
        "model_state": agent._model_state,
        "system_prompt": agent.system_prompt,
    }


def _restored_by_snapshots(storage: ValkeyStorage, agent_id: str, session_id: str = SESSION_ID) -> Agent:
    return _agent(SnapshotSessionManager(session_id, storage=storage), agent_id)


def _assert_same_restore(message_log: Callable[[], SessionManager], storage: ValkeyStorage) -> None:
    for agent_id in AGENTS:
        expected = _facts(_agent(message_log(), agent_id))
        assert _facts(_restored_by_snapshots(storage, agent_id)) == expected, agent_id
        assert expected["system_prompt"] == SYSTEM_PROMPT


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def sync_client(make_snapshot_storage: StorageFactory) -> Iterator[Any]:
    """A synchronous client of the case's library and topology, for the source repository."""
    client = make_snapshot_storage.backend.make_client(make_snapshot_storage.case.kind)
    try:
        yield client
    finally:
        client.close()


def _keyspace(backend: Backend) -> dict[bytes, bytes]:
    """Every key of every primary with its ``DUMP``: equal dicts mean nothing was written."""
    found: dict[bytes, bytes] = {}
    for node in backend.nodes:
        admin: Any = valkey.Valkey(node.host, node.port)
        try:
            if admin.execute_command("ROLE")[0] != b"master":
                continue
            for key in admin.scan_iter(count=1000):
                found[key] = admin.dump(key)
        finally:
            admin.close()
    return found


# -- restores are equal ----------------------------------------------------------------------------


def test_from_the_valkey_repository_restores_the_same_agents(
    make_snapshot_storage: StorageFactory, sync_client: Any
) -> None:
    _converse(lambda: ValkeySessionManager(session_id=SESSION_ID, client=sync_client))
    storage = make_snapshot_storage()

    report = migrate_to_snapshots(ValkeySessionRepository(sync_client), storage, SESSION_ID)

    assert sorted(e.id for e in report.agents) == sorted(AGENTS)
    assert {e.outcome for e in report.entries} == {"migrated"}
    assert len(report.written) == 4
    trimmed = next(e for e in report.agents if e.id == "trimmed")
    assert trimmed.trimmed_messages > 0
    assert trimmed.messages == trimmed.source_messages - trimmed.trimmed_messages
    assert any("'trimmed'" in line and "removed" in line for line in report.not_carried)
    _assert_same_restore(lambda: ValkeySessionManager(session_id=SESSION_ID, client=sync_client), storage)

    support = _restored_by_snapshots(storage, "support")
    assert support.messages[0]["content"][1]["image"]["source"]["bytes"] == IMAGE
    assert any("toolUse" in block for message in support.messages for block in message["content"])

    # The interrupted agent resumes from its snapshot: the interrupt state came across.
    approver = _agent(SnapshotSessionManager(SESSION_ID, storage=storage), "approver", ScriptedModel(["It is 12:00."]))
    interrupt_id = approver._interrupt_state.to_dict()["interrupts"]
    assert interrupt_id
    (interrupt,) = interrupt_id.values()
    responses: list[InterruptResponseContent] = [
        {"interruptResponse": {"interruptId": interrupt["id"], "response": "APPROVE"}}
    ]
    result = approver(responses)
    assert result.stop_reason == "end_turn"
    assert any(
        block.get("toolResult", {}).get("content") == [{"text": "12:00"}]
        for message in approver.messages
        for block in message["content"]
    )


@pytest.mark.backends("valkey9")
def test_from_a_file_session_manager_directory_restores_the_same_agents(
    make_snapshot_storage: StorageFactory, tmp_path: Path
) -> None:
    directory = str(tmp_path / "sessions")
    _converse(lambda: FileSessionManager(SESSION_ID, storage_dir=directory))
    storage = make_snapshot_storage()

    report = migrate_to_snapshots(directory, storage, SESSION_ID)

    assert report.source == f"file:{directory}"
    assert sorted(e.id for e in report.agents) == sorted(AGENTS)
    assert {e.outcome for e in report.entries} == {"migrated"}
    _assert_same_restore(lambda: FileSessionManager(SESSION_ID, storage_dir=directory), storage)
    # Only the snapshots were written: one key per agent, all in the session's group.
    assert asyncio.run(storage.list("")) == sorted(report.written)
    assert all(key.startswith(f"session/{SESSION_ID}/scopes/agent/") for key in report.written)


# -- idempotence, dry run, conflicts ------------------------------------------------------------------


def test_a_second_run_writes_nothing(make_snapshot_storage: StorageFactory, sync_client: Any) -> None:
    _converse(lambda: ValkeySessionManager(session_id=SESSION_ID, client=sync_client))
    storage = make_snapshot_storage()
    repository = ValkeySessionRepository(sync_client)
    first = migrate_to_snapshots(repository, storage, SESSION_ID)
    assert not first.already_migrated
    before = _keyspace(make_snapshot_storage.backend)

    second = migrate_to_snapshots(repository, storage, SESSION_ID)

    assert second.already_migrated
    assert {e.outcome for e in second.entries} == {"unchanged"}
    assert second.written == []
    assert [e.key for e in second.entries] == [e.key for e in first.entries]
    assert _keyspace(make_snapshot_storage.backend) == before


def test_a_dry_run_writes_nothing_and_reports_what_a_run_writes(
    make_snapshot_storage: StorageFactory, sync_client: Any
) -> None:
    _converse(lambda: ValkeySessionManager(session_id=SESSION_ID, client=sync_client))
    storage = make_snapshot_storage()
    repository = ValkeySessionRepository(sync_client)
    before = _keyspace(make_snapshot_storage.backend)

    dry = migrate_to_snapshots(repository, storage, SESSION_ID, dry_run=True)

    assert _keyspace(make_snapshot_storage.backend) == before
    assert dry.dry_run and len(dry.written) == 4
    assert "would write 4" in dry.summary()
    real = migrate_to_snapshots(repository, storage, SESSION_ID)
    assert real.written == dry.written
    assert [(e.outcome, e.bytes, e.messages) for e in real.entries] == [
        (e.outcome, e.bytes, e.messages) for e in dry.entries
    ]
    assert asyncio.run(storage.list("")) == sorted(real.written)
    # A dry run after the real one finds everything in place.
    assert migrate_to_snapshots(repository, storage, SESSION_ID, dry_run=True).already_migrated


@pytest.mark.backends("valkey9")
def test_a_changed_source_is_a_conflict_until_overwrite(
    make_snapshot_storage: StorageFactory, sync_client: Any
) -> None:
    manager = ValkeySessionManager(session_id=SESSION_ID, client=sync_client)
    agent = _agent(manager, "support", ScriptedModel(["first", "second"]))
    agent("one")
    storage = make_snapshot_storage()
    repository = ValkeySessionRepository(sync_client)
    assert migrate_to_snapshots(repository, storage, SESSION_ID).written
    agent("two")  # the conversation goes on in the message log
    before = _keyspace(make_snapshot_storage.backend)

    conflict = migrate_to_snapshots(repository, storage, SESSION_ID)

    (entry,) = conflict.conflicts
    assert entry.reason is not None and "messages (2 stored, 4 in source)" in entry.reason
    assert conflict.written == [] and not conflict.already_migrated
    assert _keyspace(make_snapshot_storage.backend) == before
    replaced = migrate_to_snapshots(repository, storage, SESSION_ID, overwrite=True)
    assert [e.outcome for e in replaced.entries] == ["replaced"]
    assert _facts(_restored_by_snapshots(storage, "support")) == _facts(
        _agent(ValkeySessionManager(session_id=SESSION_ID, client=sync_client), "support")
    )


# -- selection, ids, orchestrators ------------------------------------------------------------------------


@pytest.mark.backends("valkey9")
def test_agent_ids_and_target_session_id(make_snapshot_storage: StorageFactory, sync_client: Any) -> None:
    source_id = "team/eu:1"  # a repository session id; '/' cannot be a SnapshotSessionManager id
    manager = ValkeySessionManager(session_id=source_id, client=sync_client)
    _agent(manager, "support", ScriptedModel(["a"]))("hi")
    _agent(manager, "trimmed", ScriptedModel(["b"]))("hi")
    storage = make_snapshot_storage()
    repository = ValkeySessionRepository(sync_client)
    before = _keyspace(make_snapshot_storage.backend)

    with pytest.raises(ValueError, match="target_session_id"):
        migrate_to_snapshots(repository, storage, source_id)
    assert _keyspace(make_snapshot_storage.backend) == before

    report = migrate_to_snapshots(repository, storage, source_id, agent_ids=["trimmed"], target_session_id="team-eu-1")
    assert [e.id for e in report.entries] == ["trimmed"]
    assert report.written == ["session/team-eu-1/scopes/agent/trimmed/snapshots/snapshot_latest.json"]
    assert _facts(_restored_by_snapshots(storage, "trimmed", "team-eu-1")) == _facts(
        _agent(ValkeySessionManager(session_id=source_id, client=sync_client), "trimmed")
    )


@pytest.mark.backends("valkey9")
def test_a_namespace_view_gets_the_keys_the_manager_reads(
    make_snapshot_storage: StorageFactory, sync_client: Any
) -> None:
    _agent(ValkeySessionManager(session_id=SESSION_ID, client=sync_client), "support", ScriptedModel(["a"]))("hi")
    view = make_snapshot_storage().namespace("tenants/acme")

    report = migrate_to_snapshots(ValkeySessionRepository(sync_client), view, SESSION_ID)

    # A namespaced view is used as given by SnapshotSessionManager (no "session/" prefix): so here.
    assert report.written == [f"{SESSION_ID}/scopes/agent/support/snapshots/snapshot_latest.json"]
    restored = _agent(SnapshotSessionManager(SESSION_ID, storage=view), "support")
    assert [m["role"] for m in restored.messages] == ["user", "assistant"]


def _swarm_agents() -> tuple[Agent, Agent]:
    researcher = Agent(
        name="researcher",
        agent_id="researcher",
        model=ScriptedModel(
            [ToolCall("handoff_to_agent", {"agent_name": "writer", "message": "Write it up."}), "Handed off."]
        ),
        callback_handler=None,
    )
    writer = Agent(name="writer", agent_id="writer", model=ScriptedModel(["The report."]), callback_handler=None)
    return researcher, writer


class _Crash(BaseException):
    """Stands for the process dying: not an ``Exception``, so neither the SDK nor the Swarm catches it."""


class _DieBeforeWriter(HookProvider):
    def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None:
        registry.add_callback(BeforeNodeCallEvent, self._before)

    def _before(self, event: BeforeNodeCallEvent) -> None:
        if event.node_id == "writer":
            raise _Crash("died before the writer")


@pytest.mark.backends("valkey9")
def test_a_crashed_swarm_resumes_from_its_migrated_snapshot(
    make_snapshot_storage: StorageFactory, sync_client: Any
) -> None:
    session_id = "swarm-run"
    manager = ValkeySessionManager(session_id=session_id, client=sync_client)
    swarm = Swarm(list(_swarm_agents()), session_manager=manager, id="team:alpha", hooks=[_DieBeforeWriter()])
    with pytest.raises(_Crash):
        swarm("Write a short report.")
    persisted = manager.read_multi_agent(session_id, "team:alpha")
    assert persisted is not None and persisted["next_nodes_to_execute"] == ["writer"]
    storage = make_snapshot_storage()

    report = migrate_to_snapshots(ValkeySessionRepository(sync_client), storage, session_id)

    (entry,) = report.orchestrators
    assert entry.outcome == "migrated"
    assert entry.key == f"session/{session_id}/scopes/multiAgent/team:alpha/snapshots/snapshot_latest.json"
    researcher, writer = _swarm_agents()
    resumed = Swarm(
        [researcher, writer], session_manager=SnapshotSessionManager(session_id, storage=storage), id="team:alpha"
    )
    result = resumed("Write a short report.")
    assert result.status == Status.COMPLETED
    assert [n.node_id for n in result.node_history] == ["researcher", "writer"]
    model = researcher.model
    assert isinstance(model, ScriptedModel) and model.remaining == 2  # the finished node did not run again
    assert migrate_to_snapshots(ValkeySessionRepository(sync_client), storage, session_id, dry_run=True).conflicts


# -- errors ---------------------------------------------------------------------------------------------


@pytest.mark.backends("valkey9")
def test_a_missing_session_or_agent_is_a_clear_error(
    make_snapshot_storage: StorageFactory, sync_client: Any, tmp_path: Path
) -> None:
    storage = make_snapshot_storage()
    repository = ValkeySessionRepository(sync_client)
    before = _keyspace(make_snapshot_storage.backend)

    with pytest.raises(SourceNotFoundError, match=r"session_id=<nope> \| no such session in the repository"):
        migrate_to_snapshots(repository, storage, "nope")
    (tmp_path / "sessions").mkdir()
    with pytest.raises(SourceNotFoundError, match=r"session_id=<nope> \| no such session in .*session_nope"):
        migrate_to_snapshots(tmp_path / "sessions", storage, "nope")
    with pytest.raises(FileNotFoundError):
        migrate_to_snapshots(tmp_path / "absent", storage, "nope")

    _agent(ValkeySessionManager(session_id=SESSION_ID, client=sync_client), "support", ScriptedModel(["a"]))("hi")
    with pytest.raises(SourceNotFoundError, match=r"no agent 'ghost' in the source \(agents: 'support'\)"):
        migrate_to_snapshots(repository, storage, SESSION_ID, agent_ids=["ghost"])
    assert asyncio.run(storage.list("")) == []
    assert before == {}
    assert not [key for key in _keyspace(make_snapshot_storage.backend) if b":storage:" in key]


class _CustomManager(SlidingWindowConversationManager):
    pass


@pytest.mark.backends("valkey9")
def test_a_custom_conversation_manager_needs_a_factory(make_snapshot_storage: StorageFactory, sync_client: Any) -> None:
    manager = ValkeySessionManager(session_id=SESSION_ID, client=sync_client)
    _agent(manager, "alpha", ScriptedModel(["fine"]))("hi")  # migrated first, were anything written
    Agent(
        model=ScriptedModel(["a"]),
        agent_id="custom",
        session_manager=manager,
        conversation_manager=_CustomManager(),
        callback_handler=None,
    )("hi")
    storage = make_snapshot_storage()
    repository = ValkeySessionRepository(sync_client)

    with pytest.raises(SnapshotMigrationError, match="'_CustomManager' is not one of the SDK's"):
        migrate_to_snapshots(repository, storage, SESSION_ID)
    assert asyncio.run(storage.list("")) == []  # every snapshot is built before the first write

    def factory(agent_id: str, state: dict[str, Any]) -> ConversationManager:
        return _CustomManager() if state["__name__"] == "_CustomManager" else _conversation_manager(agent_id)

    report = migrate_to_snapshots(repository, storage, SESSION_ID, conversation_manager=factory)
    assert [(e.id, e.outcome) for e in report.entries] == [("alpha", "migrated"), ("custom", "migrated")]
    restored = Agent(
        model=ScriptedModel(),
        agent_id="custom",
        session_manager=SnapshotSessionManager(SESSION_ID, storage=storage),
        conversation_manager=_CustomManager(),
        callback_handler=None,
    )
    assert [m["role"] for m in restored.messages] == ["user", "assistant"]
