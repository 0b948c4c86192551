"""A real ``strands.Agent`` with ``SnapshotSessionManager`` persisting to ``ValkeyStorage`` on real servers.

The model is :class:`~strands_valkey_session_manager.scripted_model.ScriptedModel`, so the SDK's own
event loop, tool executor and snapshot hooks run unchanged. Covered: a snapshot after every
message (``save_latest_on="message"``) that a brand-new storage, client and agent restore; a
second process restoring the conversation and continuing it; a checkpoint, then a rollback to it
by snapshot id; deleting one session leaves the others alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from strands import Agent, tool
from strands.session import SnapshotSessionManager
from strands.session.snapshot_session_manager import _deserialize_snapshot

from strands_valkey_session_manager.scripted_model import ScriptedModel, ToolCall
from strands_valkey_session_manager.storage import ValkeyStorage
from tests.conftest import Backend
from tests.storage.conftest import StorageFactory

pytestmark = pytest.mark.filterwarnings("ignore:context_window_limit is not set:UserWarning")

# Anything but "/" is a valid SnapshotSessionManager session id: colons, braces, spaces, Unicode.
SESSION_ID = "tenant:7 {chat} ü"
AGENT_ID = "support-bot"
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


@tool
def lookup_order(order_id: str) -> str:
    """Look up an order."""
    return f"order {order_id}: shipped"


def _texts(agent: Agent) -> list[str]:
    return [block["text"] for message in agent.messages for block in message["content"] if "text" in block]


def _agent(storage: ValkeyStorage, *turns: Any, **manager_kwargs: Any) -> tuple[Agent, SnapshotSessionManager]:
    """A new manager and agent on the session: what a fresh process builds."""
    manager = SnapshotSessionManager(SESSION_ID, storage=storage, **manager_kwargs)
    agent = Agent(
        model=ScriptedModel(turns),
        session_manager=manager,
        agent_id=AGENT_ID,
        tools=[lookup_order],
        callback_handler=None,
        system_prompt="You are terse.",
    )
    return agent, manager


class RecordingStorage(ValkeyStorage):
    """Records the message count of every ``snapshot_latest`` written."""

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.latest_message_counts: list[int] = []

    async def write(self, key: str, data: bytes) -> None:
        await super().write(key, data)
        if key.endswith("snapshot_latest.json"):
            self.latest_message_counts.append(len(_deserialize_snapshot(data).data["messages"]))


def test_a_snapshot_per_message_restores_in_new_objects(make_storage: StorageFactory) -> None:
    storage = make_storage(cls=RecordingStorage)
    assert isinstance(storage, RecordingStorage)
    agent, _ = _agent(storage, ToolCall("lookup_order", {"order_id": "A-1"}), "It shipped.", save_latest_on="message")
    agent.state.set("customer", {"tier": "gold", "id": 7})
    agent([{"text": "Where is A-1?"}, {"image": {"format": "png", "source": {"bytes": IMAGE}}}])

    # user, assistant tool use, tool result, assistant answer: one save each, then the invocation's.
    assert storage.latest_message_counts == [1, 2, 3, 4, 4]

    fresh = make_storage()  # a new storage object (a new process is in the test below)
    restored, _ = _agent(fresh)
    assert restored.messages == agent.messages
    assert restored.messages[0]["content"][1]["image"]["source"]["bytes"] == IMAGE
    assert restored.state.get("customer") == {"tier": "gold", "id": 7}
    assert restored.system_prompt == "You are terse."
    assert _texts(restored) == ["Where is A-1?", "It shipped."]
    assert any("toolResult" in block for message in restored.messages for block in message["content"])


def test_checkpoint_then_rollback(make_storage: StorageFactory) -> None:
    import asyncio

    storage = make_storage()
    agent, manager = _agent(storage, "one", "two", "three", "after rollback")
    agent("turn 1")
    checkpoint = asyncio.run(manager.save_snapshot(agent, is_latest=False))
    assert checkpoint is not None
    agent("turn 2")
    agent("turn 3")
    assert _texts(agent) == ["turn 1", "one", "turn 2", "two", "turn 3", "three"]
    assert asyncio.run(manager.list_snapshot_ids(agent)) == [checkpoint]

    # Roll back to the checkpoint and carry on from there: the invocation saves the new latest.
    assert asyncio.run(manager.restore_snapshot(agent, snapshot_id=checkpoint)) is True
    assert _texts(agent) == ["turn 1", "one"]
    agent("turn 2 again")

    restored, restored_manager = _agent(make_storage())
    assert _texts(restored) == ["turn 1", "one", "turn 2 again", "after rollback"]
    # The checkpoint is immutable and still restorable in the new objects.
    assert asyncio.run(restored_manager.restore_snapshot(restored, snapshot_id=checkpoint)) is True
    assert _texts(restored) == ["turn 1", "one"]
    prefix = f"session/{SESSION_ID}/scopes/agent/{AGENT_ID}/snapshots/"
    assert asyncio.run(storage.list(prefix)) == [
        f"{prefix}immutable_history/snapshot_{checkpoint}.json",
        f"{prefix}snapshot_latest.json",
    ]


def test_delete_session_removes_only_that_session(make_storage: StorageFactory) -> None:
    import asyncio

    storage = make_storage()
    agent, manager = _agent(storage, "a", snapshot_trigger=lambda **_: True)
    agent("hello")
    other = SnapshotSessionManager(f"{SESSION_ID}x", storage=storage)  # an id that extends ours
    Agent(model=ScriptedModel(["b"]), session_manager=other, agent_id=AGENT_ID, callback_handler=None)("hi")
    asyncio.run(storage.write("memory/prefs.json", b"{}"))

    asyncio.run(manager.delete_session())

    assert asyncio.run(storage.list(f"session/{SESSION_ID}/")) == []
    assert asyncio.run(storage.list("")) == [
        "memory/prefs.json",
        f"session/{SESSION_ID}x/scopes/agent/{AGENT_ID}/snapshots/snapshot_latest.json",
    ]


_CHILD = textwrap.dedent(
    """
    import json, sys
    from strands import Agent
    from strands.session import SnapshotSessionManager
    from strands_valkey_session_manager import ValkeyStorage
    from strands_valkey_session_manager.scripted_model import ScriptedModel

    url, cluster, session_id, agent_id = sys.argv[1], sys.argv[2] == "1", sys.argv[3], sys.argv[4]
    with ValkeyStorage.from_url(url, cluster=cluster) as storage:
        manager = SnapshotSessionManager(session_id, storage=storage)
        agent = Agent(model=ScriptedModel(["from the child"]), session_manager=manager, agent_id=agent_id,
                      callback_handler=None)
        restored = [b["text"] for m in agent.messages for b in m["content"] if "text" in b]
        state = agent.state.get("customer")
        agent("child turn")
    print(json.dumps({"restored": restored, "state": state}))
    """
)


@pytest.mark.backends("valkey9", "cluster")
def test_another_process_restores_and_continues(backend: Backend) -> None:
    client = backend.make_client("valkey-cluster-bytes" if backend.is_cluster else "valkey-py-bytes")
    try:
        storage = ValkeyStorage(client)
        agent, _ = _agent(storage, "parent answer")
        agent.state.set("customer", {"tier": "gold"})
        agent("parent turn")

        child = subprocess.run(
            [sys.executable, "-c", _CHILD, backend.url, "1" if backend.is_cluster else "0", SESSION_ID, AGENT_ID],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert child.returncode == 0, child.stderr
        report = json.loads(child.stdout.strip().splitlines()[-1])
        assert report == {"restored": ["parent turn", "parent answer"], "state": {"tier": "gold"}}

        back, _ = _agent(ValkeyStorage(client))
        assert _texts(back) == ["parent turn", "parent answer", "child turn", "from the child"]
    finally:
        client.close()
