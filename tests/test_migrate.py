"""Migrations from the SDK's FileSessionManager directory and from the original package's layout.

The file store is written by the SDK's own ``FileSessionManager`` under a real ``Agent``; the migrated
session is then restored by ``ValkeySessionManager`` under a new ``Agent`` and compared.

The original layout keeps RedisJSON documents, and no server on these machines has a JSON module
(Valkey 9, Valkey 8 and Redis 7 are plain builds). So what needs the module is tested for its failure
only, for real: ``migrate_from_seed`` and ``json_fetch`` on a plain server raise ``SeedSourceError``.
Everything else (key parsing, grouping, orphans, mapping records to the new store, idempotence) runs
through ``SeedLayoutReader`` with a ``fetch`` callable serving the SDK's ``to_dict()`` records from
memory, which is what ``JSON.GET`` followed by ``json.loads`` returns; key discovery (``SCAN``) is
tested on a real server with key names only.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import valkey
from strands import Agent, tool
from strands.agent.conversation_manager import SlidingWindowConversationManager
from strands.session.file_session_manager import FileSessionManager
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import SessionTooLargeError, ValkeySessionManager, ValkeySessionRepository
from strands_valkey_session_manager.migration import (
    FileStoreReader,
    MigrationProgress,
    MigrationReport,
    SeedKey,
    SeedLayoutReader,
    SeedSourceError,
    check_export_fits,
    json_fetch,
    migrate_from_file_store,
    migrate_from_seed,
    migrate_from_source,
    parse_seed_key,
    scan_seed_keys,
)
from strands_valkey_session_manager.scripted_model import ScriptedModel, ToolCall
from strands_valkey_session_manager.transfer import SessionExport

SESSION_ID = "tenant 7 {chat} ü"
AGENT_ID = "support-bot"
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


@tool
def lookup(city: str) -> str:
    """Weather of a city."""
    return f"sunny in {city}"


def _converse(manager: Any, agent_id: str = AGENT_ID) -> Agent:
    """A real conversation: a tool call, an image, state, and a sliding window that drops messages."""
    model = ScriptedModel([ToolCall("lookup", {"city": "Oslo"}), "It is sunny in Oslo.", "Noted.", "Bye."])
    agent = Agent(
        agent_id=agent_id,
        model=model,
        session_manager=manager,
        callback_handler=None,
        tools=[lookup],
        conversation_manager=SlidingWindowConversationManager(window_size=4),
    )
    agent([{"text": "Weather in Oslo? See the map."}, {"image": {"format": "png", "source": {"bytes": IMAGE}}}])
    agent.state.set("city", "Oslo")
    agent.state.set("visits", [1, 2, {"n": 3}])
    agent("Remember it.")
    agent("Goodbye.")
    return agent


def _file_store(directory: Path, session_id: str = SESSION_ID, agent_id: str = AGENT_ID) -> Agent:
    return _converse(FileSessionManager(session_id=session_id, storage_dir=str(directory)), agent_id)


def _restore(client: Any, session_id: str = SESSION_ID, agent_id: str = AGENT_ID) -> Agent:
    manager = ValkeySessionManager(session_id=session_id, client=client)
    return Agent(
        agent_id=agent_id,
        model=ScriptedModel([]),
        session_manager=manager,
        callback_handler=None,
        conversation_manager=SlidingWindowConversationManager(window_size=4),
    )


def _assert_same_agent(restored: Agent, original: Agent) -> None:
    assert restored.messages == original.messages
    assert restored.state.get() == original.state.get()
    assert restored.conversation_manager.get_state() == original.conversation_manager.get_state()


def _keys(client: Any) -> list[Any]:
    if hasattr(client, "get_nodes"):
        return list(client.keys("*", target_nodes=client.PRIMARIES))
    return list(client.keys("*"))


class _Orchestrator:
    id = "research graph"

    def serialize_state(self) -> dict[str, Any]:
        return {"type": "graph", "status": "completed", "completed_nodes": ["a", "b"], "big": 2**70}


# -- the FileSessionManager directory -------------------------------------------------------------


@pytest.mark.backends("valkey9", "cluster")
def test_file_store_session_restores_with_messages_state_and_window(client: Any, tmp_path: Path) -> None:
    original = _file_store(tmp_path)
    report = migrate_from_file_store(tmp_path, ValkeySessionRepository(client))
    assert (report.sessions_migrated, report.agents_migrated, report.messages_migrated) == (1, 1, 8)
    assert report.failures == {}
    restored = _restore(client)
    _assert_same_agent(restored, original)
    # The image's bytes came through the base64 wrapper of the file store unchanged.
    first = ValkeySessionRepository(client).list_messages(SESSION_ID, AGENT_ID, limit=1)[0]
    assert first.message["content"][1]["image"]["source"]["bytes"] == IMAGE


def test_file_store_keeps_created_at_and_orchestrator_state(standalone_client: Any, tmp_path: Path) -> None:
    manager = FileSessionManager(session_id="s", storage_dir=str(tmp_path))
    manager.create_multi_agent("s", _Orchestrator())  # type: ignore[arg-type]
    _converse(manager)
    source = json.loads((tmp_path / "session_s" / "session.json").read_text())
    repo = ValkeySessionRepository(standalone_client)
    report = migrate_from_file_store(tmp_path, repo)
    assert report.multi_agents_migrated == 1
    assert repo.read_multi_agent("s", "research graph") == _Orchestrator().serialize_state()
    session = repo.read_session("s")
    assert session is not None and session.created_at == source["created_at"]
    agent_file = tmp_path / "session_s" / "agents" / f"agent_{AGENT_ID}" / "agent.json"
    agent = repo.read_agent("s", AGENT_ID)
    assert agent is not None and agent.created_at == json.loads(agent_file.read_text())["created_at"]


def test_dry_run_counts_and_writes_nothing(standalone_client: Any, tmp_path: Path) -> None:
    _file_store(tmp_path)
    _file_store(tmp_path, session_id="second")
    report = migrate_from_file_store(tmp_path, ValkeySessionRepository(standalone_client), dry_run=True)
    assert report.dry_run
    assert (report.sessions_found, report.sessions_migrated, report.messages_migrated) == (2, 2, 16)
    assert _keys(standalone_client) == []


def test_second_run_skips_what_is_complete(standalone_client: Any, tmp_path: Path) -> None:
    _file_store(tmp_path)
    repo = ValkeySessionRepository(standalone_client)
    migrate_from_file_store(tmp_path, repo)
    again = migrate_from_file_store(tmp_path, repo)
    assert (again.sessions_migrated, again.sessions_skipped) == (0, 1)
    assert (again.agents_skipped, again.messages_skipped) == (1, 8)
    assert again.messages_migrated == 0


def test_partial_copy_left_by_an_interrupted_run_is_rewritten(standalone_client: Any, tmp_path: Path) -> None:
    original = _file_store(tmp_path)
    repo = ValkeySessionRepository(standalone_client)
    # What an interrupted write_export leaves: the session and agent, only some of the messages.
    full = FileStoreReader(tmp_path).read(SESSION_ID, MigrationReport())
    messages = {AGENT_ID: full.messages[AGENT_ID][:3]}
    truncated = SessionExport(session=full.session, agents=full.agents, messages=messages)
    repo.write_export(truncated)

    dry = migrate_from_file_store(tmp_path, repo, dry_run=True)
    assert (dry.sessions_migrated, dry.sessions_replaced) == (1, 1)
    assert len(repo.list_messages(SESSION_ID, AGENT_ID)) == 3

    report = migrate_from_file_store(tmp_path, repo)
    assert (report.sessions_migrated, report.sessions_replaced, report.sessions_skipped) == (1, 1, 0)
    _assert_same_agent(_restore(standalone_client), original)


def test_session_that_went_on_in_the_target_is_not_replaced(standalone_client: Any, tmp_path: Path) -> None:
    _file_store(tmp_path)
    repo = ValkeySessionRepository(standalone_client)
    migrate_from_file_store(tmp_path, repo)
    more = SessionMessage(message={"role": "user", "content": [{"text": "later"}]}, message_id=8)
    repo.create_message(SESSION_ID, AGENT_ID, more)
    report = migrate_from_file_store(tmp_path, repo)
    assert report.sessions_skipped == 1
    assert len(repo.list_messages(SESSION_ID, AGENT_ID)) == 9


def test_unreadable_session_fails_alone(standalone_client: Any, tmp_path: Path) -> None:
    _file_store(tmp_path, session_id="good")
    _file_store(tmp_path, session_id="bad")
    (tmp_path / "session_bad" / "agents" / f"agent_{AGENT_ID}" / "messages" / "message_2.json").write_text("{oops")
    events: list[MigrationProgress] = []
    report = migrate_from_file_store(tmp_path, ValkeySessionRepository(standalone_client), on_session=events.append)
    assert list(report.failures) == ["bad"]
    assert "message_2.json" in report.failures["bad"]
    assert report.sessions_migrated == 1
    assert [(e.session_id, e.outcome, e.done, e.total) for e in events] == [
        ("bad", "failed", 1, 2),
        ("good", "migrated", 2, 2),
    ]
    assert events[0].error == report.failures["bad"]


def test_session_ids_limits_the_migration(standalone_client: Any, tmp_path: Path) -> None:
    for session_id in ("a", "b", "c"):
        _file_store(tmp_path, session_id=session_id)
    repo = ValkeySessionRepository(standalone_client)
    report = migrate_from_file_store(tmp_path, repo, session_ids=["b", "missing"])
    assert (report.sessions_found, report.sessions_migrated) == (1, 1)
    assert [repo.read_session(s) is not None for s in ("a", "b", "c")] == [False, True, False]


def test_symlinks_are_refused_and_strays_counted(standalone_client: Any, tmp_path: Path) -> None:
    _file_store(tmp_path)
    messages = tmp_path / f"session_{SESSION_ID}" / "agents" / f"agent_{AGENT_ID}" / "messages"
    stolen = tmp_path / "elsewhere.json"
    shutil.copy(messages / "message_1.json", stolen)
    (messages / "message_1.json").unlink()
    (messages / "message_1.json").symlink_to(stolen)
    (messages / "notes.txt").write_text("not a message")
    (tmp_path / "README").write_text("stray")
    report = migrate_from_file_store(tmp_path, ValkeySessionRepository(standalone_client))
    assert "symlink" in report.failures[SESSION_ID]
    assert report.unrecognised == 3  # README, elsewhere.json, notes.txt
    assert _keys(standalone_client) == []


def test_record_over_the_size_limit_fails_its_session_before_any_write(standalone_client: Any, tmp_path: Path) -> None:
    _file_store(tmp_path)
    small = ValkeySessionRepository(standalone_client, max_record_bytes=400)
    dry = migrate_from_file_store(tmp_path, small, dry_run=True)
    assert "max_record_bytes=400" in dry.failures[SESSION_ID]
    report = migrate_from_file_store(tmp_path, small)
    assert "message 0 of agent 'support-bot'" in report.failures[SESSION_ID]
    assert report.sessions_migrated == 0
    assert _keys(standalone_client) == []


def test_partial_copy_stays_when_the_rewrite_would_not_fit(standalone_client: Any, tmp_path: Path) -> None:
    _file_store(tmp_path)
    full = FileStoreReader(tmp_path).read(SESSION_ID, MigrationReport())
    ValkeySessionRepository(standalone_client).write_export(
        SessionExport(session=full.session, agents=full.agents, messages={AGENT_ID: full.messages[AGENT_ID][4:5]})
    )
    report = migrate_from_file_store(tmp_path, ValkeySessionRepository(standalone_client, max_record_bytes=400))
    assert SESSION_ID in report.failures
    info = ValkeySessionRepository(standalone_client).session_info(SESSION_ID)
    assert info is not None and info.message_counts == {AGENT_ID: 1}


def test_check_export_fits_names_the_record(standalone_client: Any) -> None:
    session = Session(session_id="s", session_type=SessionType.AGENT)
    agent = SessionAgent(agent_id="a", state={"blob": "x" * 500}, conversation_manager_state={})
    export = SessionExport(session=session, agents=[agent], messages={"a": []})
    check_export_fits(ValkeySessionRepository(standalone_client), export)
    with pytest.raises(SessionTooLargeError, match="agent 'a' is"):
        check_export_fits(ValkeySessionRepository(standalone_client, max_record_bytes=500), export)


def test_missing_directory_is_an_error(standalone_client: Any, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        migrate_from_file_store(tmp_path / "nope", ValkeySessionRepository(standalone_client))


# -- the original package's layout -----------------------------------------------------------------


def _seed_layout(directory: Path, session_id: str = "chat-1", agent_id: str = AGENT_ID) -> tuple[dict[str, Any], Agent]:
    """The old layout's keys and values, made of the records a real Agent wrote via the SDK.

    The old package stored exactly ``to_dict()`` of each record (as the SDK's file store does), so
    the file store's JSON files are the values ``JSON.GET`` would return for the same conversation.
    """
    agent = _file_store(directory, session_id=session_id, agent_id=agent_id)
    root = directory / f"session_{session_id}"
    values: dict[str, Any] = {f"session:{session_id}": json.loads((root / "session.json").read_text())}
    agent_dir = root / "agents" / f"agent_{agent_id}"
    values[f"session:{session_id}:agent:{agent_id}"] = json.loads((agent_dir / "agent.json").read_text())
    for path in (agent_dir / "messages").iterdir():
        record = json.loads(path.read_text())
        values[f"session:{session_id}:agent:{agent_id}:message:{record['message_id']}"] = record
    return values, agent


def _reader(values: dict[str, Any], extra_keys: Sequence[str] = ()) -> SeedLayoutReader:
    return SeedLayoutReader([*values, *extra_keys], _fetcher(values), fetch_batch=3)


def _fetcher(values: dict[str, Any]) -> Callable[[Sequence[str]], list[Any]]:
    def fetch(keys: Sequence[str]) -> list[Any]:
        return [json.loads(json.dumps(values[k])) if k in values else None for k in keys]

    return fetch


@pytest.mark.parametrize(
    ("key", "parsed"),
    [
        ("session:abc", SeedKey("session", "abc")),
        ("session:abc:agent:bot", SeedKey("agent", "abc", "bot")),
        ("session:abc:agent:bot:message:12", SeedKey("message", "abc", "bot", 12)),
        ("session:abc:agent:bot:message:-1", SeedKey("message", "abc", "bot", -1)),
        ("session:a*b?[c]:agent:{x}", SeedKey("agent", "a*b?[c]", "{x}")),
        ("session:", None),
        ("session:abc:", None),
        ("session:abc:agent:", None),
        ("session:abc:agents:bot", None),
        ("session:abc:agent:bot:message:x1", None),
        ("session:abc:agent:bot:message:+1", None),
        ("session:abc:agent:bot:message:01", None),
        ("session:abc:agent:bot:message:1_0", None),
        ("session:abc:agent:bot:msg:1", None),
        ("session:a:b", None),
        ("session:a:agent:b:c:message:1", None),
        ("sessions:abc", None),
        ("strands:{abc}:session", None),
    ],
)
def test_seed_keys_are_parsed_exactly(key: str, parsed: SeedKey | None) -> None:
    assert parse_seed_key(key) == parsed


@pytest.mark.backends("valkey9", "cluster")
def test_seed_layout_session_restores_with_messages_and_state(client: Any, tmp_path: Path) -> None:
    values, original = _seed_layout(tmp_path)
    report = migrate_from_source(_reader(values), ValkeySessionRepository(client))
    assert (report.sessions_migrated, report.agents_migrated, report.messages_migrated) == (1, 1, 8)
    assert report.unrecognised == 0 and report.failures == {}
    _assert_same_agent(_restore(client, "chat-1"), original)


def test_seed_prefix_sibling_ids_stay_apart(standalone_client: Any, tmp_path: Path) -> None:
    abc, _ = _seed_layout(tmp_path / "1", session_id="abc")
    abcd, _ = _seed_layout(tmp_path / "2", session_id="abcd", agent_id="other")
    repo = ValkeySessionRepository(standalone_client)
    report = migrate_from_source(_reader({**abc, **abcd}), repo)
    assert report.sessions_migrated == 2
    first, second = repo.session_info("abc"), repo.session_info("abcd")
    assert first is not None and first.message_counts == {AGENT_ID: 8}
    assert second is not None and second.message_counts == {"other": 8}


def test_seed_orphans_and_strangers_are_counted_not_migrated(standalone_client: Any, tmp_path: Path) -> None:
    values, _ = _seed_layout(tmp_path)
    strays = [
        "session:gone:agent:bot",  # its session key expired (the old package expired keys one by one)
        "session:gone:agent:bot:message:0",
        "session:chat-1:agent:ghost:message:0",  # a message without its agent
        "session:weird:id:with:colons",
    ]
    repo = ValkeySessionRepository(standalone_client)
    report = migrate_from_source(_reader(values, strays), repo)
    assert report.sessions_found == 1 and report.sessions_migrated == 1
    assert report.unrecognised == 4
    assert sorted(report.unrecognised_examples) == sorted(strays)
    assert repo.read_session("gone") is None


def test_seed_records_that_vanished_after_the_scan(standalone_client: Any, tmp_path: Path) -> None:
    values, _ = _seed_layout(tmp_path)
    listed = [*values, "session:chat-1:agent:bot2", "session:expired"]
    reader = SeedLayoutReader(listed, _fetcher(values))
    repo = ValkeySessionRepository(standalone_client)
    report = migrate_from_source(reader, repo)
    assert report.sessions_migrated == 1
    assert "vanished" in report.failures["expired"]
    assert report.unrecognised == 1  # the agent key that was gone when read


def test_seed_record_of_the_wrong_shape_fails_its_session(standalone_client: Any, tmp_path: Path) -> None:
    values, _ = _seed_layout(tmp_path)
    values["session:chat-1:agent:support-bot:message:3"] = {"message_id": 3}
    values["session:other"] = Session(session_id="other", session_type=SessionType.AGENT).to_dict()
    values["session:liar"] = Session(session_id="someone-else", session_type=SessionType.AGENT).to_dict()
    report = migrate_from_source(_reader(values), ValkeySessionRepository(standalone_client))
    assert sorted(report.failures) == ["chat-1", "liar"]
    assert "message:3" in report.failures["chat-1"]
    assert report.sessions_migrated == 1  # "other", a session with no agents


def test_seed_dry_run_writes_nothing_and_rerun_skips(standalone_client: Any, tmp_path: Path) -> None:
    values, _ = _seed_layout(tmp_path)
    repo = ValkeySessionRepository(standalone_client)
    dry = migrate_from_source(_reader(values), repo, dry_run=True)
    assert (dry.sessions_migrated, dry.messages_migrated) == (1, 8)
    assert _keys(standalone_client) == []
    migrate_from_source(_reader(values), repo)
    again = migrate_from_source(_reader(values), repo)
    assert (again.sessions_skipped, again.messages_skipped, again.sessions_migrated) == (1, 8, 0)


def test_seed_agent_record_maps_to_the_same_agent(standalone_client: Any) -> None:
    agent = SessionAgent(agent_id="a", state={"blob": b"\x00\xff"}, conversation_manager_state={"n": 1})
    values = {
        "session:s": Session(session_id="s", session_type=SessionType.AGENT).to_dict(),
        "session:s:agent:a": agent.to_dict(),
    }
    repo = ValkeySessionRepository(standalone_client)
    migrate_from_source(_reader(values), repo)
    stored = repo.read_agent("s", "a")
    assert stored is not None
    assert (stored.state, stored.conversation_manager_state, stored.created_at) == (
        agent.state,
        agent.conversation_manager_state,
        agent.created_at,
    )


def test_scan_finds_exactly_the_old_layouts_keys(standalone_client: Any) -> None:
    """Key discovery only: the values are never read (they are plain strings here, not JSON documents)."""
    names = ["session:a", "session:a:agent:b", "session:a:agent:b:message:0", "session:x:y"]
    for name in [*names, "sessions:a", "strands:{a}:session", "other"]:
        standalone_client.set(name, "-")
    assert sorted(scan_seed_keys(standalone_client, count=2)) == sorted(names)


@pytest.mark.backends("valkey9", "redis7", "cluster")
def test_migrate_from_seed_needs_the_json_module(backend: Any, tmp_path: Path) -> None:
    kind = "valkey-cluster-str" if backend.is_cluster else "valkey-py-bytes"
    source = backend.make_client(kind)
    try:
        with pytest.raises(SeedSourceError, match=r"no JSON module.*RedisJSON or valkey-json"):
            migrate_from_seed(source, ValkeySessionRepository(source))
        assert _keys(source) == []
    finally:
        source.close()


def test_json_fetch_on_a_plain_server_names_the_missing_module(standalone_client: Any) -> None:
    with pytest.raises(SeedSourceError, match="JSON module"):
        json_fetch(standalone_client)(["session:a", "session:a:agent:b"])


def test_unreachable_source_is_not_mistaken_for_a_missing_module() -> None:
    source = valkey.Valkey(port=1, socket_connect_timeout=0.5)
    with pytest.raises(valkey.exceptions.ConnectionError):
        migrate_from_seed(source, ValkeySessionRepository(source))
