"""Write-behind: appends leave the caller at once, stay in order, land before an invocation returns."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import valkey
from strands import Agent
from strands.agent.conversation_manager import SlidingWindowConversationManager
from strands.multiagent import GraphBuilder, Swarm
from strands.types.session import SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import ValkeySessionManager, ValkeySessionRepository
from strands_valkey_session_manager._write_behind import WriteBehind, WriteBehindError
from strands_valkey_session_manager.scripted_model import ScriptedModel
from tests.servers import ServerProcess, kill9, restart, start_server


def _agent(manager: ValkeySessionManager, turns: list[Any]) -> Agent:
    return Agent(agent_id="a", model=ScriptedModel(turns), session_manager=manager, callback_handler=None)


def test_conversation_is_stored_when_the_invocation_returns(client: Any) -> None:
    manager = ValkeySessionManager(session_id="s", client=client, write_behind=True)
    agent = _agent(manager, ["one", "two"])
    agent("first")
    agent("second")
    # No flush by the caller: the AfterInvocation hook flushed already.
    other = ValkeySessionManager(session_id="s", client=client)
    stored = [m.to_message() for m in other.list_messages("s", "a")]
    assert stored == agent.messages
    restored = _agent(ValkeySessionManager(session_id="s", client=client), [])
    assert restored.messages == agent.messages
    manager.close()


def test_inside_an_event_loop_appends_do_not_wait_for_the_server(standalone_client: Any) -> None:
    manager = ValkeySessionManager(session_id="s", client=standalone_client, write_behind=True)
    manager.create_agent("s", SessionAgent(agent_id="a", state={}, conversation_manager_state={}))
    manager.flush()
    gate = threading.Event()
    # Hold the worker: the next writes can only queue, yet the caller returns at once.
    manager._write_behind.submit(gate.wait)  # type: ignore[union-attr, arg-type]

    async def stream() -> float:
        started = time.perf_counter()
        for i in range(200):
            message = SessionMessage(message={"role": "user", "content": [{"text": str(i)}]}, message_id=i)
            manager.create_message("s", "a", message)
        return time.perf_counter() - started

    elapsed = asyncio.run(stream())
    # Reads through the manager would flush first; look at the server directly instead.
    assert standalone_client.zcard(manager.session_keys("s").order) == 0
    gate.set()
    manager.flush()
    assert [m.message_id for m in manager.list_messages("s", "a")] == list(range(200))
    assert elapsed < 5  # generous: enqueueing 200 writes, never 200 round trips to a stalled worker


def test_order_is_kept_and_reads_see_queued_writes(standalone_client: Any) -> None:
    manager = ValkeySessionManager(session_id="s", client=standalone_client, write_behind=True)
    manager.create_agent("s", SessionAgent(agent_id="a", state={"n": 0}, conversation_manager_state={}))
    for i in range(50):
        manager.create_message("s", "a", SessionMessage(message={"role": "user", "content": []}, message_id=i))
        manager.update_agent("s", SessionAgent(agent_id="a", state={"n": i}, conversation_manager_state={}))
    # Overwrite of an id queued after its first write wins, as it would inline.
    manager.create_message("s", "a", SessionMessage(message={"role": "user", "content": [{"text": "x"}]}, message_id=0))
    stored = manager.read_agent("s", "a")
    assert stored is not None
    assert stored.state == {"n": 49}
    assert manager.list_messages("s", "a")[0].message["content"] == [{"text": "x"}]


def test_a_failed_write_is_raised_at_the_next_write_or_flush(standalone_client: Any) -> None:
    manager = ValkeySessionManager(session_id="s", client=standalone_client, write_behind=True)
    # The agent does not exist: the queued append fails in the background.
    manager.create_message("s", "ghost", SessionMessage(message={"role": "user", "content": []}, message_id=0))
    manager.create_message("s", "ghost", SessionMessage(message={"role": "user", "content": []}, message_id=1))
    with pytest.raises(WriteBehindError, match=r"does not exist.*1 later queued write"):
        manager.flush()
    manager.flush()  # reported once


def test_the_queue_is_drained_on_close_and_at_interpreter_exit(valkey9_server: ServerProcess) -> None:
    script = f"""
import valkey
from strands.types.session import SessionAgent, SessionMessage
from strands_valkey_session_manager import ValkeySessionManager
client = valkey.Valkey.from_url({valkey9_server.url!r})
m = ValkeySessionManager(session_id="exit", client=client, write_behind=True)
m.create_agent("exit", SessionAgent(agent_id="a", state={{}}, conversation_manager_state={{}}))
for i in range(300):
    m.create_message("exit", "a", SessionMessage(message={{"role": "user", "content": []}}, message_id=i))
# no flush, no close: normal interpreter exit must still apply every queued write
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    client: Any = valkey.Valkey.from_url(valkey9_server.url)
    try:
        reader = ValkeySessionManager(session_id="exit", client=client)
        assert [m.message_id for m in reader.list_messages("exit", "a")] == list(range(300))
    finally:
        client.delete(*reader.session_keys("exit").all())
        client.close()


def test_write_behind_unit_close_twice_and_submit_after_close() -> None:
    queue = WriteBehind("unit")
    seen: list[int] = []
    for i in range(5):
        queue.submit(lambda i=i: seen.append(i))  # type: ignore[misc]
    queue.close()
    queue.close()
    assert seen == [0, 1, 2, 3, 4]
    with pytest.raises(WriteBehindError, match="closed"):
        queue.submit(lambda: None)


