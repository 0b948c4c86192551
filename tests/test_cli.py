"""``svsm`` end to end on real servers: typer's CliRunner in process, and the installed entry point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import valkey
from strands import Agent, tool
from strands.session.file_session_manager import FileSessionManager
from typer.testing import Result

from strands_valkey_session_manager import ValkeySessionManager, ValkeySessionRepository
from strands_valkey_session_manager.cli.command import app, parse_duration
from strands_valkey_session_manager.scripted_model import ScriptedModel, ToolCall
from tests.cli_runner import cli_runner
from tests.servers import ServerProcess, start_server

SESSION_ID = "weather [bold]chat"
AGENT_ID = "support-bot"
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(256)
DAY_MS = 86_400_000


@tool
def lookup(city: str) -> str:
    """Weather of a city."""
    return f"sunny in {city}"


def _conversation(client: Any, session_id: str = SESSION_ID, **manager: Any) -> Agent:
    """A real Agent's conversation: text, an image, a tool call and its result, agent state."""
    session_manager = ValkeySessionManager(session_id=session_id, client=client, **manager)
    model = ScriptedModel([ToolCall("lookup", {"city": "Oslo"}), "It is sunny in Oslo.", "Noted."])
    agent = Agent(
        agent_id=AGENT_ID, model=model, session_manager=session_manager, callback_handler=None, tools=[lookup]
    )
    agent([{"text": "Weather in Oslo?"}, {"image": {"format": "png", "source": {"bytes": IMAGE}}}])
    agent.state.set("city", "Oslo")
    agent("Remember it.")
    return agent


def _session(client: Any, session_id: str, **owner: Any) -> None:
    """A session with no conversation, only catalog data."""
    ValkeySessionManager(session_id=session_id, client=client, **owner)


@pytest.fixture
def cli(valkey9_server: ServerProcess, standalone_client: Any) -> Iterator[Any]:
    """Runs ``svsm --url <valkey9> <args>`` in process; the server starts empty."""
    runner = cli_runner()

    def run(*args: str, input: str | None = None, url: str | None = None) -> Result:
        return runner.invoke(app, ["--url", url or valkey9_server.url, "--timeout", "2", *args], input=input)

    yield run


