"""Fork, export and import: whole sessions copied exactly, bad input refused before anything is written."""

from __future__ import annotations

import json
from typing import Any

import pytest
from strands.types.exceptions import SessionException
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import SessionNotFoundError, ValkeySessionRepository, transfer
from tests.roundtrips import count_round_trips

IMAGE = bytes(range(256))


def _fill(repo: ValkeySessionRepository, session_id: str = "src", messages: int = 5) -> None:
    repo.create_session(Session(session_id=session_id, session_type=SessionType.AGENT), user_id="u", tags=["t"])
    for agent_id in ["a", "b:{1}"]:
        repo.create_agent(
            session_id, SessionAgent(agent_id=agent_id, state={"k": agent_id}, conversation_manager_state={})
        )
        for i in range(messages):
            content: list[Any] = [{"text": f"{agent_id}-{i}"}]
            if i == 1:
                content.append({"image": {"format": "png", "source": {"bytes": IMAGE}}})
            repo.create_message(
                session_id, agent_id, SessionMessage(message={"role": "user", "content": content}, message_id=i)
            )
    repo.create_multi_agent(session_id, _Orchestrator())  # type: ignore[arg-type]


class _Orchestrator:
    id = "swarm"

    def serialize_state(self) -> dict[str, Any]:
        return {"status": "completed", "big": 2**70}


def _snapshot(repo: ValkeySessionRepository, session_id: str) -> tuple[Any, ...]:
    agents = {a: repo.read_agent(session_id, a) for a in ["a", "b:{1}"]}
    messages = {a: repo.list_messages(session_id, a) for a in ["a", "b:{1}"]}
    return agents, messages, repo.read_multi_agent(session_id, "swarm")


def test_fork_copies_everything_in_two_round_trips(client: Any) -> None:
    repo = ValkeySessionRepository(client)
    _fill(repo)
    with count_round_trips() as trips:
        repo.fork_session("src", "dst")
    # Two pipelines: DUMP on the source's slot, then catalog + RESTORE script. On a cluster each
    # pipeline fans out to at most one request per primary (three here).
    if hasattr(client, "get_nodes"):
        assert trips.value <= 6
    else:
        assert trips.value == 2
    assert _snapshot(repo, "dst") == _snapshot(repo, "src")
    info = repo.session_info("dst")
    assert info is not None
    assert info.message_counts == {"a": 5, "b:{1}": 5}
    assert (info.user_id, info.tags) == ("u", ("t",))
    assert "dst" in [s.session_id for s in repo.list_sessions(user_id="u").sessions]
    # The copies are independent.
    repo.delete_session("src")
    assert len(repo.list_messages("dst", "a")) == 5


def test_fork_copies_everything_on_every_client(store_client: Any) -> None:
    """The copy half of the test above, on GLIDE too (whose round trips it cannot count)."""
    repo = ValkeySessionRepository(store_client)
    _fill(repo)
    repo.fork_session("src", "dst")
    assert _snapshot(repo, "dst") == _snapshot(repo, "src")
    info = repo.session_info("dst")
    assert info is not None
    assert info.message_counts == {"a": 5, "b:{1}": 5}
    assert (info.user_id, info.tags) == ("u", ("t",))
    repo.delete_session("src")
    assert len(repo.list_messages("dst", "a")) == 5


def test_fork_refuses_missing_source_and_existing_target(store_client: Any) -> None:
    repo = ValkeySessionRepository(store_client)
    _fill(repo)
    _fill(repo, "other")
    with pytest.raises(SessionNotFoundError, match="does not exist"):  # a SessionException
        repo.fork_session("missing", "x")
    with pytest.raises(SessionException, match="already exists"):
        repo.fork_session("src", "other")
    with pytest.raises(ValueError, match="onto itself"):
        repo.fork_session("src", "src")
    assert repo.list_messages("other", "a")[0].message["content"][0]["text"] == "a-0"


