"""Sessions for the web viewer's tests, written by a real ``strands.Agent`` and ``ScriptedModel``.

:func:`seed` fills a (flushed) server with:

* ``HOSTILE_SESSION``: an id with ``/ { ? # %`` spaces and Unicode, owner ``alice``; agent
  ``AGENT_ID`` had a user turn with hostile text and an image, a tool call whose tool answered with
  text and an image, a Markdown reply holding hostile HTML, and a user turn with a PDF document;
  its agent state holds HTML too. A Graph orchestrator ran in the same session.
* ``LONG_SESSION``: 130 messages written through the repository (timeline paging).
* ``PLAIN_SESSIONS``: a few small sessions for list paging and filters.
* ``SNAPSHOT_SESSION`` (when given a ``ValkeyStorage``): an agent saved by the SDK's
  ``SnapshotSessionManager`` with two immutable snapshots, its state changed between the turns.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

from strands import Agent, tool
from strands.multiagent import GraphBuilder
from strands.types.session import SessionMessage

from strands_valkey_session_manager import ValkeySessionManager, ValkeySessionRepository
from strands_valkey_session_manager.scripted_model import ScriptedModel, ToolCall, Turn

HOSTILE_SESSION = "tenant/7 {chat}?x=1#frag 100% ü 🚀"
AGENT_ID = "support bot {eu}?#"
GRAPH_ID = "pipeline {v1}"
LONG_SESSION = "long-conversation"
LONG_AGENT = "chatty"
LONG_COUNT = 130
PLAIN_SESSIONS = [f"plain-{n:02d}" for n in range(6)]
SNAPSHOT_SESSION = "snapshotted"
SNAPSHOT_AGENT = "snappy"

SCRIPT_TEXT = "<script>alert(1)</script>"
IMG_TEXT = "<img src=x onerror=alert(1)>"
REPLY_MARKDOWN = f"**Done**: here is the chart. {IMG_TEXT} and [a link](javascript:alert(1)) and {SCRIPT_TEXT}"
DOCUMENT_BYTES = b"%PDF-1.4\n% not really a pdf\n"


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid PNG of one colour."""
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


USER_IMAGE = png(24, 16, (31, 111, 235))
CHART_IMAGE = png(40, 20, (220, 60, 40))


@tool
def chart(title: str) -> dict[str, Any]:
    """Draw a chart.

    Args:
        title: Chart title.
    """
    return {
        "status": "success",
        "content": [
            {"text": f"Chart titled {title}"},
            {"image": {"format": "png", "source": {"bytes": CHART_IMAGE}}},
        ],
    }


@dataclass
class Seeded:
    """What :func:`seed` wrote."""

    session_ids: list[str]


def seed(client: Any, storage: Any = None) -> Seeded:
    """Write the test sessions (see the module docstring)."""
    manager = ValkeySessionManager(session_id=HOSTILE_SESSION, client=client, user_id="alice", tags=["support", "ui"])
    model = ScriptedModel(
        [
            Turn(text="Let me draw it.", tool_calls=(ToolCall("chart", {"title": IMG_TEXT}),)),
            REPLY_MARKDOWN,
            "Thanks, I read the document.",
        ]
    )
    agent = Agent(model=model, session_manager=manager, agent_id=AGENT_ID, tools=[chart], callback_handler=None)
    agent(
        [
            {"text": f"Please draw {SCRIPT_TEXT} now"},
            {"image": {"format": "png", "source": {"bytes": USER_IMAGE}}},
        ]
    )
    agent.state.set("favourite", "<b>teal</b>")
    agent(
        [
            {"text": "Here is the report."},
            {"document": {"format": "pdf", "name": "report <q3>", "source": {"bytes": DOCUMENT_BYTES}}},
        ]
    )
    drafter = Agent(name="drafter", agent_id="drafter", model=ScriptedModel(["a draft"]), callback_handler=None)
    builder = GraphBuilder()
    builder.add_node(drafter, "draft")
    builder.set_entry_point("draft")
    builder.set_graph_id(GRAPH_ID)
    builder.set_max_node_executions(5)
    builder.set_session_manager(manager)
    builder.build()("Write a draft.")

    repository = ValkeySessionRepository(client)
    long = ValkeySessionManager(session_id=LONG_SESSION, client=client, user_id="bob", tags=["bulk"])
    Agent(model=ScriptedModel([]), session_manager=long, agent_id=LONG_AGENT, callback_handler=None)
    for n in range(LONG_COUNT):
        role = "user" if n % 2 == 0 else "assistant"
        message = SessionMessage(message={"role": role, "content": [{"text": f"message number {n}"}]}, message_id=n)
        repository.create_message(LONG_SESSION, LONG_AGENT, message)

    for n, session_id in enumerate(PLAIN_SESSIONS):
        plain = ValkeySessionManager(
            session_id=session_id, client=client, user_id="carol" if n % 2 else "dave", tags=["plain"], ttl=3600
        )
        Agent(model=ScriptedModel([f"hello {n}"]), session_manager=plain, agent_id="a", callback_handler=None)("hi")

    ids = [HOSTILE_SESSION, LONG_SESSION, *PLAIN_SESSIONS]
    if storage is not None:
        seed_snapshots(storage)
        ids.append(SNAPSHOT_SESSION)
    return Seeded(ids)


def seed_snapshots(storage: Any, session_id: str = SNAPSHOT_SESSION) -> None:
    """An agent kept by the SDK's ``SnapshotSessionManager``: latest plus two immutable snapshots."""
    from strands.session import SnapshotSessionManager

    manager = SnapshotSessionManager(session_id, storage=storage, snapshot_trigger=lambda **kwargs: True)
    model = ScriptedModel(["first answer", f"second answer {SCRIPT_TEXT}"])
    agent = Agent(model=model, session_manager=manager, agent_id=SNAPSHOT_AGENT, callback_handler=None)
    agent.state.set("step", 1)
    agent([{"text": "first question"}, {"image": {"format": "png", "source": {"bytes": USER_IMAGE}}}])
    agent.state.set("step", 2)
    agent.state.set("topic", "<b>billing</b>")
    agent("second question")
