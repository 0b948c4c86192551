"""The SDK's storage consumers end to end on ``ValkeyStorage`` with a real ``Agent`` and the scripted
model: the memory system (``FileMemoryStore`` + ``MemoryManager``: add, search through the native
index, background extraction), the context-offloader plugin (also on a sandboxed agent: no
``for_sandbox``), the context manager's durable stash across a restart and ``delete_session``,
Graph and Swarm resumed from snapshots, and all sharing one storage with ``SnapshotSessionManager``.
"""

from __future__ import annotations

import json
from typing import Any

from strands import Agent, tool
from strands.memory import MemoryManager
from strands.session import SnapshotSessionManager
from strands.vended_memory_stores.file_memory_store import FileMemoryStore
from strands.vended_plugins.context_offloader import ContextOffloader

from strands_valkey_session_manager.scripted_model import ScriptedModel, ToolCall
from tests.storage.conftest import StorageFactory


def _tool_results(agent: Agent) -> list[str]:
    return [
        part.get("text", "") or json.dumps(part.get("json"))
        for message in agent.messages
        for block in message["content"]
        if "toolResult" in block
        for part in block["toolResult"]["content"]
    ]


def test_memory_add_and_search_through_an_agent(make_snapshot_storage: StorageFactory) -> None:
    storage = make_snapshot_storage(search_index=("memory/",))
    store = FileMemoryStore(name="agent-memory", storage=storage)
    manager = MemoryManager(stores=[store], add_tool_config=True, injection=False)
    turns: list[Any] = [
        ToolCall("add_memory", {"entries": ["# Drinks\nUser prefers green tea", "# Editor\nUses dark mode"]}),
        "Noted.",
        ToolCall("search_memory", {"query": "which tea does the user like?"}),
        "Green tea.",
    ]
    agent = Agent(
        model=ScriptedModel(turns),
        plugins=[manager],
        session_manager=SnapshotSessionManager("s-mem", storage=storage),
        callback_handler=None,
    )
    agent("Remember: I like green tea and dark mode.")
    agent("Which tea do I like?")
    results = _tool_results(agent)
    assert "green tea" in results[-1] and "dark mode" not in results[-1]
    import asyncio

    keys = asyncio.run(storage.list("memory/"))
    assert keys == ["memory/agent-memory/drinks.md", "memory/agent-memory/editor.md"]
    # The store's search is the index's, and ranks like the SDK's keyword strategy.
    entries = asyncio.run(store.search("dark mode editor"))
    assert [e.metadata["path"] for e in entries] == ["editor.md"]
    # The session was saved on the same storage beside the notes.
    assert asyncio.run(storage.list("session/s-mem/"))


@tool
def big_report() -> str:
    """A tool whose result is too large for the context."""
    return "line of the quarterly report\n" * 4000


def test_context_offloader_stores_and_retrieves_on_valkey(make_snapshot_storage: StorageFactory) -> None:
    import asyncio

    storage = make_snapshot_storage()
    offloader = ContextOffloader(storage=storage, max_result_tokens=200, preview_tokens=50)
    agent = Agent(
        model=ScriptedModel([ToolCall("big_report"), "Summarised."]),
        tools=[big_report],
        plugins=[offloader],
        callback_handler=None,
    )
    agent("Get the report.")
    stored = asyncio.run(storage.list(""))
    assert stored, "the offloaded result was written to the storage"
    values = [asyncio.run(storage.read(key)) for key in stored]
    assert any(value is not None and b"quarterly report" in value for value in values)
    # What the model saw is a preview that points at the stored copy, not the whole result.
    assert all(len(text) < 40_000 for text in _tool_results(agent))


# -- memory extraction, the context stash, Graph and Swarm, for_sandbox ---------------------------


def test_memory_extraction_writes_extracted_facts_to_valkey(make_snapshot_storage: StorageFactory) -> None:
    import asyncio

    from strands.memory import InvocationTrigger, ModelExtractor

    storage = make_snapshot_storage(search_index=("memory/",))
    facts = json.dumps([{"content": "User prefers green tea"}, {"content": "User works in Lisbon"}])
    extractor = ModelExtractor(model=ScriptedModel([facts]))
    store = FileMemoryStore(
        name="facts", storage=storage, extraction={"trigger": InvocationTrigger(), "extractor": extractor}
    )
    manager = MemoryManager(stores=[store], injection=False)
    agent = Agent(model=ScriptedModel(["Nice to meet you."]), memory_manager=manager, callback_handler=None)

    async def converse() -> None:
        # Extraction runs as background tasks of the invocation's loop: invoke and drain on one loop.
        await agent.invoke_async("I'm in Lisbon and I drink green tea.")
        await manager.flush()

    asyncio.run(converse())
    keys = asyncio.run(storage.list("memory/facts/"))
    values = b" ".join(v for v in (asyncio.run(storage.read(k)) for k in keys) if v)
    assert b"green tea" in values and b"Lisbon" in values
    # Found again through the native index, ranked as the SDK's keyword search ranks them.
    entries = asyncio.run(store.search("which city, Lisbon?"))
    assert [e.content for e in entries] == ["User works in Lisbon"]