def test_export_import_round_trip(store_client: Any) -> None:
    repo = ValkeySessionRepository(store_client)
    _fill(repo)
    exported = repo.export_session("src")
    lines = [json.loads(line) for line in exported.splitlines()]
    assert [line["kind"] for line in lines][:2] == ["session", "agent"]
    assert lines[0]["user_id"] == "u"
    before = _snapshot(repo, "src")
    with pytest.raises(SessionException, match="overwrite"):
        repo.import_session(exported)
    repo.delete_session("src")
    assert repo.import_session(exported) == "src"
    assert _snapshot(repo, "src") == before
    assert repo.import_session(exported.encode(), overwrite=True) == "src"
    assert _snapshot(repo, "src") == before
    assert repo.list_messages("src", "a")[1].message["content"][1]["image"]["source"]["bytes"] == IMAGE


@pytest.mark.validation
@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty export"),
        ("not json\n", "line 1"),
        ('{"kind": "agent", "agent": {}}\n', "first line must be the session"),
        ('{"kind": "session", "format": 99, "session": {}}\n', "unsupported format"),
    ],
)
def test_import_rejects_bad_input_and_writes_nothing(store_client: Any, text: str, match: str) -> None:
    repo = ValkeySessionRepository(store_client)
    with pytest.raises(ValueError, match=match):
        repo.import_session(text)
    assert repo.list_sessions().sessions == []


@pytest.mark.validation
def test_import_rejects_bad_record_naming_the_line(store_client: Any) -> None:
    repo = ValkeySessionRepository(store_client)
    _fill(repo)
    lines = repo.export_session("src").splitlines()
    repo.delete_session("src")
    broken = json.loads(lines[2])
    broken["message"]["message_id"] = "three"
    lines[2] = json.dumps(broken)
    with pytest.raises(ValueError, match="line 3"):
        repo.import_session("\n".join(lines))
    assert repo.read_session("src") is None


def test_export_of_missing_session_raises(store_client: Any) -> None:
    with pytest.raises(SessionNotFoundError, match="does not exist"):  # a SessionException
        ValkeySessionRepository(store_client).export_session("missing")


@pytest.mark.backends("valkey9", "redis7", "cluster")
def test_fork_drops_the_sources_leases_and_fences(client: Any) -> None:
    """A fork is a new session: the source owner's leases (``lease:<agent>``) and fencing counters
    (``fence:<agent>``) stay with the source, so another owner can take the fork's agents at once."""
    from strands import Agent

    from strands_valkey_session_manager import SessionLockedError, ValkeySessionManager
    from strands_valkey_session_manager.scripted_model import ScriptedModel

    owner = ValkeySessionManager(session_id="src", client=client, lock=True)
    Agent(agent_id="a", model=ScriptedModel(["hi back"]), session_manager=owner, callback_handler=None)("hi")
    owner.fork_session("src", "dst")
    fields = {(k.decode() if isinstance(k, bytes) else k) for k in client.hkeys(owner.session_keys("dst").session)}
    assert not [f for f in fields if f.startswith(("lease:", "fence:"))], fields
    assert {"v:a", "n:a"} <= fields
    rival = ValkeySessionManager(session_id="dst", client=client, lock=True)
    agent = Agent(agent_id="a", model=ScriptedModel(["again"]), session_manager=rival, callback_handler=None)
    assert len(agent.messages) == 2
    agent("once more")
    assert len(rival.list_messages("dst", "a")) == 4
    # The source is still its owner's.
    with pytest.raises(SessionLockedError):
        Agent(
            agent_id="a",
            model=ScriptedModel([]),
            session_manager=ValkeySessionManager(session_id="src", client=client, lock=True),
            callback_handler=None,
        )
    owner.close()
    rival.close()


