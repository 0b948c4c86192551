"""Exports carry lifetime, owner and tags and end with a checked end line; imports refuse damaged files."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from strands import Agent
from typer.testing import Result

from strands_valkey_session_manager import ValkeySessionManager, ValkeySessionRepository
from strands_valkey_session_manager.cli.command import app
from strands_valkey_session_manager.scripted_model import ScriptedModel
from tests.cli_runner import cli_runner
from tests.servers import ServerProcess

SESSION_ID = "kept {1}"


@pytest.fixture
def cli(valkey9_server: ServerProcess) -> Iterator[Any]:
    runner = cli_runner()

    def run(*args: str, input: str | None = None) -> Result:
        return runner.invoke(app, ["--url", valkey9_server.url, "--timeout", "2", *args], input=input)

    yield run


def _conversation(client: Any, **manager: Any) -> None:
    session_manager = ValkeySessionManager(session_id=SESSION_ID, client=client, **manager)
    agent = Agent(
        agent_id="bot", model=ScriptedModel(["One.", "Two."]), session_manager=session_manager, callback_handler=None
    )
    agent("First?")
    agent("Second?")


def _lifetime(client: Any) -> list[Any]:
    key = ValkeySessionRepository(client).session_keys(SESSION_ID).session
    return [None if v is None else int(v) for v in client.hmget(key, "ttl", "deadline")]


def test_export_carries_lifetime_owner_tags_and_an_end_line(cli: Any, standalone_client: Any, tmp_path: Path) -> None:
    _conversation(standalone_client, ttl=3600, max_age=86400, user_id="alice", tags=["eu", "vip"])
    ttl, deadline = _lifetime(standalone_client)
    assert ttl == 3_600_000 and deadline > time.time() * 1000
    path = tmp_path / "s.jsonl"
    assert cli("export", SESSION_ID, "-o", str(path)).exit_code == 0
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    head, end = lines[0], lines[-1]
    assert head["user_id"] == "alice" and head["tags"] == ["eu", "vip"]
    assert head["ttl_ms"] == 3_600_000 and head["deadline_ms"] == deadline
    assert end["kind"] == "end"
    assert (end["agents"], end["messages"], end["multi_agents"], end["records"]) == (1, 4, 0, 6)
    assert len(end["sha256"]) == 64

    ValkeySessionRepository(standalone_client).delete_session(SESSION_ID)
    imported = cli("import", str(path))
    assert imported.exit_code == 0, imported.output
    assert "no end line" not in imported.output
    assert _lifetime(standalone_client) == [3_600_000, deadline]
    info = ValkeySessionRepository(standalone_client).session_info(SESSION_ID)
    assert info is not None and info.user_id == "alice" and info.tags == ("eu", "vip")
    assert info.expires_in is not None and 3500 < info.expires_in <= 3600
    assert [
        s.session_id for s in ValkeySessionRepository(standalone_client).list_sessions(user_id="alice").sessions
    ] == [SESSION_ID]
    # Overwriting restores them too.
    standalone_client.hset(ValkeySessionRepository(standalone_client).session_keys(SESSION_ID).session, "ttl", 5)
    assert cli("import", "--overwrite", str(path)).exit_code == 0
    assert _lifetime(standalone_client) == [3_600_000, deadline]


def test_a_session_without_lifetime_imports_without_one(cli: Any, standalone_client: Any) -> None:
    _conversation(standalone_client)
    text = cli("export", SESSION_ID).stdout
    assert json.loads(text.splitlines()[0])["ttl_ms"] == 0
    ValkeySessionRepository(standalone_client).delete_session(SESSION_ID)
    assert cli("import", "-", input=text).exit_code == 0
    assert _lifetime(standalone_client) == [None, None]
    assert standalone_client.pttl(ValkeySessionRepository(standalone_client).session_keys(SESSION_ID).session) == -1


def _keys(client: Any) -> list[tuple[str, Any]]:
    return sorted((str(k), client.dump(k)) for k in client.keys("*"))


@pytest.mark.parametrize(
    ("cut", "line"),
    [
        (lambda lines: lines[:-1], "line 7: "),  # the end line is missing: truncated at a line boundary
        (lambda lines: lines[:3] + lines[4:], "line 6: "),  # a message line is missing
        (lambda lines: [*lines[:-1], lines[-1][:20]], "line 7: "),  # cut mid-line
        (lambda lines: [*lines[:2], lines[2].replace("First?", "Forged"), *lines[3:]], "line 7: "),
        (lambda lines: [*lines, lines[1]], "line 8: "),  # a record after the end line
    ],
    ids=["no-end-line", "missing-line", "cut-mid-line", "changed-record", "after-the-end"],
)
def test_a_damaged_export_is_refused_before_anything_is_written(
    cli: Any, standalone_client: Any, cut: Any, line: str
) -> None:
    _conversation(standalone_client, user_id="alice")
    lines = cli("export", SESSION_ID).stdout.splitlines()
    before = _keys(standalone_client)
    damaged = "\n".join(cut(lines)) + "\n"
    result = cli("import", "--overwrite", "-", input=damaged)
    assert result.exit_code == 4, result.output
    assert f"invalid import file <stdin>: {line}" in result.stderr
    assert _keys(standalone_client) == before  # the session it would have replaced is untouched
    with pytest.raises(ValueError, match=line.strip()):
        ValkeySessionRepository(standalone_client).import_session(damaged, overwrite=True)


def test_an_old_export_without_end_line_still_imports(cli: Any, standalone_client: Any) -> None:
    _conversation(standalone_client, user_id="alice")
    lines = cli("export", SESSION_ID).stdout.splitlines()[:-1]
    head = json.loads(lines[0])
    head["format"] = 1
    for name in ("ttl_ms", "deadline_ms"):
        del head[name]
    old = "\n".join([json.dumps(head), *lines[1:]]) + "\n"
    ValkeySessionRepository(standalone_client).delete_session(SESSION_ID)
    result = cli("import", "-", input=old)
    assert result.exit_code == 0, result.output
    assert "no end line" in result.stderr and "not checked" in result.stderr
    info = ValkeySessionRepository(standalone_client).session_info(SESSION_ID)
    assert info is not None and info.message_count == 4 and info.user_id == "alice"


def test_an_export_whose_deadline_has_passed_is_refused(cli: Any, standalone_client: Any) -> None:
    _conversation(standalone_client, max_age=3600)
    lines = cli("export", SESSION_ID).stdout.splitlines()
    head = json.loads(lines[0])
    head["deadline_ms"] = int(time.time() * 1000) - 1000
    ValkeySessionRepository(standalone_client).delete_session(SESSION_ID)
    # The end line's checksum covers the session line: rewrite it as an export would.
    from strands_valkey_session_manager.transfer import end_line

    records = [json.dumps(head), *lines[1:-1]]
    text = "\n".join([*records, end_line(records, agents=1, messages=4, multi_agents=0)]) + "\n"
    result = cli("import", "-", input=text)
    assert result.exit_code == 4
    assert "deadline" in result.stderr and "line 1" in result.stderr
    assert ValkeySessionRepository(standalone_client).read_session(SESSION_ID) is None


def _conversation_of(client: Any, session_id: str) -> list[tuple[str, str]]:
    messages = ValkeySessionRepository(client).list_messages(session_id, "bot")
    return [(m.message["role"], m.message["content"][0]["text"]) for m in messages]


def test_import_as_a_new_id_keeps_the_original_and_refuses_an_existing_id(cli: Any, standalone_client: Any) -> None:
    _conversation(standalone_client, ttl=3600, user_id="alice", tags=["eu"])
    text = cli("export", SESSION_ID).stdout
    original = _conversation_of(standalone_client, SESSION_ID)
    assert len(original) == 4

    result = cli("import", "-", "--as", "copy {2}", input=text)
    assert result.exit_code == 0, result.output
    assert "imported session copy {2}" in result.stdout
    assert _conversation_of(standalone_client, "copy {2}") == original
    assert _conversation_of(standalone_client, SESSION_ID) == original  # the exported id is untouched
    info = ValkeySessionRepository(standalone_client).session_info("copy {2}")
    assert info is not None and info.user_id == "alice" and info.tags == ("eu",)
    assert info.expires_in is not None and 3500 < info.expires_in <= 3600

    # An id that exists is refused (exit 5) unless --overwrite.
    ValkeySessionRepository(standalone_client).delete_session(SESSION_ID)
    again = cli("import", "-", "--as", "copy {2}", input=text)
    assert again.exit_code == 5, again.output
    assert "'copy {2}' already exists" in again.stderr
    assert ValkeySessionRepository(standalone_client).read_session(SESSION_ID) is None
    assert cli("import", "-", "--as", "copy {2}", "--overwrite", input=text).exit_code == 0
    assert _conversation_of(standalone_client, "copy {2}") == original


def test_import_as_still_checks_the_file_and_the_id(cli: Any, standalone_client: Any) -> None:
    _conversation(standalone_client)
    lines = cli("export", SESSION_ID).stdout.splitlines()
    forged = "\n".join([*lines[:2], lines[2].replace("First?", "Forged"), *lines[3:]]) + "\n"
    result = cli("import", "-", "--as", "other", input=forged)
    assert result.exit_code == 4, result.output
    assert "checksum" in result.stderr
    assert ValkeySessionRepository(standalone_client).read_session("other") is None
    empty = cli("import", "-", "--as", "", input="\n".join(lines) + "\n")
    assert empty.exit_code == 2
    assert "--as" in empty.stderr
