"""Run by tests/test_compat.py inside a Python 3.10 venv holding strands-agents 1.0.0."""

import sys

import valkey
from strands import Agent

from strands_valkey_session_manager import ValkeySessionManager
from strands_valkey_session_manager.scripted_model import ScriptedModel
from strands_valkey_session_manager.servers import start_server

print(sys.version.split()[0])
with start_server("valkey8") as server:
    client = valkey.Valkey.from_url(server.url, decode_responses=True)
    for write_behind in (False, True):
        session_id = f"s{write_behind}"
        manager = ValkeySessionManager(session_id=session_id, client=client, write_behind=write_behind)
        model = ScriptedModel(["hi there", "again"])
        agent = Agent(agent_id="a", model=model, session_manager=manager, callback_handler=None)
        agent("hello")
        agent("more")
        restorer = ValkeySessionManager(session_id=session_id, client=client)
        restored = Agent(agent_id="a", model=ScriptedModel([]), session_manager=restorer, callback_handler=None)
        assert restored.messages == agent.messages, (restored.messages, agent.messages)
        print("restored", len(restored.messages), [s.session_id for s in restorer.list_sessions().sessions])
