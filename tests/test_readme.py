"""The README and docs/ as written: every Python block runs, offline, against a real server.

Each ```python block of README.md and docs/*.md runs on its own (blocks are self-contained), with
``VALKEY_URL`` pointing at the test server and the scripted model where a model is needed. A block
that cannot run here (it needs AWS or a TLS server) is marked ``<!-- not-run: reason -->`` on the
line before it; :data:`NOT_RUN` lists them, so they stay few. The ``svsm`` lines of shell blocks
are checked against the CLI (each command and option they show exists), and the README's
round-trip and signature claims against the code.
"""

from __future__ import annotations

import inspect
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from strands_valkey_session_manager import ValkeySessionRepository
from strands_valkey_session_manager.cli.command import app
from tests.roundtrips import count_round_trips
from tests.servers import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Blocks that do not run in the tests, by file and reason: keep this list short.
NOT_RUN = {
    ("README.md", "needs an ElastiCache endpoint (the tests run the same manager on a local cluster)"),
    ("README.md", "needs a TLS server with that user (tests/test_tls.py runs it on a local one)"),
}

_FENCE = re.compile(r"^```(\w*)\s*$")
_NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(.+?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence
    lang: str
    code: str
    not_run: str | None

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _blocks(path: Path) -> list[Block]:
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{path.name}:{start + 1}: code block not closed")
        i += 1
        before = next((line for line in reversed(lines[:start]) if line.strip()), "")
        marker = _NOT_RUN.match(before)
        blocks.append(
            Block(path, start + 1, opening.group(1), "\n".join(body) + "\n", marker.group(1) if marker else None)
        )
    return blocks


ALL_BLOCKS = [block for path in DOCS for block in _blocks(path)]
PYTHON = [block for block in ALL_BLOCKS if block.lang == "python"]


def test_the_blocks_left_out_are_the_listed_few() -> None:
    assert PYTHON, "no Python blocks found"
    assert {(b.path.name, b.not_run) for b in PYTHON if b.not_run is not None} == NOT_RUN
    for block in ALL_BLOCKS:  # a marker belongs to a Python block
        assert block.not_run is None or block.lang == "python", block.name


@pytest.mark.parametrize("block", [b for b in PYTHON if b.not_run is None], ids=lambda b: b.name)
def test_python_block_runs(
    block: Block,
    valkey9_server: ServerProcess,
    standalone_client: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``standalone_client``: the server is flushed first."""
    monkeypatch.setenv("VALKEY_URL", valkey9_server.url)
    monkeypatch.setenv("SESSION_KEYS_DIR", str(tmp_path / "session-keys"))
    monkeypatch.chdir(tmp_path)
    code = compile(block.code, block.name, "exec")
    exec(code, {"__name__": "__main__"})


# -- what the README says about the CLI and the code ------------------------------------------------


def _svsm_lines() -> list[tuple[Block, list[str]]]:
    found = []
    for block in ALL_BLOCKS:
        if block.lang not in ("bash", "sh", "shell", "console"):
            continue
        for line in block.code.splitlines():
            command = line.split("  #", 1)[0].strip()
            if command.startswith("svsm "):
                found.append((block, shlex.split(command)))
    return found


def _help(args: list[str]) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, (args, result.output)
    return result.output


@pytest.mark.parametrize(("block", "words"), [pytest.param(b, w, id=" ".join(w[1:3])) for b, w in _svsm_lines()])
def test_svsm_lines_name_commands_and_options_that_exist(block: Block, words: list[str]) -> None:
    """Each command a shell block shows exists, and so does each option it gives."""
    global_help = _help([])
    path: list[str] = []
    words = [w.strip("[]") for w in words[1:]]
    options = [w.split("=", 1)[0] for w in words if w.startswith("-")]
    # The command path: words naming subcommands (group, then command), skipping global options.
    rest = iter(words)
    stopped_at = None
    for word in rest:
        if word in ("--url", "--prefix", "--timeout", "--key-file", "--key-store-dir", "--key-store-url"):
            next(rest, None)
            continue
        if word.startswith("-"):
            continue
        if re.search(rf"^\s*│?\s*{re.escape(word)}\s", _help(path), re.MULTILINE) is None:
            stopped_at = word
            break
        path.append(word)
    if not path:
        assert stopped_at is None, (block.name, "no such command", stopped_at)
        assert all(option in global_help for option in options), (block.name, words)
        return
    command_help = _help(path) + global_help
    for option in options:
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", command_help), (block.name, path, option)


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def test_round_trips_the_readme_promises(standalone_client: Any) -> None:
    claim = re.search(
        r"append (\d+), restore of an agent (\d+), delete of a session (\d+)", " ".join(_readme().split())
    )
    assert claim is not None
    append, restore, delete = (int(n) for n in claim.groups())
    from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

    repo = ValkeySessionRepository(standalone_client)
    repo.create_session(Session(session_id="s", session_type=SessionType.AGENT))
    repo.create_agent("s", SessionAgent(agent_id="a", state={}, conversation_manager_state={}))
    with pytest.raises(Exception, match="not-there"):
        repo.delete_session("not-there")  # scripts loaded: steady state
    repo.list_messages("s", "a")

    def message(n: int) -> SessionMessage:
        return SessionMessage(message={"role": "user", "content": [{"text": str(n)}]}, message_id=n)

    repo.create_message("s", "a", message(0))
    with count_round_trips() as trips:
        repo.create_message("s", "a", message(1))
    assert trips.value == append
    with count_round_trips() as trips:
        repo.read_agent("s", "a")
        repo.list_messages("s", "a")
    assert trips.value == restore
    with count_round_trips() as trips:
        repo.delete_session("s")
    assert trips.value == delete


def test_the_viewer_signatures_the_readme_shows() -> None:
    from strands_valkey_session_manager.cli.viewer import create_app, serve

    text = " ".join(_readme().split())
    for function in (create_app, serve):
        shown = re.search(rf"`{function.__name__}\(([^`]*)\)`", text)
        assert shown is not None, function.__name__
        parameters = inspect.signature(function).parameters
        for part in shown.group(1).split(", "):
            name, _, default = part.partition("=")
            assert name in parameters, (function.__name__, name)
            actual = parameters[name].default
            if default:
                assert actual is not inspect.Parameter.empty, (function.__name__, name, "has no default")
                assert repr(actual) == default.replace('"', "'"), (function.__name__, name, actual)
            else:
                assert actual is inspect.Parameter.empty, (function.__name__, name)
        required = [p.name for p in parameters.values() if p.default is inspect.Parameter.empty]
        assert all(f"{name}" in shown.group(1) for name in required), (function.__name__, required)
