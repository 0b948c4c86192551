"""Several writers on one agent: a stale writer gets SessionConflictError, never a silent overwrite.

The multi-process test hammers one agent from 2, 4 and 8 real processes for a bounded time, each
writing the way the SDK's session manager does (restore, then append message ids in sequence,
sync agent state) and restoring again after a conflict. The stored history is then checked against
what each process saw acknowledged.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest
import valkey
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import SessionConflictError, ValkeySessionManager, ValkeySessionRepository
from tests.servers import ServerProcess


def _agent(agent_id: str = "a", **state: Any) -> SessionAgent:
    return SessionAgent(agent_id=agent_id, state=dict(state), conversation_manager_state={})


def _message(message_id: int, text: str) -> SessionMessage:
    return SessionMessage(message={"role": "user", "content": [{"text": text}]}, message_id=message_id)


def _writer(client: Any) -> ValkeySessionRepository:
    return ValkeySessionRepository(client, check_versions=True)


def _restore(repo: ValkeySessionRepository, agent_id: str = "a") -> int:
    """What the SDK does on restore: read the agent, list its messages; returns the next id."""
    assert repo.read_agent("s", agent_id) is not None
    messages = repo.list_messages("s", agent_id)
    return messages[-1].message_id + 1 if messages else 0


def test_stale_append_is_refused_and_writes_nothing(store_client: Any) -> None:
    setup = _writer(store_client)
    setup.create_session(Session(session_id="s", session_type=SessionType.AGENT))
    setup.create_agent("s", _agent())
    first, second = _writer(store_client), _writer(store_client)
    assert _restore(first) == _restore(second) == 0
    first.create_message("s", "a", _message(0, "first"))
    with pytest.raises(SessionConflictError, match=r"session_id=<s>, agent_id=<a>"):
        second.create_message("s", "a", _message(0, "second"))
    assert [m.message["content"][0]["text"] for m in setup.list_messages("s", "a")] == ["first"]
    # The refused writer restores and carries on from what is stored.
    third = _writer(store_client)
    assert _restore(third) == 1
    third.create_message("s", "a", _message(1, "third"))
    first_next = _message(1, "first again")
    with pytest.raises(SessionConflictError):
        first.create_message("s", "a", first_next)


def test_stale_state_update_and_redaction_are_refused(store_client: Any) -> None:
    setup = _writer(store_client)
    setup.create_session(Session(session_id="s", session_type=SessionType.AGENT))
    setup.create_agent("s", _agent(n=0))
    setup.create_message("s", "a", _message(0, "hello"))
    first, second = _writer(store_client), _writer(store_client)
    _restore(first)
    _restore(second)
    first.update_agent("s", _agent(n=1))
    with pytest.raises(SessionConflictError):
        second.update_agent("s", _agent(n=2))
    redacted = _message(0, "[redacted]")
    with pytest.raises(SessionConflictError):
        second.update_message("s", "a", redacted)
    stored = setup.read_agent("s", "a")
    assert stored is not None
    assert stored.state == {"n": 1}
    assert setup.list_messages("s", "a")[0].message["content"][0]["text"] == "hello"


def test_distinct_agents_never_conflict(store_client: Any) -> None:
    setup = _writer(store_client)
    setup.create_session(Session(session_id="s", session_type=SessionType.AGENT))
    writers = {}
    for agent_id in ["a", "b"]:
        setup.create_agent("s", _agent(agent_id))
        writers[agent_id] = _writer(store_client)
        _restore(writers[agent_id], agent_id)
    for i in range(20):
        for agent_id, repo in writers.items():
            repo.create_message("s", agent_id, _message(i, agent_id))
            repo.update_agent("s", _agent(agent_id, i=i))
    assert all(len(setup.list_messages("s", a)) == 20 for a in writers)


def test_the_manager_checks_versions_by_default(standalone_client: Any) -> None:
    manager = ValkeySessionManager(session_id="s", client=standalone_client)
    assert manager._versions is not None
    unchecked = ValkeySessionManager(session_id="t", client=standalone_client, check_versions=False)
    assert unchecked._versions is None


def _hammer(url: str, worker: int, seconds: float, queue: Any) -> None:
    """One writer process; whatever it raises reaches the test as text instead of a silent exit."""
    try:
        _hammer_for(url, worker, seconds, queue)
    except BaseException as e:
        queue.put((worker, f"{type(e).__name__}: {e}"))
        raise


def _hammer_for(url: str, worker: int, seconds: float, queue: Any) -> None:
    client = valkey.Valkey.from_url(url, decode_responses=True)
    acked: list[tuple[int, str]] = []
    conflicts = 0
    deadline = time.monotonic() + seconds
    repo = _writer(client)
    next_id = _restore(repo)
    seq = 0
    while time.monotonic() < deadline:
        text = f"w{worker}-{seq}"
        seq += 1
        try:
            repo.create_message("s", "a", _message(next_id, text))
        except SessionConflictError:
            conflicts += 1
            repo = _writer(client)  # a new manager: restore and go on from what is stored
            next_id = _restore(repo)
            continue
        acked.append((next_id, text))
        next_id += 1
        if seq % 3 == 0:
            try:
                repo.update_agent("s", _agent(last_writer=worker, seq=seq))
            except SessionConflictError:
                repo = _writer(client)
                next_id = _restore(repo)
    queue.put((worker, acked, conflicts, seq))
    client.close()


@pytest.mark.parametrize("processes", [2, 4, 8])
def test_processes_hammering_one_agent_lose_nothing(valkey9_server: ServerProcess, processes: int) -> None:
    client = valkey.Valkey.from_url(valkey9_server.url, decode_responses=True)
    client.flushall()
    setup = _writer(client)
    setup.create_session(Session(session_id="s", session_type=SessionType.AGENT))
    setup.create_agent("s", _agent())
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=_hammer, args=(valkey9_server.url, w, 1.5, queue)) for w in range(processes)]
    for p in workers:
        p.start()
    results = [queue.get(timeout=60) for _ in workers]
    failed = [result for result in results if len(result) == 2]
    assert not failed, f"writer processes failed: {failed}"
    for p in workers:
        p.join(timeout=30)
        assert p.exitcode == 0
    stored = setup.list_messages("s", "a")
    texts = [m.message["content"][0]["text"] for m in stored]
    acked = {pair for _, pairs, _, _ in results for pair in pairs}
    attempts = sum(seq for *_, seq in results)
    conflicts = sum(c for _, _, c, _ in results)
    # 0 acknowledged messages lost: each sits at the id it was acknowledged for.
    assert {(m.message_id, m.message["content"][0]["text"]) for m in stored} == acked
    # 0 duplicates, no gaps, and every append is either acknowledged or reported as a conflict.
    assert len(texts) == len(set(texts))
    assert [m.message_id for m in stored] == list(range(len(stored)))
    assert len(acked) + conflicts == attempts
    assert len(acked) > processes
    client.close()
