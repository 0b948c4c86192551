"""The SDK's storage consumers end to end on ``ValkeyStorage`` with a real ``Agent`` and the scripted
model: the memory system (``FileMemoryStore`` + ``MemoryManager``: add, search through the native
index), the context-offloader plugin, and both sharing one storage with ``SnapshotSessionManager``.
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