def _bad_export(change: str) -> tuple[list[str], int]:
    """A valid export with one record made unrestorable; returns its lines and the bad line's number."""
    session = {
        "kind": "session",
        "format": 1,
        "session": {"session_id": "imp", "session_type": "AGENT", "created_at": _NOW, "updated_at": _NOW},
        "user_id": None,
        "tags": [],
    }
    agent = {
        "kind": "agent",
        "agent": {
            "agent_id": "a",
            "state": {},
            "conversation_manager_state": {"__name__": "SlidingWindowConversationManager", "removed_message_count": 0},
            "_internal_state": {"interrupt_state": {"interrupts": {}, "context": {}, "activated": False}},
            "created_at": _NOW,
            "updated_at": _NOW,
        },
    }
    messages = [
        {
            "kind": "message",
            "agent_id": "a",
            "message": {
                "message": {"role": "user", "content": [{"text": f"m{i}"}]},
                "message_id": i,
                "redact_message": None,
                "created_at": _NOW,
                "updated_at": _NOW,
            },
        }
        for i in range(3)
    ]
    records: list[dict[str, Any]] = [session, agent, *messages]
    bad = {
        "message-is-a-string": (4, lambda: messages[1]["message"].__setitem__("message", "hello")),
        "message-without-role": (4, lambda: messages[1]["message"]["message"].pop("role")),
        "content-not-a-list": (4, lambda: messages[1]["message"]["message"].__setitem__("content", "x")),
        "redaction-not-a-message": (4, lambda: messages[1]["message"].__setitem__("redact_message", [1])),
        "empty-conversation-manager-state": (
            2,
            lambda: agent["agent"].__setitem__("conversation_manager_state", {}),
        ),
        "agent-created-at-a-number": (2, lambda: agent["agent"].__setitem__("created_at", 1_700_000_000)),
        "agent-state-a-list": (2, lambda: agent["agent"].__setitem__("state", [])),
        "agent-without-state": (2, lambda: agent["agent"].pop("state")),
        "message-created-at-not-a-time": (4, lambda: messages[1]["message"].__setitem__("created_at", "yesterday")),
        "session-created-at-a-number": (1, lambda: session["session"].__setitem__("created_at", 5)),
        "duplicate-message-id": (5, lambda: messages[2]["message"].__setitem__("message_id", 1)),
    }
    line, damage = bad[change]
    damage()
    return [json.dumps(r) for r in records], line


_NOW = "2024-05-01T10:00:00+00:00"
BAD_RECORDS = [
    "message-is-a-string",
    "message-without-role",
    "content-not-a-list",
    "redaction-not-a-message",
    "empty-conversation-manager-state",
    "agent-created-at-a-number",
    "agent-state-a-list",
    "agent-without-state",
    "message-created-at-not-a-time",
    "session-created-at-a-number",
    "duplicate-message-id",
]


@pytest.mark.backends("valkey9")
def test_a_valid_hand_written_export_imports_and_restores(client: Any) -> None:
    from strands import Agent

    from strands_valkey_session_manager import ValkeySessionManager
    from strands_valkey_session_manager.scripted_model import ScriptedModel

    good, _ = _bad_export("duplicate-message-id")
    good[4] = good[4].replace('"message_id": 1', '"message_id": 2')  # undo the duplicate
    assert ValkeySessionRepository(client).import_session("\n".join(good)) == "imp"
    manager = ValkeySessionManager(session_id="imp", client=client)
    agent = Agent(agent_id="a", model=ScriptedModel([]), session_manager=manager, callback_handler=None)
    assert [m["content"][0]["text"] for m in agent.messages] == ["m0", "m1", "m2"]


@pytest.mark.validation
@pytest.mark.backends("valkey9", "cluster")
@pytest.mark.parametrize("change", BAD_RECORDS)
def test_import_refuses_a_record_that_cannot_be_restored_naming_its_line(client: Any, change: str) -> None:
    repo = ValkeySessionRepository(client)
    lines, number = _bad_export(change)
    with pytest.raises(ValueError, match=f"line {number}:"):
        repo.import_session("\n".join(lines))
    assert repo.read_session("imp") is None
    assert repo.list_sessions().sessions == []
    # Over an existing session too: refused before anything is deleted or written.
    repo.create_session(Session(session_id="imp", session_type=SessionType.AGENT))
    with pytest.raises(ValueError, match=f"line {number}:"):
        repo.import_session("\n".join(lines), overwrite=True)
    assert repo.read_session("imp") is not None


# -- import that overwrites: all or nothing -----------------------------------------------------------


def _big_export(client: Any, session_id: str, messages: int, size: int) -> str:
    """An export of a session ``session_id`` (built under another prefix) with large messages."""
    builder = ValkeySessionRepository(client, key_prefix="builder")
    builder.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))
    builder.create_agent(session_id, SessionAgent(agent_id="a", state={"new": True}, conversation_manager_state={}))
    for i in range(messages):
        text = f"new-{i}-" + "x" * size
        message = SessionMessage(message={"role": "user", "content": [{"text": text}]}, message_id=i)
        builder.create_message(session_id, "a", message)
    exported = builder.export_session(session_id)
    builder.delete_session(session_id)
    return exported


