"""``svsm`` for operators: narrow terminals, summaries, global options anywhere, errors, prune filters."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from strands import Agent
from strands.session.file_session_manager import FileSessionManager
from typer.testing import Result

from strands_valkey_session_manager import ValkeySessionManager, ValkeySessionRepository
from strands_valkey_session_manager.cli.command import app
from strands_valkey_session_manager.scripted_model import ScriptedModel
from tests.cli_runner import cli_runner
from tests.servers import ServerProcess

DAY_MS = 86_400_000
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def cli(valkey9_server: ServerProcess, standalone_client: Any) -> Iterator[Any]:
    """Runs ``svsm --url <valkey9> <args>``; ``columns`` runs it as in a terminal that wide."""
    runner = cli_runner()

    def run(*args: str, input: str | None = None, columns: int | None = None) -> Result:
        env = {"TTY_COMPATIBLE": "1", "COLUMNS": str(columns), "NO_COLOR": "1"} if columns else None
        return runner.invoke(app, ["--url", valkey9_server.url, "--timeout", "2", *args], input=input, env=env)

    yield run


def _session(client: Any, session_id: str, **owner: Any) -> None:
    ValkeySessionManager(session_id=session_id, client=client, **owner)


def _old(client: Any, session_id: str, days: int) -> None:
    key = ValkeySessionRepository(client).session_keys(session_id).session
    client.hset(key, "updated", int(time.time() * 1000) - days * DAY_MS)


def _error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


# -- narrow terminals and long lists ------------------------------------------------------------------

LONG_IDS = [
    "customer-support:2026-01-31:eu-west-1:ticket-48213",
    "customer-support:2026-01-31:us-east-2:ticket-48214",
]


def test_sessions_in_80_columns_keep_ids_users_and_tags_whole(cli: Any, standalone_client: Any) -> None:
    for session_id in LONG_IDS:
        _session(standalone_client, session_id, user_id="alice@example.com", tags=["billing", "priority"])
    result = cli("sessions", columns=80)
    assert result.exit_code == 0, result.output
    out = _ANSI.sub("", result.stdout)
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), out
    for session_id in LONG_IDS:
        assert any(session_id in line for line in lines), out  # in one piece, copyable
    assert out.count("alice@example.com") == 2
    assert out.count("billing, priority") == 2


def test_sessions_in_a_wide_terminal_stay_a_table(cli: Any, standalone_client: Any) -> None:
    _session(standalone_client, "short", user_id="bob")
    out = _ANSI.sub("", cli("sessions", columns=200).stdout)
    row = next(line for line in out.splitlines() if line.startswith("short"))
    assert [c.strip() for c in row.split("│")][:3] == ["short", "bob", "-"]


def test_prune_confirmation_shows_a_count_and_the_first_few(cli: Any, standalone_client: Any) -> None:
    ids = [f"old-{n:02d}" for n in range(25)]
    for session_id in ids:
        _session(standalone_client, session_id)
        _old(standalone_client, session_id, 3)
    result = cli("prune", "--older-than", "2d", input="n\n")
    assert result.exit_code == 1
    shown = [i for i in ids if i in result.stderr]
    assert len(shown) == 10, result.stderr
    assert "25 sessions idle for more than 2d" in result.stderr
    assert "and 15 more" in result.stderr
    assert ValkeySessionRepository(standalone_client).session_info("old-00") is not None


def test_prune_dry_run_summarises_and_json_lists_all(cli: Any, standalone_client: Any) -> None:
    ids = [f"old-{n:02d}" for n in range(12)]
    for session_id in ids:
        _session(standalone_client, session_id)
        _old(standalone_client, session_id, 3)
    dry = cli("prune", "--older-than", "2d", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert sum(i in dry.stdout for i in ids) == 10
    assert "and 2 more" in dry.stdout and "would delete 12 sessions" in dry.stdout
    listed = cli("prune", "--older-than", "2d", "--dry-run", "--json")
    assert listed.exit_code == 0, listed.output
    assert sorted(s["session_id"] for s in json.loads(listed.stdout)["sessions"]) == ids


def test_prune_by_user_and_tag(cli: Any, standalone_client: Any) -> None:
    _session(standalone_client, "a", user_id="alice")
    _session(standalone_client, "b", user_id="bob")
    _session(standalone_client, "c", user_id="alice")
    _session(standalone_client, "d", user_id="alice", tags=["x"])
    _session(standalone_client, "e", tags=["x"])
    for session_id in ("a", "b", "d", "e"):
        _old(standalone_client, session_id, 3)
    repo = ValkeySessionRepository(standalone_client)

    def left() -> list[str]:
        return sorted(i.session_id for i in repo.iter_sessions())

    result = cli("prune", "--older-than", "1d", "--user", "alice", "--tag", "x", "--yes")
    assert result.exit_code == 0, result.output
    assert "deleted 1 sessions" in result.stdout
    assert left() == ["a", "b", "c", "e"]
    assert cli("prune", "--older-than", "1d", "--tag", "x", "--yes").exit_code == 0
    assert left() == ["a", "b", "c"]
    assert cli("prune", "--older-than", "1d", "--user", "alice", "--yes").exit_code == 0
    assert left() == ["b", "c"]  # c is fresh
    nothing = cli("prune", "--older-than", "1d", "--user", "alice", "--yes")
    assert nothing.exit_code == 1 and "nothing to prune" in nothing.stdout


def test_prune_by_user_keeps_a_session_written_since_the_listing(cli: Any, standalone_client: Any) -> None:
    """The filtered prune deletes with the same atomic idle check as the unfiltered one."""
    _session(standalone_client, "a", user_id="alice")
    _old(standalone_client, "a", 3)
    repo = ValkeySessionRepository(standalone_client)
    listed = next(repo.iter_sessions(user_id="alice"))
    key = repo.session_keys("a").session
    standalone_client.hset(key, "updated", int(time.time() * 1000))  # a write after the listing
    from strands_valkey_session_manager.cli.command import delete_if_idle

    assert delete_if_idle(repo, listed, cutoff_ms=int(time.time() * 1000) - DAY_MS) is False
    assert repo.session_info("a") is not None


# -- global options, version, help -------------------------------------------------------------------


def test_global_options_after_the_subcommand(
    valkey9_server: ServerProcess, standalone_client: Any, tmp_path: Path
) -> None:
    _session(standalone_client, "anywhere")
    _file_store(tmp_path, "one")
    runner = cli_runner()
    listed = runner.invoke(app, ["sessions", "--json", "--url", valkey9_server.url, "--timeout", "2"], env={})
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["sessions"][0]["session_id"] == "anywhere"
    shown = runner.invoke(app, ["show", "anywhere", f"--url={valkey9_server.url}"])
    assert shown.exit_code == 0, shown.output
    nested = runner.invoke(
        app, ["migrate", "files", str(tmp_path), "--dry-run", "--url", "redis://127.0.0.1:1", "--timeout", "0.5"]
    )
    assert nested.exit_code == 3, nested.output  # the options reached the migration
    assert "127.0.0.1:1" in nested.stderr
    missing = runner.invoke(app, ["show", "nope", "--url", valkey9_server.url])
    assert missing.exit_code == 1
    # After "--" nothing is taken as an option.
    literal = runner.invoke(app, ["--url", valkey9_server.url, "show", "--", "--url"])
    assert literal.exit_code == 1 and "'--url' not found" in literal.stderr


def test_version_and_short_help() -> None:
    from importlib.metadata import version

    runner = cli_runner()
    shown = runner.invoke(app, ["--version"])
    assert shown.exit_code == 0
    assert shown.stdout.strip() == f"svsm {version('strands-valkey-session-manager')}"
    assert runner.invoke(app, ["sessions", "--version"]).stdout == shown.stdout
    for args in (["-h"], ["sessions", "-h"], ["migrate", "-h"], ["migrate", "files", "-h"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        assert result.stdout.startswith("Usage: svsm"), args


def test_help_shows_placeholders_not_python_names() -> None:
    runner = cli_runner()
    expected = {
        ("show",): "SESSION_ID",
        ("export",): "SESSION_ID",
        ("import",): "FILE",
        ("fork",): "SOURCE_ID TARGET_ID",
        ("delete",): "SESSION_ID",
        ("migrate", "files"): "DIRECTORY",
    }
    for command, placeholder in expected.items():
        out = runner.invoke(app, [*command, "--help"]).stdout
        assert placeholder in out.splitlines()[0], out
        assert not re.search(r"\{\w+\}|<(str|FileText|dir|path)>", out), out


# -- bad input and errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("cursor", ["garbage", "123:abc", "000000000000001", "000000000000001:%zz", ""])
def test_a_bad_cursor_is_a_usage_error(cli: Any, cursor: str) -> None:
    result = cli("sessions", "--cursor", cursor)
    assert result.exit_code == 2, result.output
    assert "--cursor" in result.stderr


def test_a_cursor_from_a_listing_is_accepted(cli: Any, standalone_client: Any) -> None:
    for n in range(3):
        _session(standalone_client, f"s:{n} x")
        time.sleep(0.002)
    cursor = json.loads(cli("sessions", "--json", "--limit", "1").stdout)["cursor"]
    result = cli("sessions", "--json", "--cursor", cursor)
    assert result.exit_code == 0, result.output
    assert [s["session_id"] for s in json.loads(result.stdout)["sessions"]] == ["s:1 x", "s:0 x"]


def test_errors_name_the_server_and_keep_internals_for_verbose(tmp_path: Path) -> None:
    runner = cli_runner()
    base = ["--url", "redis://user:hunter2@127.0.0.1:1", "--timeout", "0.5"]
    plain = runner.invoke(app, [*base, "show", "x"])
    assert plain.exit_code == 3
    line = _error_line(plain)
    assert line.startswith("svsm: error: server redis://user:***@127.0.0.1:1: ")
    assert "operation=<" not in line and "hunter2" not in line
    verbose = runner.invoke(app, [*base, "--verbose", "show", "x"])
    assert verbose.exit_code == 3
    assert "operation=<session_info>" in _error_line(verbose) and "hunter2" not in verbose.stderr

    _file_store(tmp_path, "one")
    target = runner.invoke(app, [*base, "migrate", "files", str(tmp_path)])
    assert target.exit_code == 3
    assert _error_line(target).startswith("svsm: error: target server redis://user:***@127.0.0.1:1: ")
    source = runner.invoke(app, ["migrate", "seed", "--source-url", "redis://127.0.0.1:2", "--timeout", "0.5"])
    assert source.exit_code == 3
    assert _error_line(source).startswith("svsm: error: source server redis://127.0.0.1:2: ")


# -- migrations ----------------------------------------------------------------------------------------


def _file_store(directory: Path, session_id: str) -> None:
    manager = FileSessionManager(session_id=session_id, storage_dir=str(directory))
    agent = Agent(agent_id="bot", model=ScriptedModel(["Hi."]), session_manager=manager, callback_handler=None)
    agent("Hello")


def test_a_migration_with_everything_already_migrated_exits_0(cli: Any, tmp_path: Path) -> None:
    _file_store(tmp_path, "one")
    assert cli("migrate", "files", str(tmp_path)).exit_code == 0
    again = cli("migrate", "files", str(tmp_path))
    assert again.exit_code == 0, again.output
    assert "skipped 1 sessions already in the target" in again.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = cli("migrate", "files", str(empty))
    assert nothing.exit_code == 1  # nothing found at all


def test_migrate_snapshots(cli: Any, standalone_client: Any) -> None:
    from strands.session import SnapshotSessionManager

    from strands_valkey_session_manager import ValkeyStorage

    manager = ValkeySessionManager(session_id="log", client=standalone_client)
    agent = Agent(agent_id="bot", model=ScriptedModel(["Hi."]), session_manager=manager, callback_handler=None)
    agent("Hello")
    dry = cli("migrate", "snapshots", "log", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would write 1" in dry.stdout
    first = cli("migrate", "snapshots", "log", "--target-session", "snap")
    assert first.exit_code == 0, first.output
    assert "wrote 1, unchanged 0, conflicts 0" in first.stdout
    again = cli("migrate", "snapshots", "log", "--target-session", "snap")
    assert again.exit_code == 0 and "wrote 0, unchanged 1" in again.stdout
    restored = Agent(
        agent_id="bot",
        model=ScriptedModel([]),
        session_manager=SnapshotSessionManager("snap", storage=ValkeyStorage(standalone_client)),
        callback_handler=None,
    )
    assert [m["content"][0]["text"] for m in restored.messages] == ["Hello", "Hi."]
    assert cli("migrate", "snapshots", "nope").exit_code == 1
