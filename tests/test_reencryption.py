"""Re-encryption under a new data key on real servers: after it the old data key opens nothing
stored, a write that lands between its read and its swap is re-read and kept (compare and set), a
writer still holding the old key gets a conflict, and the walk over every session resumes from a
cursor."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from strands.types.exceptions import SessionException
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import (
    DecryptionError,
    LocalKeyProvider,
    SessionConflictError,
    ValkeySessionRepository,
)
from strands_valkey_session_manager._client import Plan, ScriptCall, Step, run_plan
from strands_valkey_session_manager._seal import Binding, Cipher, UnsealError, open_blob
from strands_valkey_session_manager.encryption import (
    FileKeyStore,
    KeyStoreProvider,
    ReencryptProgress,
    _p_reencrypt,
    reencrypt_all_sessions,
    reencrypt_session,
)
from tests.interleave import Orchestrator

SEALED = "__svsm_sealed__"
TEXT = "secret " * 40
PROVIDER = LocalKeyProvider({"k1": LocalKeyProvider.generate_key()}, "k1")
_T = TypeVar("_T")


def _message(message_id: int, text: str = TEXT) -> SessionMessage:
    return SessionMessage(message={"role": "user", "content": [{"text": text}]}, message_id=message_id)


def _fill(repo: ValkeySessionRepository, session_id: str = "s1", count: int = 4) -> list[SessionMessage]:
    repo.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))
    repo.create_agent(session_id, SessionAgent(agent_id="agent", state={"n": TEXT}, conversation_manager_state={}))
    messages = [_message(i, f"{i} {TEXT}") for i in range(count)]
    for message in messages:
        repo.create_message(session_id, "agent", message)
    repo.create_multi_agent(session_id, Orchestrator("swarm", {"history": [TEXT]}))  # type: ignore[arg-type]
    return messages


def _data_key(client: Any, provider: Any, session_id: str) -> bytes:
    wrapped = base64.b64decode(client.hget(f"strands:{{{session_id}}}:session", "dek"))
    return bytes(provider.unwrap(wrapped, {"session_id": session_id}))


def _stored_blobs(client: Any, session_id: str) -> list[tuple[str, str, str]]:
    """(key, field, blob) of every sealed record stored for the session."""
    found = []
    for name in ("agents", "messages", "multi"):
        key = f"strands:{{{session_id}}}:{name}"
        for field, value in client.hgetall(key).items():
            record = orjson.loads(value)
            found.append((key, field.decode() if isinstance(field, bytes) else field, record[SEALED]))
    return found


def _opens(blob: str, key: bytes, session_id: str, redis_key: str, field: str) -> bool:
    try:
        open_blob(blob, lambda: Cipher(key), Binding(session_id, redis_key), field)
    except UnsealError:
        return False
    return True


@pytest.mark.backends("valkey9", "redis7", "cluster")
def test_after_reencryption_the_old_data_key_opens_nothing(client: Any) -> None:
    repo = ValkeySessionRepository(client, key_provider=PROVIDER, compress_threshold=64)
    messages = _fill(repo)
    old_key = _data_key(client, PROVIDER, "s1")
    blobs = _stored_blobs(client, "s1")
    assert len(blobs) == 6 and all(_opens(b, old_key, "s1", k, f) for k, f, b in blobs)

    assert reencrypt_session(ValkeySessionRepository(client, key_provider=PROVIDER), "s1") is True
    new_key = _data_key(client, PROVIDER, "s1")
    assert new_key != old_key
    blobs = _stored_blobs(client, "s1")
    assert len(blobs) == 6
    assert not any(_opens(b, old_key, "s1", k, f) for k, f, b in blobs)
    assert all(_opens(b, new_key, "s1", k, f) for k, f, b in blobs)
    reader = ValkeySessionRepository(client, key_provider=PROVIDER)
    assert reader.list_messages("s1", "agent") == messages
    assert reader.read_multi_agent("s1", "swarm") == {"history": [TEXT]}
    agent = reader.read_agent("s1", "agent")
    assert agent is not None and agent.state == {"n": TEXT}
    # Sessions without a data key, missing sessions, repositories without a provider.
    ValkeySessionRepository(client).create_session(Session(session_id="plain", session_type=SessionType.AGENT))
    assert reencrypt_session(repo, "plain") is False
    with pytest.raises(SessionException, match="does not exist"):
        reencrypt_session(repo, "missing")
    with pytest.raises(ValueError, match="key_provider"):
        reencrypt_session(ValkeySessionRepository(client), "s1")


def _after_first_read(plan: Plan[_T], action: Callable[[], None], scripts: list[str] | None = None) -> Plan[_T]:
    """``plan``, running ``action`` (another process's write) right after its first round trip;
    the names of the scripts it sends go to ``scripts``."""
    reply: Any = None
    first = True
    while True:
        try:
            step: Step = plan.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        if scripts is not None and isinstance(step.call, ScriptCall):
            scripts.append(step.call.name)
        reply = yield step
        if first:
            first = False
            action()


@pytest.mark.backends("valkey9", "cluster")
def test_append_between_read_and_swap_is_kept(client: Any) -> None:
    writer = ValkeySessionRepository(client, key_provider=PROVIDER, check_versions=True)
    messages = _fill(writer)
    writer.list_messages("s1", "agent")  # the writer's view: current version, data key cached
    late = _message(4, "appended while re-encrypting")
    rotating = ValkeySessionRepository(client, key_provider=PROVIDER)
    calls: list[str] = []
    append = lambda: writer.create_message("s1", "agent", late)  # noqa: E731
    assert run_plan(rotating._db, _after_first_read(_p_reencrypt(rotating, "s1", 5), append, calls)) == "reencrypted"
    assert calls == ["reencrypt_session", "reencrypt_session"]  # refused once, read again, then swapped
    new_key = _data_key(client, PROVIDER, "s1")
    assert all(_opens(b, new_key, "s1", k, f) for k, f, b in _stored_blobs(client, "s1"))
    assert ValkeySessionRepository(client, key_provider=PROVIDER).list_messages("s1", "agent") == [*messages, late]

    # The writer still holds the old data key: its next append is a conflict, nothing written.
    with pytest.raises(SessionConflictError):
        writer.create_message("s1", "agent", _message(5))
    assert ValkeySessionRepository(client, key_provider=PROVIDER).read_message("s1", "agent", 5) is None
    # A new writer (a restored agent) carries on under the new key.
    fresh = ValkeySessionRepository(client, key_provider=PROVIDER, check_versions=True)
    fresh.list_messages("s1", "agent")
    fresh.create_message("s1", "agent", _message(5))
    assert len(ValkeySessionRepository(client, key_provider=PROVIDER).list_messages("s1", "agent")) == 6


@pytest.mark.backends("valkey9")
def test_session_changing_on_every_attempt_is_a_conflict(client: Any, tmp_path: Path) -> None:
    provider = KeyStoreProvider(FileKeyStore(tmp_path / "keys"))
    repo = ValkeySessionRepository(client, key_provider=provider)
    _fill(repo)
    before = client.hgetall("strands:{s1}:messages")
    counter = iter(range(100, 200))

    def meddle() -> None:
        ValkeySessionRepository(client, key_provider=provider).create_message("s1", "agent", _message(next(counter)))

    plan = _p_reencrypt(ValkeySessionRepository(client, key_provider=provider), "s1", 1)
    with pytest.raises(SessionConflictError, match="nothing was written"):
        run_plan(repo._db, _after_first_read(plan, meddle))
    after = client.hgetall("strands:{s1}:messages")
    assert {k: v for k, v in after.items() if k in before} == before
    (directory,) = (tmp_path / "keys").iterdir()
    assert len(list(directory.iterdir())) == 1  # the unused new key was retired


@pytest.mark.backends("valkey9")
def test_reencrypt_all_sessions_resumes_from_its_cursor(client: Any, tmp_path: Path) -> None:
    local = LocalKeyProvider({"k1": LocalKeyProvider.generate_key()}, "k1")
    legacy_messages = _fill(ValkeySessionRepository(client, key_provider=local), "legacy")
    provider = KeyStoreProvider(FileKeyStore(tmp_path / "keys"), legacy=local)
    repo = ValkeySessionRepository(client, key_provider=provider)
    for i in range(5):
        _fill(repo, f"s{i}", count=2)
    ValkeySessionRepository(client).create_session(Session(session_id="plain", session_type=SessionType.AGENT))
    old_keys = {s: _data_key(client, provider, s) for s in ["legacy"] + [f"s{i}" for i in range(5)]}

    seen: list[ReencryptProgress] = []

    def stop_after_three(progress: ReencryptProgress) -> None:
        seen.append(progress)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reencrypt_all_sessions(repo, progress=stop_after_three)
    first = [p.session_id for p in seen]
    resumed: list[ReencryptProgress] = []
    done = reencrypt_all_sessions(repo, cursor=seen[-1].cursor, progress=resumed.append)
    rest = [p.session_id for p in resumed]
    assert sorted(first + rest) == sorted([*old_keys, "plain"])  # each session exactly once
    assert [p.visited for p in resumed] == list(range(1, len(rest) + 1))
    outcomes = {p.session_id: p.outcome for p in seen + resumed}
    assert outcomes.pop("plain") == "not encrypted"
    assert set(outcomes.values()) == {"reencrypted"}
    assert done == len(rest) - ("plain" in rest)
    for session_id, old_key in old_keys.items():
        assert not any(_opens(b, old_key, session_id, k, f) for k, f, b in _stored_blobs(client, session_id))
    assert ValkeySessionRepository(client, key_provider=provider).list_messages("legacy", "agent") == legacy_messages


@pytest.mark.backends("valkey9")
def test_reencryption_reports_a_record_that_does_not_open(client: Any) -> None:
    repo = ValkeySessionRepository(client, key_provider=PROVIDER)
    _fill(repo)
    key = "strands:{s1}:messages"
    member = repo._member("agent", 1)
    record = orjson.loads(client.hget(key, member))
    raw = bytearray(base64.b64decode(record[SEALED]))
    raw[-1] ^= 1
    record[SEALED] = base64.b64encode(bytes(raw)).decode()
    client.hset(key, member, orjson.dumps(record))
    dek = client.hget("strands:{s1}:session", "dek")
    with pytest.raises(DecryptionError, match=rf"key=<{key}>"):
        reencrypt_session(repo, "s1")
    assert client.hget("strands:{s1}:session", "dek") == dek  # nothing swapped