def test_context_stash_on_valkey_survives_a_restart_and_goes_with_the_session(
    make_snapshot_storage: StorageFactory,
) -> None:
    import asyncio

    from strands._context_manager.context_manager import ContextManager

    from strands_valkey_session_manager import ValkeySnapshotSessionManager

    storage = make_snapshot_storage()

    def agent(*turns: str) -> tuple[Agent, ValkeySnapshotSessionManager]:
        manager = ValkeySnapshotSessionManager("s-stash", storage=storage)
        made = Agent(
            agent_id="a1",
            model=ScriptedModel(list(turns)),
            storage=storage,
            context_manager=ContextManager(),
            session_manager=manager,
            callback_handler=None,
        )
        return made, manager

    first, _ = agent("Stored.")
    first("Keep this: the launch code is 0000.")
    stashed = asyncio.run(storage.list("context/s-stash/"))
    assert stashed, "the context manager stashed the messages in the agent's storage"
    # The snapshot points at the durable stash instead of copying it.
    latest = asyncio.run(storage.read("session/s-stash/scopes/agent/a1/snapshots/snapshot_latest.json"))
    assert latest is not None and json.loads(latest)["data"]["stash"]["location"] == "external"
    # Another process: restored from the snapshot; its stash reads what the first one stashed.
    second, manager = agent("Again.")
    assert second.context_manager is not None and second.context_manager.stash is not None
    assert [m["content"][0]["text"] for m in second.messages][:1] == ["Keep this: the launch code is 0000."]
    ref = stashed[0].rsplit("/", 1)[-1]
    assert asyncio.run(second.context_manager.stash.retrieve(ref)) is not None
    asyncio.run(manager.delete_session())
    assert asyncio.run(storage.list("session/s-stash/")) == []
    assert asyncio.run(storage.list("context/s-stash/")) == []


def test_graph_and_swarm_resume_from_valkey_in_a_new_process(make_snapshot_storage: StorageFactory) -> None:
    import asyncio

    from strands.multiagent import GraphBuilder, Swarm
    from strands.multiagent.base import Status

    from strands_valkey_session_manager import ValkeySnapshotSessionManager

    storage = make_snapshot_storage()

    def graph() -> Any:
        builder = GraphBuilder()
        builder.add_node(Agent(name="research", model=ScriptedModel(["found"]), callback_handler=None), "research")
        builder.add_node(Agent(name="write", model=ScriptedModel(["written"]), callback_handler=None), "write")
        builder.add_edge("research", "write")
        builder.set_session_manager(ValkeySnapshotSessionManager("s-multi", storage=storage))
        builder.set_graph_id("g1")
        return builder.build()

    def swarm() -> Swarm:
        return Swarm(
            [Agent(name="solo", model=ScriptedModel(["done"]), callback_handler=None)],
            id="w1",
            session_manager=ValkeySnapshotSessionManager("s-multi", storage=storage),
        )

    assert graph()("go").status == Status.COMPLETED
    assert swarm()("go").status == Status.COMPLETED
    keys = asyncio.run(storage.list("session/s-multi/scopes/multiAgent/"))
    assert keys == [
        "session/s-multi/scopes/multiAgent/g1/snapshots/snapshot_latest.json",
        "session/s-multi/scopes/multiAgent/w1/snapshots/snapshot_latest.json",
    ]
    # New orchestrators (another process) restore the completed state on their first invocation.
    for made, key in [(graph(), keys[0]), (swarm(), keys[1])]:
        assert made("go").status == Status.COMPLETED
        assert asyncio.run(storage.read(key)) is not None


def test_offloader_on_a_sandboxed_agent_shares_the_storage(make_snapshot_storage: StorageFactory) -> None:
    """``ValkeyStorage`` defines no ``for_sandbox`` (it has no files to route through a sandbox):
    the offloader then uses it as it is for every agent, sandboxed or not."""
    import asyncio

    from strands.sandbox.not_a_sandbox_local_environment import NotASandboxLocalEnvironment

    storage = make_snapshot_storage()
    assert not hasattr(storage, "for_sandbox")
    offloader = ContextOffloader(storage=storage, max_result_tokens=200, preview_tokens=50)
    agent = Agent(
        model=ScriptedModel([ToolCall("big_report"), "Summarised."]),
        tools=[big_report],
        plugins=[offloader],
        sandbox=NotASandboxLocalEnvironment(),
        callback_handler=None,
    )
    agent("Get the report.")
    assert offloader._storage_for_agent(agent) is offloader._storage
    assert asyncio.run(storage.list("offloader/"))