def test_without_write_behind_nothing_changes(standalone_client: Any) -> None:
    manager = ValkeySessionManager(session_id="s", client=standalone_client)
    manager.flush()  # a no-op
    assert manager._write_behind is None
    stored = manager.read_session("s")
    assert stored is not None
    assert (stored.session_id, stored.session_type) == ("s", SessionType.AGENT)


# -- every write of an invocation is applied before it returns -----------------------------------


class _Watch:
    """Counts the writes a manager queues and which of them the completed flushes covered."""

    def __init__(self, manager: ValkeySessionManager) -> None:
        queue = manager._write_behind
        assert queue is not None
        self.submitted = 0
        self.covered = 0
        submit, flush = queue.submit, queue.flush

        def watched_submit(write: Any) -> None:
            submit(write)
            self.submitted += 1

        def watched_flush() -> None:
            before = self.submitted
            flush()
            self.covered = max(self.covered, before)

        queue.submit = watched_submit  # type: ignore[method-assign]
        queue.flush = watched_flush  # type: ignore[method-assign]

    def assert_nothing_pending(self) -> None:
        assert self.submitted > 0
        assert self.covered == self.submitted, f"{self.submitted - self.covered} write(s) still queued at return"


def test_the_invocation_returns_after_its_last_write_whatever_the_hook_order(client: Any, backend: Any) -> None:
    """The SDK runs AfterInvocationEvent callbacks in reverse registration order, so its own
    end-of-turn ``sync_agent`` (the sliding window's ``removed_message_count``) ran after the
    manager's flush and stayed queued when ``agent()`` returned."""
    manager = ValkeySessionManager(session_id="s", client=client, write_behind=True)
    watch = _Watch(manager)
    agent = Agent(
        agent_id="a",
        model=ScriptedModel(["one", "two"]),
        session_manager=manager,
        conversation_manager=SlidingWindowConversationManager(window_size=2),
        callback_handler=None,
    )
    other = backend.make_client(backend.client_kinds()[0])
    try:
        reader = ValkeySessionRepository(other)
        for turn, prompt in enumerate(["first", "second"]):
            agent.state.set("turn", turn)
            agent(prompt)
            watch.assert_nothing_pending()
            stored = reader.read_agent("s", "a")
            assert stored is not None
            assert stored.state == {"turn": turn}
            assert stored.conversation_manager_state == agent.conversation_manager.get_state()
            removed = agent.conversation_manager.removed_message_count
            assert [m.to_message() for m in reader.list_messages("s", "a", offset=removed)] == agent.messages
        assert agent.conversation_manager.removed_message_count == 2
    finally:
        other.close()
        manager.close()


@pytest.mark.parametrize("kind", ["swarm", "graph"])
def test_an_orchestrator_returns_after_its_state_is_stored(standalone_client: Any, kind: str) -> None:
    manager = ValkeySessionManager(session_id="s", client=standalone_client, write_behind=True)
    watch = _Watch(manager)
    first = Agent(name="first", agent_id="first", model=ScriptedModel(["draft"]), callback_handler=None)
    if kind == "swarm":
        orchestrator: Any = Swarm([first], session_manager=manager, id="team")
    else:
        builder = GraphBuilder()
        builder.add_node(first, "draft")
        builder.set_entry_point("draft")
        builder.set_max_node_executions(5)
        builder.set_graph_id("team")
        builder.set_session_manager(manager)
        orchestrator = builder.build()
    orchestrator("go")
    watch.assert_nothing_pending()
    stored = ValkeySessionRepository(standalone_client).read_multi_agent("s", "team")
    assert stored == orchestrator.serialize_state()
    assert stored is not None
    assert stored["status"] == "completed"
    manager.close()


class _Orchestrator:
    """What the repository reads of a ``MultiAgentBase``: ``id`` and ``serialize_state``."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.id = "team"
        self._state = state

    def serialize_state(self) -> dict[str, Any]:
        return self._state


def test_queued_writes_ride_out_a_restart_with_the_same_retries_as_direct_ones() -> None:
    server = start_server("valkey9", appendonly=True)
    client: Any = valkey.Valkey(port=server.port, socket_timeout=1, socket_connect_timeout=1)
    try:
        manager = ValkeySessionManager(session_id="s", client=client, write_behind=True, retries=40, retry_backoff=0.05)
        manager.create_agent("s", SessionAgent(agent_id="a", state={}, conversation_manager_state={}))
        manager.create_multi_agent("s", _Orchestrator({"step": 0}))  # type: ignore[arg-type]
        manager.flush()
        kill9(server)
        restarter = threading.Timer(0.4, restart, args=(server,))
        restarter.start()
        try:
            # Queued while the server is down: each waits out the restart in the retries.
            manager.update_multi_agent("s", _Orchestrator({"step": 1}))  # type: ignore[arg-type]
            manager.create_message("s", "a", SessionMessage(message={"role": "user", "content": []}, message_id=0))
            manager.flush()
        finally:
            restarter.join()
        assert manager.read_multi_agent("s", "team") == {"step": 1}
        assert [m.message_id for m in manager.list_messages("s", "a")] == [0]
        manager.close()
    finally:
        client.close()
        server.stop()