def _assert_original_intact(repo: ValkeySessionRepository, client: Any, before: tuple[Any, ...]) -> None:
    assert _snapshot(repo, "src") == before
    info = repo.session_info("src")
    assert info is not None and info.message_counts == {"a": 5, "b:{1}": 5}
    page = repo.list_sessions()
    assert [s.session_id for s in page.sessions] == ["src"] and page.damaged == []


@pytest.mark.parametrize("flavour", ["valkey9", "redis7"])
def test_overwrite_that_runs_out_of_memory_keeps_the_original(flavour: str) -> None:
    import valkey

    from strands_valkey_session_manager import SessionStoreUnavailableError
    from tests.servers import start_server

    with start_server(flavour, extra_args=["--maxmemory-policy", "noeviction"]) as server:
        client: Any = valkey.Valkey(server.host, server.port)
        try:
            repo = ValkeySessionRepository(client, retries=0)
            exported = _big_export(client, "src", messages=3000, size=2000)
            _fill(repo)
            before = _snapshot(repo, "src")
            used = int(client.info("memory")["used_memory"])
            client.config_set("maxmemory", used + 2 * 1024 * 1024)  # room for a third of the import
            with pytest.raises(SessionStoreUnavailableError, match=r"OOM|memory"):
                repo.import_session(exported, overwrite=True)
            _assert_original_intact(repo, client, before)
            assert client.exists(*repo._layout.staging("src").all()) == 0  # cleaned after the failure
            client.config_set("maxmemory", 0)
            assert repo.import_session(exported, overwrite=True) == "src"
            assert len(repo.list_messages("src", "a")) == 3000
            assert repo.read_agent("src", "b:{1}") is None
            assert repo.read_multi_agent("src", "swarm") is None
            assert client.exists(*repo._layout.staging("src").all()) == 0
        finally:
            client.close()


@pytest.mark.backends("valkey9", "redis7", "cluster")
def test_overwrite_abandoned_mid_import_keeps_the_original(backend: Any) -> None:
    """The importing process dies part way (its connections killed, its plan never resumed): the
    original is intact and alone in the catalog; the staged part is unlisted, expires, and the next
    import clears it."""
    import valkey

    client = backend.make_client("valkey-cluster-bytes" if backend.is_cluster else "valkey-py-bytes")
    try:
        repo = ValkeySessionRepository(client)
        exported = _big_export(client, "src", messages=1200, size=10)
        _fill(repo)
        before = _snapshot(repo, "src")
        plan = transfer.p_import_session(repo, exported, True)
        reply = None
        for _ in range(3):  # staging, then two batches of 500 writes
            step = plan.send(reply)
            reply = repo._db.execute(step.call)
        plan.close()
        for node in backend.nodes:  # the importer's connections die with it
            admin: Any = valkey.Valkey(node.host, node.port)
            admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            admin.close()
        stage = repo._layout.staging("src")
        assert client.exists(stage.session, stage.messages) == 2
        assert 0 < client.pttl(stage.session) <= 3_600_000  # leftovers expire by themselves
        _assert_original_intact(repo, client, before)
        assert repo.import_session(exported, overwrite=True) == "src"
        assert len(repo.list_messages("src", "a")) == 1200
        assert client.exists(*stage.all()) == 0
        assert [s.session_id for s in repo.list_sessions().sessions] == ["src"]
    finally:
        client.close()


@pytest.mark.backends("valkey9", "cluster")
def test_import_over_a_damaged_session_needs_overwrite(client: Any) -> None:
    from strands_valkey_session_manager import DamagedSessionError

    repo = ValkeySessionRepository(client)
    _fill(repo)
    exported = repo.export_session("src")
    _fill(repo, "other")
    client.delete(repo.session_keys("src").session)  # evicted alone: the rest of the conversation remains
    with pytest.raises(DamagedSessionError, match="remain"):
        repo.import_session(exported)
    with pytest.raises(DamagedSessionError, match="remain"):
        repo.fork_session("other", "src")
    assert client.exists(repo.session_keys("src").messages) == 1  # nothing destroyed
    assert repo.import_session(exported, overwrite=True) == "src"
    info = repo.session_info("src")
    assert info is not None and info.message_counts == {"a": 5, "b:{1}": 5}
    assert [m.message["content"][0]["text"] for m in repo.list_messages("src", "a")] == [f"a-{i}" for i in range(5)]
