"""Runs inside the package-0.1 venv (``benchmarks/.cache/pkg01-venv``): that venv holds the
published ``strands-valkey-session-manager==0.1.0``, which shares this package's import name, so
it is measured in a process of its own. Reads one JSON request per line on stdin, answers one JSON
line on stdout; each timed call is measured here, without the pipe.

Requests: ``{"op": "populate", "sid", "n", "size"}``, ``{"op": "restore", "sid"}`` (read_agent +
list_messages, as for the other systems), ``{"op": "append", "sid", "i", "size"}``, ``{"op": "quit"}``.
This file imports nothing from the repository (it runs against the old package).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import valkey
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import ValkeySessionManager

AGENT_ID = "agent"
# The same text as benchmarks/peers.py (kept in step by hand: this file cannot import it).
_PROSE = (
    "Valkey keeps every session in one hash slot, so a restore reads one sorted set and one hash. "
    "The agent asked for the weather in three cities and compared the forecasts line by line. "
)


def text_of(size: int) -> str:
    return (_PROSE * (size // len(_PROSE) + 1))[:size]


def message(message_id: int, text: str) -> SessionMessage:
    role: Any = "user" if message_id % 2 == 0 else "assistant"
    return SessionMessage(message={"role": role, "content": [{"text": text}]}, message_id=message_id)


class _Repo(ValkeySessionManager):
    """The 0.1 manager used as a repository only (its constructor also creates or reads a session)."""

    def __init__(self, client: Any) -> None:
        self.client = client


def main() -> int:
    host, port, db = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    client = valkey.Valkey(host, port, db=db)
    client.flushdb()
    repo = _Repo(client)
    texts: dict[int, str] = {}
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        if op == "quit":
            break
        if op == "populate":
            sid, text = req["sid"], texts.setdefault(req["size"], text_of(req["size"]))
            if repo.read_session(sid) is None:
                repo.create_session(Session(session_id=sid, session_type=SessionType.AGENT))
                repo.create_agent(sid, SessionAgent(agent_id=AGENT_ID, state={}, conversation_manager_state={}))
            for i in range(req.get("start", 0), req.get("start", 0) + req["n"]):
                repo.create_message(sid, AGENT_ID, message(i, text))
            print(json.dumps({"ok": True}), flush=True)
        elif op == "restore":
            t0 = time.perf_counter_ns()
            repo.read_agent(req["sid"], AGENT_ID)
            msgs = repo.list_messages(req["sid"], AGENT_ID, offset=0)
            us = (time.perf_counter_ns() - t0) / 1000
            print(json.dumps({"us": us, "count": len(msgs)}), flush=True)
        elif op == "append":
            msg = message(req["i"], texts.setdefault(req["size"], text_of(req["size"])))
            t0 = time.perf_counter_ns()
            repo.create_message(req["sid"], AGENT_ID, msg)
            print(json.dumps({"us": (time.perf_counter_ns() - t0) / 1000}), flush=True)
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