def _error_line(result: Result) -> str:
    """The single stderr line of a failed command (no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return lines[0]


def _old(client: Any, session_id: str, days: int) -> None:
    """Make a session's last write ``days`` old (the catalog's ``updated`` time, in ms)."""
    key = ValkeySessionRepository(client).session_keys(session_id).session
    client.hset(key, "updated", int(time.time() * 1000) - days * DAY_MS)


# -- sessions ---------------------------------------------------------------------------------------


def test_sessions_table_shows_counts_owner_tags_and_ttl(cli: Any, standalone_client: Any) -> None:
    _conversation(standalone_client, user_id="alice", tags=["support", "eu"], ttl=3600)
    _session(standalone_client, "plain")
    result = cli("sessions")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "│" in line]
    assert [r.split("│")[0].strip() for r in rows] == ["plain", SESSION_ID]  # newest first
    cells = [c.strip() for c in rows[1].split("│")]
    assert cells[1:5] == ["alice", "support, eu", "1", "6"]
    assert cells[8] in ("1h", "59m")  # after created, updated and the orchestrators count
    assert [c.strip() for c in rows[0].split("│")][1:5] == ["-", "-", "0", "0"]
    assert "next cursor" not in result.stdout


def test_sessions_pages_with_a_cursor(cli: Any, standalone_client: Any) -> None:
    for n in range(3):
        _session(standalone_client, f"s{n}")
        time.sleep(0.002)  # distinct creation milliseconds: a stable newest-first order
    first = cli("sessions", "--limit", "2", "--json")
    assert first.exit_code == 0, first.output
    page = json.loads(first.stdout)
    assert [s["session_id"] for s in page["sessions"]] == ["s2", "s1"]
    assert page["cursor"]
    table = cli("sessions", "--limit", "2")
    assert f"next cursor: {page['cursor']}" in table.stdout
    rest = json.loads(cli("sessions", "--json", "--cursor", page["cursor"]).stdout)
    assert [s["session_id"] for s in rest["sessions"]] == ["s0"]
    assert rest["cursor"] is None


def test_sessions_by_user_and_tag(cli: Any, standalone_client: Any) -> None:
    _session(standalone_client, "a", user_id="alice", tags=["x"])
    _session(standalone_client, "b", user_id="bob", tags=["x", "y"])
    _session(standalone_client, "c", user_id="alice", tags=["y"])

    def ids(*args: str) -> list[str]:
        result = cli("sessions", "--json", *args)
        assert result.exit_code == 0, result.output
        return sorted(s["session_id"] for s in json.loads(result.stdout)["sessions"])

    assert ids("--user", "alice") == ["a", "c"]
    assert ids("--tag", "y") == ["b", "c"]
    assert ids("--user", "alice", "--tag", "y") == ["c"]
    assert ids("--user", "nobody") == []


def test_sessions_rejects_bad_arguments(cli: Any) -> None:
    assert cli("sessions", "--limit", "0").exit_code == 2
    assert cli("sessions", "--limit", "many").exit_code == 2
    assert cli("sessions", "--nope").exit_code == 2
    result = cli("--prefix", "bad prefix", "sessions")
    assert result.exit_code == 2
    assert "key prefix" in _error_line(result)


# -- show -------------------------------------------------------------------------------------------


def test_show_renders_the_conversation(cli: Any, standalone_client: Any) -> None:
    _conversation(standalone_client, user_id="alice")
    result = cli("show", SESSION_ID)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"session {SESSION_ID}" in out  # ids are data, not rich markup
    assert "user alice" in out
    assert 'state: {"city": "Oslo"}' in out
    assert '"removed_message_count": 0' in out
    assert "user #0" in out and "assistant #1" in out
    assert "Weather in Oslo?" in out
    assert "[image png, 264 B]" in out
    assert '→ tool call lookup (tooluse-1) {"city": "Oslo"}' in out
    assert "← tool result (tooluse-1) success" in out
    assert "sunny in Oslo" in out
    assert out.index("Weather in Oslo?") < out.index("tool call") < out.index("Noted.")


def test_show_last_messages_of_one_agent(cli: Any, standalone_client: Any) -> None:
    _conversation(standalone_client)
    result = cli("show", SESSION_ID, "--agent", AGENT_ID, "--limit", "2")
    assert result.exit_code == 0, result.output
    assert "6 messages stored, last 2 shown" in result.stdout
    assert "#4" in result.stdout and "#5" in result.stdout and "#3" not in result.stdout
    missing = cli("show", SESSION_ID, "--agent", "nobody")
    assert missing.exit_code == 1
    assert _error_line(missing) == f"svsm: error: agent 'nobody' in session {SESSION_ID!r} not found"
    assert cli("show", SESSION_ID, "--limit", "0").exit_code == 2


def test_show_unknown_session(cli: Any) -> None:
    result = cli("show", "nope")
    assert result.exit_code == 1
    assert _error_line(result) == "svsm: error: session 'nope' not found"


def test_show_corrupt_record_is_a_data_error(cli: Any, standalone_client: Any) -> None:
    _conversation(standalone_client)
    standalone_client.hset(ValkeySessionRepository(standalone_client).session_keys(SESSION_ID).agents, AGENT_ID, "{")
    result = cli("show", SESSION_ID)
    assert result.exit_code == 4
    assert "not a valid record" in _error_line(result)
    exported = cli("export", SESSION_ID)
    assert exported.exit_code == 4
    assert "not valid JSON" in _error_line(exported)


# -- export, import, fork ---------------------------------------------------------------------------


def test_export_import_round_trip(cli: Any, standalone_client: Any, tmp_path: Path) -> None:
    _conversation(standalone_client, user_id="alice", tags=["t"])
    path = tmp_path / "session.jsonl"
    exported = cli("export", SESSION_ID, "-o", str(path))
    assert exported.exit_code == 0, exported.output
    before = path.read_text()
    assert len(before.splitlines()) == 9  # session, agent, 6 messages, end line

    ValkeySessionRepository(standalone_client).delete_session(SESSION_ID)
    imported = cli("import", str(path))
    assert imported.exit_code == 0, imported.output
    assert f"imported session {SESSION_ID}: 1 agents, 6 messages" in imported.stdout
    again = cli("export", SESSION_ID)
    assert again.exit_code == 0
    assert again.stdout == before
    restored = Agent(
        agent_id=AGENT_ID,
        model=ScriptedModel([]),
        session_manager=ValkeySessionManager(session_id=SESSION_ID, client=standalone_client),
        callback_handler=None,
    )
    assert restored.messages[1]["content"][0]["toolUse"]["input"] == {"city": "Oslo"}
    assert restored.messages[0]["content"][1]["image"]["source"]["bytes"] == IMAGE


def test_import_from_stdin_conflicts_and_bad_files(cli: Any, standalone_client: Any, tmp_path: Path) -> None:
    _conversation(standalone_client)
    text = cli("export", SESSION_ID).stdout
    conflict = cli("import", "-", input=text)
    assert conflict.exit_code == 5
    assert "already exists; pass --overwrite" in _error_line(conflict)
    assert cli("import", "--overwrite", "-", input=text).exit_code == 0

    bad = cli("import", "-", input=text.replace('"kind":"agent"', '"kind":"robot"'))
    assert bad.exit_code == 4
    assert "invalid import file <stdin>: line 2" in _error_line(bad)
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    assert cli("import", str(binary)).exit_code == 4
    assert cli("import", str(tmp_path / "missing.jsonl")).exit_code == 2


def test_export_unknown_session(cli: Any, tmp_path: Path) -> None:
    result = cli("export", "nope", "-o", str(tmp_path / "x.jsonl"))
    assert result.exit_code == 1
    assert not (tmp_path / "x.jsonl").exists()


def test_fork(cli: Any, standalone_client: Any) -> None:
    _conversation(standalone_client, user_id="alice")
    result = cli("fork", SESSION_ID, "copy")
    assert result.exit_code == 0, result.output
    info = ValkeySessionRepository(standalone_client).session_info("copy")
    assert info is not None and info.message_counts == {AGENT_ID: 6} and info.user_id == "alice"
    assert cli("fork", SESSION_ID, "copy").exit_code == 5
    assert cli("fork", "nope", "other").exit_code == 1
    assert cli("fork", SESSION_ID, SESSION_ID).exit_code == 5


# -- delete and prune -------------------------------------------------------------------------------


def test_delete_asks_first(cli: Any, standalone_client: Any) -> None:
    _conversation(standalone_client)
    repo = ValkeySessionRepository(standalone_client)
    declined = cli("delete", SESSION_ID, input="n\n")
    assert declined.exit_code == 1
    assert "(1 agents, 6 messages)?" in declined.stderr
    assert repo.read_session(SESSION_ID) is not None
    assert cli("delete", SESSION_ID, input="").exit_code == 1  # no terminal, no answer: nothing deleted
    assert repo.read_session(SESSION_ID) is not None
    accepted = cli("delete", SESSION_ID, input="y\n")
    assert accepted.exit_code == 0
    assert repo.read_session(SESSION_ID) is None
    assert cli("delete", SESSION_ID, "--yes").exit_code == 1


def test_delete_yes_skips_the_question(cli: Any, standalone_client: Any) -> None:
    _session(standalone_client, "a")
    _session(standalone_client, "ab")
    result = cli("delete", "a", "--yes")
    assert result.exit_code == 0
    assert result.stdout.strip() == "deleted session a"
    assert ValkeySessionRepository(standalone_client).read_session("ab") is not None


def test_prune_dry_run_lists_and_deletes_nothing(cli: Any, standalone_client: Any) -> None:
    for session_id in ("old-1", "old-2", "fresh"):
        _session(standalone_client, session_id)
    _old(standalone_client, "old-1", 40)
    _old(standalone_client, "old-2", 31)
    keys_before = sorted(standalone_client.keys("*"))
    result = cli("prune", "--older-than", "30d", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would delete 2 sessions idle for more than 30d" in result.stdout
    assert "old-1" in result.stdout and "old-2" in result.stdout and "fresh" not in result.stdout
    assert sorted(standalone_client.keys("*")) == keys_before


def test_prune_deletes_after_confirmation(cli: Any, standalone_client: Any) -> None:
    for session_id in ("old", "fresh"):
        _session(standalone_client, session_id)
    _old(standalone_client, "old", 3)
    repo = ValkeySessionRepository(standalone_client)
    assert cli("prune", "--older-than", "2d", input="n\n").exit_code == 1
    assert repo.read_session("old") is not None
    result = cli("prune", "--older-than", "1d12h", "--yes")
    assert result.exit_code == 0, result.output
    assert "deleted 1 sessions" in result.stdout
    assert repo.read_session("old") is None and repo.read_session("fresh") is not None
    nothing = cli("prune", "--older-than", "1d", "--yes")
    assert nothing.exit_code == 1
    assert "nothing to prune" in nothing.stdout


@pytest.mark.parametrize("duration", ["30x", "0s", "", "d", "1.5.2h", "-1d", "30"])
def test_prune_rejects_bad_durations(cli: Any, duration: str) -> None:
    result = cli("prune", "--older-than", duration, "--dry-run")
    assert result.exit_code == 2
    assert "--older-than" in result.stderr


def test_prune_needs_older_than(cli: Any) -> None:
    assert cli("prune").exit_code == 2


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("12h", 43200), ("30d", 2592000), ("2w", 1209600), ("1d12h", 129600), ("1.5h", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


# -- unreachable servers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("sessions",),
        ("show", "x"),
        ("doctor",),
        ("prune", "--older-than", "1d", "--dry-run"),
        ("--cluster", "sessions"),
    ],
)
def test_unreachable_server_exits_3_quickly(args: Sequence[str]) -> None:
    start = time.monotonic()
    result = cli_runner().invoke(app, ["--url", "redis://127.0.0.1:1", "--timeout", "0.5", *args])
    assert result.exit_code == 3, result.output
    assert time.monotonic() - start < 3
    line = _error_line(result)
    assert line.startswith("svsm: error:") and "127.0.0.1:1" in line


def test_url_comes_from_the_environment(valkey9_server: ServerProcess, standalone_client: Any) -> None:
    _session(standalone_client, "from-env")
    env = {"VALKEY_URL": valkey9_server.url, "REDIS_URL": "redis://127.0.0.1:1"}
    result = cli_runner().invoke(app, ["sessions", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sessions"][0]["session_id"] == "from-env"
    fallback = cli_runner().invoke(app, ["--timeout", "0.5", "sessions"], env={**env, "VALKEY_URL": None})
    assert fallback.exit_code == 3  # REDIS_URL next: the unreachable one


# -- doctor -----------------------------------------------------------------------------------------


def _checks(result: Result) -> dict[str, tuple[str, str]]:
    rows = [[c.strip() for c in line.split("│")] for line in result.stdout.splitlines() if "│" in line]
    return {name: (status, detail) for name, status, detail in rows}


def test_doctor_on_the_valkey9_test_server(cli: Any) -> None:
    result = cli("doctor")
    checks = _checks(result)
    assert checks["server"] == ("ok", "Valkey 9.1.2") or checks["server"][1].startswith("Valkey 9.")
    assert checks["topology"] == ("ok", "standalone")
    # The test servers run without AOF or RDB: a warning, so exit code 1.
    assert checks["persistence"][0] == "warn" and "restart loses" in checks["persistence"][1]
    assert checks["eviction"][0] == "ok" and checks["eviction"][1].startswith("noeviction")
    assert checks["ACL"] == ("ok", "user default may run all 28 commands on strands:* keys")
    assert checks["latency"][0] == "ok" and "median round trip" in checks["latency"][1]
    assert result.exit_code == 1


@pytest.fixture(scope="module")
def durable_server() -> Iterator[ServerProcess]:
    """A Valkey 9 with AOF, whose config the doctor tests may change."""
    server = start_server("valkey9", appendonly=True)
    try:
        yield server
    finally:
        server.stop()


def test_doctor_all_good_and_eviction_policies(durable_server: ServerProcess) -> None:
    admin: Any = valkey.Valkey(durable_server.host, durable_server.port, decode_responses=True)
    runner = cli_runner()

    def doctor() -> Result:
        return runner.invoke(app, ["--url", durable_server.url, "doctor"])

    try:
        admin.flushall()
        good = doctor()
        assert good.exit_code == 0, good.output
        assert "append-only file on (appendfsync always)" in _checks(good)["persistence"][1]

        admin.config_set("maxmemory-policy", "allkeys-lru")
        evicting = doctor()
        assert evicting.exit_code == 1
        assert _checks(evicting)["eviction"][0] == "warn"

        admin.config_set("maxmemory-policy", "volatile-lru")
        _session(admin, "forever")
        assert doctor().exit_code == 0  # only keys with a TTL are evicted, and sessions have none
        _session(admin, "expiring", ttl=600)
        expiring = doctor()
        assert expiring.exit_code == 1
        assert "1 of the 2 newest sessions have a TTL" in _checks(expiring)["eviction"][1]
    finally:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.flushall()
        admin.close()


def test_doctor_reports_acl_denials(durable_server: ServerProcess) -> None:
    admin: Any = valkey.Valkey(durable_server.host, durable_server.port, decode_responses=True)
    admin.execute_command(
        "ACL", "SETUSER", "reader", "on", ">secret", "~strands:*", "+@read", "+ping", "+acl", "-info", "-config"
    )
    try:
        url = f"redis://reader:secret@{durable_server.host}:{durable_server.port}"
        result = cli_runner().invoke(app, ["--url", url, "doctor"])
        assert result.exit_code == 2, result.output
        checks = _checks(result)
        assert checks["ACL"][0] == "error"
        for command in ("HSET", "DEL", "ZADD", "EVALSHA", "SCRIPT LOAD", "RESTORE"):
            assert command in checks["ACL"][1]
        assert checks["server"][0] == "skip" and checks["persistence"][0] == "skip"
        assert "secret" not in result.stdout
    finally:
        admin.execute_command("ACL", "DELUSER", "reader")
        admin.close()


@pytest.mark.backends("cluster")
def test_doctor_and_sessions_on_a_cluster(backend: Any) -> None:
    client = backend.make_client("valkey-cluster-str")
    try:
        _session(client, "on-a-cluster", user_id="alice")
    finally:
        client.close()
    runner = cli_runner()
    listed = runner.invoke(app, ["--url", backend.url, "--cluster", "sessions", "--user", "alice", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [s["session_id"] for s in json.loads(listed.stdout)["sessions"]] == ["on-a-cluster"]
    clustered = runner.invoke(app, ["--url", backend.url, "--cluster", "doctor"])
    assert _checks(clustered)["topology"] == ("ok", "cluster: 3 primaries, 0 replicas")
    assert clustered.exit_code == 1  # persistence off: a warning
    plain = runner.invoke(app, ["--url", backend.url, "doctor"])
    assert plain.exit_code == 2
    assert _checks(plain)["topology"] == ("error", "the server runs in cluster mode: pass --cluster")


# -- migrate ----------------------------------------------------------------------------------------


def _file_store(directory: Path, session_id: str) -> None:
    manager = FileSessionManager(session_id=session_id, storage_dir=str(directory))
    agent = Agent(agent_id=AGENT_ID, model=ScriptedModel(["Hi."]), session_manager=manager, callback_handler=None)
    agent("Hello")


def test_migrate_files(cli: Any, standalone_client: Any, tmp_path: Path) -> None:
    _file_store(tmp_path, "one")
    _file_store(tmp_path, "two")
    dry = cli("migrate", "files", str(tmp_path), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would migrate 2 of 2 sessions: 2 agents, 4 messages" in dry.stdout
    assert standalone_client.keys("*") == []

    only = cli("migrate", "files", str(tmp_path), "--session", "two")
    assert only.exit_code == 0, only.output
    assert "migrated 1 of 1 sessions" in only.stdout
    rest = cli("migrate", "files", str(tmp_path))
    assert rest.exit_code == 0
    assert "migrated 1 of 2 sessions" in rest.stdout and "skipped 1 sessions" in rest.stdout
    again = cli("migrate", "files", str(tmp_path))
    assert again.exit_code == 0  # everything already migrated: success
    assert "skipped 2 sessions already in the target: 2 agents, 4 messages" in again.stdout


def test_migrate_files_reports_unreadable_sessions(cli: Any, tmp_path: Path) -> None:
    _file_store(tmp_path, "good")
    _file_store(tmp_path, "bad")
    (tmp_path / "session_bad" / "session.json").write_text("[]")
    result = cli("migrate", "files", str(tmp_path))
    assert result.exit_code == 4
    assert "failed bad:" in result.stdout and "migrated 1 of 2" in result.stdout


def test_migrate_files_bad_directory(cli: Any, tmp_path: Path) -> None:
    assert cli("migrate", "files", str(tmp_path / "missing")).exit_code == 2
    assert cli("migrate", "files").exit_code == 2


def test_migrate_seed_needs_the_json_module(cli: Any, valkey9_server: ServerProcess, standalone_client: Any) -> None:
    standalone_client.set("session:abc", "not a JSON document")
    result = cli("migrate", "seed", "--source-url", valkey9_server.url, "--dry-run")
    assert result.exit_code == 3
    assert "no JSON module" in _error_line(result) and "RedisJSON or valkey-json" in result.stderr
    unreachable = cli("--timeout", "0.5", "migrate", "seed", "--source-url", "redis://127.0.0.1:1")
    assert unreachable.exit_code == 3
    assert cli("migrate", "seed").exit_code == 2  # --source-url is required


# -- demo, server and the installed entry point -------------------------------------------------------


def test_demo_uses_the_given_url_or_its_own_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo itself runs end to end in test_demo.py; here only what svsm hands it."""
    from strands_valkey_session_manager import demo

    calls: list[list[str]] = []
    monkeypatch.setattr(demo, "main", lambda argv: calls.append(list(argv)) or 0)
    monkeypatch.delenv("VALKEY_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    runner = cli_runner()
    assert runner.invoke(app, ["demo"]).exit_code == 0
    assert runner.invoke(app, ["--url", "redis://h:1", "demo"]).exit_code == 0
    assert calls == [[], ["--url", "redis://h:1"]]


def _svsm() -> str:
    path = Path(sys.executable).parent / "svsm"
    assert path.exists(), "the svsm entry point is not installed: pip install -e '.[cli]'"
    return str(path)


def test_installed_entry_point(valkey9_server: ServerProcess, standalone_client: Any) -> None:
    _session(standalone_client, "installed")
    env = {**os.environ, "VALKEY_URL": valkey9_server.url}
    listed = subprocess.run(
        [_svsm(), "sessions", "--json"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["sessions"][0]["session_id"] == "installed"
    missing = subprocess.run(
        [_svsm(), "show", "nope"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert (missing.returncode, missing.stderr) == (1, "svsm: error: session 'nope' not found\n")


def test_server_command_runs_until_interrupted() -> None:
    process = subprocess.Popen(
        [_svsm(), "server", "--flavour", "valkey8"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("redis://127.0.0.1:")
        client: Any = valkey.Valkey.from_url(url, socket_timeout=5)
        assert client.ping()
        assert client.info("server")["valkey_version"].startswith("8.")
        client.close()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
        stopped: Any = valkey.Valkey.from_url(url, socket_connect_timeout=0.5)
        with pytest.raises(valkey.exceptions.ConnectionError):
            stopped.ping()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_help_lists_commands_and_exit_codes() -> None:
    result = cli_runner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for word in ("sessions", "show", "export", "import", "fork", "delete", "prune", "migrate", "doctor", "server"):
        assert word in result.stdout
    for code in range(6):
        assert f"\n  {code}  " in result.stdout
