"""The ``fast`` extra: once libvalkey / hiredis are installed, the clients the package makes and the
ones a caller passes in parse replies with them (nothing in the package forces the Python parser)."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from strands.types.session import Session, SessionType

from strands_valkey_session_manager import ValkeySessionManager, ValkeySessionRepository
from strands_valkey_session_manager.servers import ServerProcess


def _parser_of(client: Any) -> str:
    pool = client.connection_pool
    connection = pool.get_connection("PING")
    try:
        return type(connection._parser).__name__
    finally:
        pool.release(connection)


@pytest.mark.skipif(importlib.util.find_spec("libvalkey") is None, reason="libvalkey (extra fast) not installed")
def test_valkey_py_uses_libvalkey(valkey9_server: ServerProcess) -> None:
    import valkey

    manager = ValkeySessionManager.from_url(
        f"valkey://{valkey9_server.host}:{valkey9_server.port}", session_id="fast-extra"
    )
    try:
        assert _parser_of(manager.client) == "_LibvalkeyParser"
    finally:
        manager.close()
    client = valkey.Valkey(valkey9_server.host, valkey9_server.port)
    repo = ValkeySessionRepository(client)
    repo.create_session(Session(session_id="fast-extra-2", session_type=SessionType.AGENT))
    assert _parser_of(client) == "_LibvalkeyParser"
    repo.delete_session("fast-extra-2")


@pytest.mark.skipif(importlib.util.find_spec("hiredis") is None, reason="hiredis (extra fast) not installed")
def test_redis_py_uses_hiredis(valkey9_server: ServerProcess) -> None:
    import redis

    client = redis.Redis(valkey9_server.host, valkey9_server.port)
    repo = ValkeySessionRepository(client)
    repo.create_session(Session(session_id="fast-extra-3", session_type=SessionType.AGENT))
    assert _parser_of(client) == "_HiredisParser"
    repo.delete_session("fast-extra-3")
