"""``svsm show`` and ``svsm sessions`` of Graph/Swarm sessions and of encrypted sessions."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import valkey
from strands import Agent
from strands.multiagent import GraphBuilder, Swarm
from typer.testing import Result

from strands_valkey_session_manager import ValkeySessionManager, ValkeySessionRepository
from strands_valkey_session_manager.cli.command import app
from strands_valkey_session_manager.encryption import FileKeyStore, KeyStoreProvider, LocalKeyProvider, ValkeyKeyStore
from strands_valkey_session_manager.scripted_model import ScriptedModel, ToolCall
from tests.cli_runner import cli_runner
from tests.servers import ServerProcess


@pytest.fixture
def cli(valkey9_server: ServerProcess) -> Iterator[Any]:
    runner = cli_runner()

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app, ["--url", valkey9_server.url, "--timeout", "2", *args], env=env)

    yield run


# -- Graph and Swarm ----------------------------------------------------------------------------------


def _swarm(client: Any, session_id: str, **manager: Any) -> None:
    researcher = Agent(
        name="researcher",
        agent_id="researcher",
        model=ScriptedModel(
            [ToolCall("handoff_to_agent", {"agent_name": "writer", "message": "Write it up."}), "Handed off."]
        ),
        callback_handler=None,
    )
    writer = Agent(name="writer", agent_id="writer", model=ScriptedModel(["The report."]), callback_handler=None)
    session_manager = ValkeySessionManager(session_id=session_id, client=client, **manager)
    Swarm([researcher, writer], session_manager=session_manager, id="team")("Write a short report.")


def _graph(client: Any, session_id: str) -> None:
    first = Agent(name="drafter", agent_id="drafter", model=ScriptedModel(["A draft."]), callback_handler=None)
    second = Agent(name="editor", agent_id="editor", model=ScriptedModel([]), callback_handler=None)
    builder = GraphBuilder()
    builder.add_node(first, "draft")
    builder.add_node(second, "edit")
    builder.add_edge("draft", "edit")
    builder.set_entry_point("draft")
    builder.set_max_node_executions(10)
    builder.set_graph_id("pipeline {v1}")
    builder.set_session_manager(ValkeySessionManager(session_id=session_id, client=client))
    with pytest.raises(Exception, match="turns"):  # the editor's model has nothing to say: the node fails
        builder.build()("Write and edit.")


def test_show_a_swarm_session(cli: Any, standalone_client: Any) -> None:
    _swarm(standalone_client, "swarm run")
    result = cli("show", "swarm run")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "(no agents)" not in out
    assert "orchestrator team · swarm · status completed" in out
    assert "node history: researcher → writer" in out
    assert "task: Write a short report." in out
    assert "researcher: completed" in out and "writer: completed · The report." in out


def test_show_a_swarm_interrupted_at_a_handoff(cli: Any, standalone_client: Any) -> None:
    from tests.test_agent_e2e import _Crash, _DieBeforeNode

    researcher = Agent(
        name="researcher",
        agent_id="researcher",
        model=ScriptedModel(
            [ToolCall("handoff_to_agent", {"agent_name": "writer", "message": "Write it up."}), "Handed off."]
        ),
        callback_handler=None,
    )
    writer = Agent(name="writer", agent_id="writer", model=ScriptedModel(["The report."]), callback_handler=None)
    manager = ValkeySessionManager(session_id="crashed", client=standalone_client)
    swarm = Swarm([researcher, writer], session_manager=manager, id="team", hooks=[_DieBeforeNode("writer")])
    with pytest.raises(_Crash):
        swarm("Write a short report.")
    out = cli("show", "crashed").stdout
    assert "orchestrator team · swarm · status executing" in out
    assert "node history: researcher" in out and "next nodes: writer" in out
    assert "handoff message: Write it up." in out


def test_show_a_graph_session(cli: Any, standalone_client: Any) -> None:
    _graph(standalone_client, "graph run")
    result = cli("show", "graph run")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "orchestrator pipeline {v1} · graph · status failed" in out
    assert "execution order: draft" in out
    assert "completed nodes: draft" in out and "failed nodes: edit" in out
    assert "next nodes: edit" in out
    assert "draft: completed · A draft." in out
    assert "edit: failed" in out


def test_sessions_count_orchestrators(cli: Any, standalone_client: Any) -> None:
    _swarm(standalone_client, "swarm run")
    _graph(standalone_client, "graph run")
    listed = json.loads(cli("sessions", "--json").stdout)
    assert {s["session_id"]: s["orchestrators"] for s in listed["sessions"]} == {
        "swarm run": ["team"],
        "graph run": ["pipeline {v1}"],
    }
    table = cli("sessions").stdout
    header = [c.strip() for c in table.splitlines()[0].split("┃")]
    row = [c.strip() for c in next(line for line in table.splitlines() if line.startswith("swarm run")).split("│")]
    assert row[header.index("orchestrators")] == "1"
    assert row[header.index("agents")] == "0"


# -- encrypted sessions ---------------------------------------------------------------------------------

WRAPPING_KEY = bytes(range(32))


def _provider() -> LocalKeyProvider:
    return LocalKeyProvider({"2026-01": WRAPPING_KEY}, "2026-01")


def _keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"current": "2026-01", "keys": {"2026-01": base64.b64encode(WRAPPING_KEY).decode()}}))
    path.chmod(0o600)
    return path


def _encrypted(client: Any, session_id: str, provider: Any) -> None:
    manager = ValkeySessionManager(session_id=session_id, client=client, key_provider=provider)
    agent = Agent(
        agent_id="bot", model=ScriptedModel(["Secret answer."]), session_manager=manager, callback_handler=None
    )
    agent.state.set("pin", "1234")
    agent("Secret question?")


def test_show_an_encrypted_session_without_its_key(cli: Any, standalone_client: Any) -> None:
    _encrypted(standalone_client, "sealed", _provider())
    result = cli("show", "sealed")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Secret" not in out and "1234" not in out
    assert "state: encrypted" in out
    assert "#0 · " in out and "#1 · " in out
    assert out.count("[encrypted]") == 2
    assert "--key-file" in result.stderr  # says how to open it


def test_show_an_encrypted_session_with_a_key_file(cli: Any, standalone_client: Any, tmp_path: Path) -> None:
    _encrypted(standalone_client, "sealed", _provider())
    path = _keys_file(tmp_path)
    for result in (
        cli("show", "sealed", "--key-file", str(path)),
        cli("show", "sealed", env={"SVSM_KEY_FILE": str(path)}),
    ):
        assert result.exit_code == 0, result.output
        assert "Secret question?" in result.stdout and "Secret answer." in result.stdout
        assert '"pin": "1234"' in result.stdout
        assert "[encrypted]" not in result.stdout
    exported = cli("export", "sealed", "--key-file", str(path))
    assert exported.exit_code == 0 and "Secret answer." in exported.stdout


def test_show_with_the_wrong_key_shows_records_as_encrypted(cli: Any, standalone_client: Any, tmp_path: Path) -> None:
    _encrypted(standalone_client, "sealed", _provider())
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"current": "2026-01", "keys": {"2026-01": base64.b64encode(bytes(32)).decode()}}))
    result = cli("show", "sealed", "--key-file", str(path))
    assert result.exit_code == 0, result.output
    assert "Secret" not in result.stdout and result.stdout.count("[encrypted]") == 2


def test_show_with_a_key_store_directory(cli: Any, standalone_client: Any, tmp_path: Path) -> None:
    _encrypted(standalone_client, "in store", KeyStoreProvider(FileKeyStore(tmp_path / "keys")))
    assert "[encrypted]" in cli("show", "in store").stdout
    result = cli("show", "in store", "--key-store-dir", str(tmp_path / "keys"))
    assert result.exit_code == 0, result.output
    assert "Secret answer." in result.stdout


def test_show_with_a_key_store_server(cli: Any, standalone_client: Any, valkey9_server: ServerProcess) -> None:
    key_url = f"{valkey9_server.url}/1"  # its own database here; a separate server in production
    key_client = valkey.Valkey.from_url(key_url)
    try:
        _encrypted(standalone_client, "in server", KeyStoreProvider(ValkeyKeyStore(key_client)))
    finally:
        key_client.close()
    assert "[encrypted]" in cli("show", "in server").stdout
    for result in (
        cli("show", "in server", "--key-store-url", key_url),
        cli("show", "in server", env={"SVSM_KEY_STORE_URL": key_url}),
    ):
        assert result.exit_code == 0, result.output
        assert "Secret answer." in result.stdout and "[encrypted]" not in result.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ('{"current": "a", "keys": {"a": "c2hvcnQ="}}', "32 bytes"),
        ('{"current": "b", "keys": {"a": "' + base64.b64encode(bytes(32)).decode() + '"}}', "current"),
        ('{"keys": {}}', "current"),
        ('{"current": "a", "keys": {"a": "@@@"}}', "base64"),
    ],
)
def test_a_bad_key_file_is_a_usage_error_without_key_material(
    cli: Any, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    result = cli("show", "x", "--key-file", str(path))
    assert result.exit_code == 2, result.output
    assert message in result.stderr and str(path) in result.stderr
    assert base64.b64encode(bytes(32)).decode() not in result.stderr
    missing = cli("show", "x", "--key-file", str(tmp_path / "missing.json"))
    assert missing.exit_code == 2


def test_show_an_encrypted_swarm_without_its_key(cli: Any, standalone_client: Any, tmp_path: Path) -> None:
    _swarm(standalone_client, "sealed swarm", key_provider=_provider())
    result = cli("show", "sealed swarm")
    assert result.exit_code == 0, result.output
    assert "orchestrator team · encrypted" in result.stdout
    opened = cli("show", "sealed swarm", "--key-file", str(_keys_file(tmp_path)))
    assert "orchestrator team · swarm · status completed" in opened.stdout


def test_delete_and_prune_with_a_key_store_destroy_the_keys(cli: Any, standalone_client: Any, tmp_path: Path) -> None:
    store = tmp_path / "keys"
    _encrypted(standalone_client, "gone", KeyStoreProvider(FileKeyStore(store)))
    _encrypted(standalone_client, "kept", KeyStoreProvider(FileKeyStore(store)))
    before = sorted(p.name for p in store.iterdir())
    assert len(before) == 2
    assert cli("delete", "gone", "--yes", "--key-store-dir", str(store)).exit_code == 0
    assert len(sorted(p.name for p in store.iterdir())) == 1
    assert "Secret answer." in cli("show", "kept", "--key-store-dir", str(store)).stdout
    key = ValkeySessionRepository(standalone_client).session_keys("kept").session
    standalone_client.hset(key, "updated", int(time.time() * 1000) - 3 * 86_400_000)
    assert cli("prune", "--older-than", "1d", "--yes", "--key-store-dir", str(store)).exit_code == 0
    assert list(store.iterdir()) == []
