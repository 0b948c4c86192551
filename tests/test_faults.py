"""A server that goes away: typed errors naming operation and session, never a hang, nothing lost."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import valkey
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import SessionStoreUnavailableError, ValkeySessionRepository
from tests.servers import ServerProcess, kill9, restart, start_server


@pytest.fixture
def durable_server() -> Iterator[ServerProcess]:
    server = start_server("valkey9", appendonly=True)
    try:
        yield server
    finally:
        server.stop()


def _message(i: int) -> SessionMessage:
    return SessionMessage(message={"role": "user", "content": [{"text": str(i)}]}, message_id=i)


def _repo(port: int, **client_kwargs: Any) -> ValkeySessionRepository:
    client = valkey.Valkey(port=port, socket_timeout=1, socket_connect_timeout=1, **client_kwargs)
    return ValkeySessionRepository(client)


def test_server_down_raises_typed_error_naming_operation_and_session(durable_server: ServerProcess) -> None:
    repo = _repo(durable_server.port)
    repo.create_session(Session(session_id="s:1", session_type=SessionType.AGENT))
    repo.create_agent("s:1", SessionAgent(agent_id="a", state={}, conversation_manager_state={}))
    repo.create_message("s:1", "a", _message(0))
    kill9(durable_server)
    started = time.monotonic()
    with pytest.raises(SessionStoreUnavailableError, match=r"operation=<create_message>, session_id=<s:1>"):
        repo.create_message("s:1", "a", _message(1))
    with pytest.raises(SessionStoreUnavailableError, match=r"operation=<list_messages>"):
        repo.list_messages("s:1", "a")
    with pytest.raises(SessionStoreUnavailableError, match=r"operation=<read_session>"):
        repo.read_session("s:1")
    assert time.monotonic() - started < 10
    # After a restart (append-only file, fsync always) every acknowledged write is there, and the
    # same repository object carries on.
    restart(durable_server)
    assert [m.message_id for m in repo.list_messages("s:1", "a")] == [0]
    repo.create_message("s:1", "a", _message(1))
    assert [m.message_id for m in repo.list_messages("s:1", "a")] == [0, 1]


def test_unreachable_server_fails_fast() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    repo = _repo(port)
    started = time.monotonic()
    with pytest.raises(SessionStoreUnavailableError, match="create_session"):
        repo.create_session(Session(session_id="s", session_type=SessionType.AGENT))
    assert time.monotonic() - started < 5


def test_a_stalled_server_times_out_instead_of_hanging() -> None:
    # A listener that accepts and never answers: the client's socket timeout must surface as our error.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        accepted: list[socket.socket] = []
        thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
        thread.start()
        repo = _repo(port)
        started = time.monotonic()
        with pytest.raises(SessionStoreUnavailableError, match="read_agent"):
            repo.read_agent("s", "a")
        assert time.monotonic() - started < 5
        for conn in accepted:
            conn.close()


def test_append_rides_out_a_restart_with_retries(durable_server: ServerProcess) -> None:
    client = valkey.Valkey(port=durable_server.port, socket_timeout=1, socket_connect_timeout=1)
    repo = ValkeySessionRepository(client, retries=40, retry_backoff=0.05, check_versions=True)
    repo.create_session(Session(session_id="s", session_type=SessionType.AGENT))
    repo.create_agent("s", SessionAgent(agent_id="a", state={}, conversation_manager_state={}))
    for i in range(3):
        repo.create_message("s", "a", _message(i))
    kill9(durable_server)
    restarter = threading.Timer(0.4, restart, args=(durable_server,))
    restarter.start()
    try:
        for i in range(3, 6):
            repo.create_message("s", "a", _message(i))  # waits out the restart, then lands once
    finally:
        restarter.join()
    assert [m.message_id for m in repo.list_messages("s", "a")] == list(range(6))


def test_repeating_a_write_whose_reply_was_lost_is_not_a_conflict(standalone_client: Any) -> None:
    repo = ValkeySessionRepository(standalone_client, check_versions=True)
    session = Session(session_id="s", session_type=SessionType.AGENT)
    repo.create_session(session)
    repo.create_session(session)  # the same call again (same record): recognised as our own create
    with pytest.raises(Exception, match="already exists"):
        repo.create_session(Session(session_id="s", session_type=SessionType.AGENT))
    agent = SessionAgent(agent_id="a", state={}, conversation_manager_state={})
    repo.create_agent("s", agent)
    before = repo._versions[("s", "a")]  # type: ignore[index]
    message = _message(0)
    repo.create_message("s", "a", message)
    # As if the reply had been lost: the repository still expects the old version and sends again.
    repo._versions[("s", "a")] = before  # type: ignore[index]
    repo.create_message("s", "a", message)
    assert len(repo.list_messages("s", "a")) == 1
    state = SessionAgent(agent_id="a", state={"n": 1}, conversation_manager_state={})
    before = repo._versions[("s", "a")]  # type: ignore[index]
    repo.update_agent("s", state)
    repo._versions[("s", "a")] = before  # type: ignore[index]
    repo.update_agent("s", state)
    # A different record under a stale version is still a conflict.
    repo._versions[("s", "a")] = before  # type: ignore[index]
    from strands_valkey_session_manager import SessionConflictError

    with pytest.raises(SessionConflictError):
        repo.create_message("s", "a", _message(1))


@pytest.mark.parametrize("bad", [{"retries": -1}, {"retries": 1.5}, {"retry_backoff": -0.1}])
def test_bad_retry_settings_raise_value_error(standalone_client: Any, bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="retr"):
        ValkeySessionRepository(standalone_client, **bad)


# Which operations repeat on SessionStoreUnavailableError (docs/concurrency.md, "Retries").
RETRIED = {
    "create_session",
    "read_session",
    "delete_session",
    "create_agent",
    "read_agent",
    "update_agent",
    "create_message",
    "read_message",
    "update_message",
    "list_messages",
    "create_multi_agent",
    "read_multi_agent",
    "update_multi_agent",
    "session_info",
    "list_sessions",
    "sweep_catalog",
}
NOT_RETRIED = {"prune", "fork_session", "export_records", "export_session", "import_session", "write_export"}


@pytest.mark.parametrize("face", ["sync", "asyncio"])
def test_the_documented_operations_are_the_retried_ones(face: str) -> None:
    """A retried method is wrapped by ``retrying``/``aretrying`` (``functools.wraps``: ``__wrapped__``);
    every other public operation reaches the caller with the first ``SessionStoreUnavailableError``."""
    from strands_valkey_session_manager import AsyncValkeySessionRepository

    cls: type[Any] = ValkeySessionRepository if face == "sync" else AsyncValkeySessionRepository
    operations = {name for name in dir(cls) if not name.startswith("_") and callable(getattr(cls, name))}
    wrapped = {name for name in operations if hasattr(getattr(cls, name), "__wrapped__")}
    assert wrapped == RETRIED
    assert operations - wrapped >= NOT_RETRIED
