"""Record size limit and garbled stored data, on every server and client.

- ``max_record_bytes``: a record over the limit raises ``SessionTooLargeError`` before any I/O and
  leaves the server exactly as it was, for messages, agents, orchestrator state, sessions and
  imports; the default (32 MiB) is documented; a 20 MiB image under the default round-trips exactly.
- Garbled data under our keys (a truncated record, binary junk, valid JSON of the wrong shape, a key
  of the wrong type) raises ``CorruptRecordError`` naming the key, and every other record of the
  session stays readable.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import (
    CorruptRecordError,
    SessionTooLargeError,
    ValkeySessionManager,
    ValkeySessionRepository,
    _codec,
)
from strands_valkey_session_manager.repository import DEFAULT_MAX_RECORD_BYTES

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 4096
PREFIX = "lim"
MIB = 1024 * 1024


def _message(message_id: int, text: str = "hello", **extra: Any) -> SessionMessage:
    return SessionMessage(message={"role": "user", "content": [{"text": text}]}, message_id=message_id, **extra)


def _agent(agent_id: str, blob: str = "") -> SessionAgent:
    return SessionAgent(agent_id=agent_id, state={"blob": blob}, conversation_manager_state={})


class _Orchestrator:
    """The part of ``MultiAgentBase`` the repository uses."""

    def __init__(self, orchestrator_id: str, blob: str = "") -> None:
        self.id = orchestrator_id
        self.blob = blob

    def serialize_state(self) -> dict[str, Any]:
        return {"status": "running", "blob": self.blob}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _everywhere(client: Any) -> dict[str, Any]:
    """KEYS goes to one node of a cluster unless told to ask every primary."""
    return {"target_nodes": type(client).PRIMARIES} if hasattr(client, "get_primaries") else {}


def _server_state(client: Any, prefix: str = PREFIX) -> dict[str, Any]:
    """Every key under the prefix with its type, value and expiry: equal before and after means
    nothing was written."""
    state: dict[str, Any] = {}
    for raw_key in set(client.keys(f"{prefix}:*", **_everywhere(client))):
        key = _text(raw_key)
        kind = _text(client.type(key))
        if kind == "hash":
            value: Any = {_text(k): v for k, v in client.hgetall(key).items()}
        elif kind == "zset":
            value = [_text(m) for m in client.zrange(key, 0, -1)]
        else:
            value = client.get(key)
        state[key] = (kind, value, client.pttl(key) > 0)
    return state


def _populated(client: Any, **kwargs: Any) -> ValkeySessionRepository:
    """A session ``s`` with agents ``a`` and ``b``, two messages each, and orchestrator ``o``."""
    repo = ValkeySessionRepository(client, key_prefix=PREFIX, **kwargs)
    repo.create_session(Session(session_id="s", session_type=SessionType.AGENT), user_id="u", tags=["t"])
    for agent_id in ["a", "b"]:
        repo.create_agent("s", _agent(agent_id))
        for i in range(2):
            repo.create_message("s", agent_id, _message(i, f"{agent_id}{i}"))
    repo.create_multi_agent("s", _Orchestrator("o"))  # type: ignore[arg-type]
    return repo


# -- max_record_bytes -------------------------------------------------------------------------

_BIG = "x" * (LIMIT + 1)
_OVERSIZE_WRITES = {
    "create_message (new id)": lambda r: r.create_message("s", "a", _message(7, _BIG)),
    "create_message (overwrite)": lambda r: r.create_message("s", "a", _message(0, _BIG)),
    "update_message": lambda r: r.update_message("s", "a", _message(0, _BIG)),
    "update_message (redaction)": lambda r: r.update_message("s", "a", _message(0, redact_message={"text": _BIG})),
    "create_agent (new)": lambda r: r.create_agent("s", _agent("c", _BIG)),
    "create_agent (overwrite)": lambda r: r.create_agent("s", _agent("a", _BIG)),
    "update_agent": lambda r: r.update_agent("s", _agent("a", _BIG)),
    "create_multi_agent (new)": lambda r: r.create_multi_agent("s", _Orchestrator("p", _BIG)),
    "create_multi_agent (overwrite)": lambda r: r.create_multi_agent("s", _Orchestrator("o", _BIG)),
    "update_multi_agent": lambda r: r.update_multi_agent("s", _Orchestrator("o", _BIG)),
    "create_session": lambda r: r.create_session(Session(session_id=_BIG, session_type=SessionType.AGENT)),
}


# The size check runs before any I/O, so one standalone server and the cluster are enough.
@pytest.mark.validation
@pytest.mark.backends("valkey9", "cluster")
@pytest.mark.parametrize("write", list(_OVERSIZE_WRITES), ids=list(_OVERSIZE_WRITES))
def test_oversize_record_raises_and_writes_nothing(client: Any, write: str) -> None:
    repo = _populated(client, max_record_bytes=LIMIT)
    before = _server_state(client)
    with pytest.raises(SessionTooLargeError, match=rf"exceeds max_record_bytes={LIMIT}") as caught:
        _OVERSIZE_WRITES[write](repo)
    assert f"key=<{PREFIX}:" in str(caught.value)
    assert _server_state(client) == before


@pytest.mark.validation
@pytest.mark.backends("valkey9", "cluster")
@pytest.mark.parametrize("kind", ["message", "agent", "multi_agent"])
def test_import_with_an_oversize_record_writes_nothing(client: Any, kind: str) -> None:
    roomy = _populated(client)
    if kind == "message":
        roomy.create_message("s", "b", _message(5, _BIG))
    elif kind == "agent":
        roomy.update_agent("s", _agent("b", _BIG))
    else:
        roomy.update_multi_agent("s", _Orchestrator("o", _BIG))  # type: ignore[arg-type]
    exported = roomy.export_session("s")
    roomy.delete_session("s")
    assert _server_state(client) == {}
    tight = ValkeySessionRepository(client, key_prefix=PREFIX, max_record_bytes=LIMIT)
    with pytest.raises(SessionTooLargeError, match=rf"exceeds max_record_bytes={LIMIT}"):
        tight.import_session(exported)
    assert _server_state(client) == {}
    assert tight.read_session("s") is None
    assert tight.list_sessions().sessions == []


@pytest.mark.validation
@pytest.mark.backends("valkey9", "cluster")
def test_import_over_an_existing_session_with_an_oversize_record_keeps_it(client: Any) -> None:
    roomy = _populated(client)
    roomy.create_message("s", "b", _message(5, _BIG))
    exported = roomy.export_session("s")
    roomy.delete_session("s")
    tight = _populated(client, max_record_bytes=LIMIT)
    before = _server_state(client)
    with pytest.raises(SessionTooLargeError):
        tight.import_session(exported, overwrite=True)
    assert _server_state(client) == before


@pytest.mark.backends("valkey9", "cluster")
def test_limit_is_the_encoded_record_size_inclusive(client: Any) -> None:
    message = _message(0, "y" * 1000)
    size = len(_codec.encode_message(message))
    exact = _populated(client, max_record_bytes=size)
    exact.create_message("s", "a", message)
    assert exact.read_message("s", "a", 0) == message
    under = ValkeySessionRepository(client, key_prefix=PREFIX, max_record_bytes=size - 1)
    with pytest.raises(SessionTooLargeError, match=f"record of {size} bytes exceeds max_record_bytes={size - 1}"):
        under.create_message("s", "a", message)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "1", True, None])
def test_max_record_bytes_must_be_a_positive_int(standalone_client: Any, bad: Any) -> None:
    with pytest.raises(ValueError, match="max_record_bytes"):
        ValkeySessionRepository(standalone_client, max_record_bytes=bad)


def test_default_limit_is_32_mib_and_documented(standalone_client: Any) -> None:
    assert DEFAULT_MAX_RECORD_BYTES == 32 * MIB
    assert ValkeySessionRepository(standalone_client).max_record_bytes == 32 * MIB
    manager = ValkeySessionManager(session_id="s", client=standalone_client)
    assert manager.max_record_bytes == 32 * MIB
    readme = (ROOT / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `max_record_bytes`"))
    assert "default 32 MiB" in row
    assert "SessionTooLargeError" in row
    assert "writes nothing" in row
    architecture = (ROOT / "ARCHITECTURE.md").read_text()
    assert re.search(
        r"\| `SessionTooLargeError` \| a record larger than `max_record_bytes` \(default 32 MiB\) \| nothing \|",
        architecture,
    )


@pytest.mark.backends("valkey9")
@pytest.mark.parametrize("client_kind", ["valkey-py-str", "redis-py-bytes"], indirect=True)
def test_20_mib_image_round_trips_exactly_under_the_default_limit(backend: Any, client_kind: str) -> None:
    image = os.urandom(20 * MIB)
    made = backend.make_client(client_kind)
    try:
        repo = ValkeySessionRepository(made, key_prefix=PREFIX)
        repo.create_session(Session(session_id="big", session_type=SessionType.AGENT))
        repo.create_agent("big", _agent("a"))
        content: list[Any] = [
            {"text": "look"},
            {"image": {"format": "png", "source": {"bytes": image}}},
        ]
        message = SessionMessage(message={"role": "user", "content": content}, message_id=0)
        assert len(_codec.encode_message(message)) > 26 * MIB  # base64: the record is 4/3 of the image
        repo.create_message("big", "a", message)
        for read in (repo.read_message("big", "a", 0), *repo.list_messages("big", "a")):
            assert read is not None
            assert read.message["content"][1]["image"]["source"]["bytes"] == image
        repo.fork_session("big", "copy")
        (copied,) = repo.list_messages("copy", "a")
        assert copied.message["content"][1]["image"]["source"]["bytes"] == image
        exported = repo.export_session("big")
        repo.delete_session("big")
        repo.import_session(exported)
        assert repo.read_message("big", "a", 0) == message
    finally:
        made.flushall()
        made.close()


def test_25_mib_image_exceeds_the_default_limit_once_encoded(standalone_client: Any) -> None:
    client = standalone_client
    repo = _populated(client)
    before = _server_state(client)
    message = SessionMessage(
        message={"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": bytes(25 * MIB)}}}]},
        message_id=9,
    )
    with pytest.raises(SessionTooLargeError, match=f"exceeds max_record_bytes={32 * MIB}"):
        repo.create_message("s", "a", message)
    assert _server_state(client) == before


# -- garbled records --------------------------------------------------------------------------

# Decoding depends on the client (valkey-py/redis-py, decode_responses) and the scripts' errors on the
# server, so these run with every client on Valkey 9, Redis 7 and the cluster.


def _field_of(repo: ValkeySessionRepository, client: Any, record: str) -> tuple[str, str]:
    """The key and hash field holding ``record`` (message ``a``/0, agent ``a``, orchestrator ``o``,
    the session record)."""
    keys = repo.session_keys("s")
    if record == "message":
        member = next(_text(m) for m in client.zrange(keys.order, 0, -1) if _text(m).startswith("a:"))
        return keys.messages, member
    if record == "agent":
        return keys.agents, "a"
    if record == "multi_agent":
        return keys.multi, "o"
    return keys.session, "record"


def _garble(value: bytes, how: str) -> bytes:
    if how == "truncated":
        return value[: len(value) // 2]
    if how == "not_json":
        return b"<html>not a record</html>"
    if how == "wrong_shape":
        return b'{"role": 1}'
    if how == "json_array":
        return b"[1, 2, 3]"
    raise AssertionError(how)


def _reads_of(record: str) -> dict[str, Any]:
    """The reads that must refuse the garbled record."""
    if record == "message":
        return {
            "read_message": lambda r: r.read_message("s", "a", 0),
            "list_messages": lambda r: r.list_messages("s", "a"),
        }
    if record == "agent":
        return {"read_agent": lambda r: r.read_agent("s", "a"), "export_session": lambda r: r.export_session("s")}
    if record == "multi_agent":
        return {
            "read_multi_agent": lambda r: r.read_multi_agent("s", "o"),
            "export_session": lambda r: r.export_session("s"),
        }
    return {"read_session": lambda r: r.read_session("s"), "export_session": lambda r: r.export_session("s")}


def _assert_rest_readable(repo: ValkeySessionRepository, garbled: str) -> None:
    """Every record of session ``s`` but the garbled one reads back as written."""
    if garbled != "session":
        session = repo.read_session("s")
        assert session is not None
        assert session.session_id == "s"
    if garbled != "agent":
        assert repo.read_agent("s", "a") is not None
    assert repo.read_agent("s", "b") is not None
    if garbled != "message":
        assert [m.message["content"][0]["text"] for m in repo.list_messages("s", "a")] == ["a0", "a1"]
    read = repo.read_message("s", "a", 1)
    assert read is not None
    assert read.message["content"][0]["text"] == "a1"
    assert [m.message["content"][0]["text"] for m in repo.list_messages("s", "b")] == ["b0", "b1"]
    if garbled != "multi_agent":
        assert repo.read_multi_agent("s", "o") == {"status": "running", "blob": ""}
    info = repo.session_info("s")
    assert info is not None
    assert info.message_counts == {"a": 2, "b": 2}
    assert [i.session_id for i in repo.list_sessions().sessions] == ["s"]


@pytest.mark.backends("valkey9", "redis7", "cluster")
@pytest.mark.parametrize(
    ("record", "how"),
    [
        (record, how)
        for record in ["message", "agent", "multi_agent", "session"]
        for how in ["truncated", "not_json", "wrong_shape", "json_array"]
        # Orchestrator state is any JSON object, so no object has the wrong shape for it.
        if (record, how) != ("multi_agent", "wrong_shape")
    ],
)
def test_garbled_record_is_a_corrupt_record_error_naming_the_key(client: Any, record: str, how: str) -> None:
    repo = _populated(client)
    key, field = _field_of(repo, client, record)
    raw = client.hget(key, field)
    client.hset(key, field, _garble(raw if isinstance(raw, bytes) else raw.encode(), how))
    for name, read in _reads_of(record).items():
        with pytest.raises(CorruptRecordError) as caught:
            read(repo)
        assert key in str(caught.value), name
        assert "session_id=<s>" in str(caught.value), name
    _assert_rest_readable(repo, record)


_JUNK = b"\xff\xfe\x00\x80\xc3(junk"


@pytest.mark.backends("valkey9", "redis7", "cluster")
@pytest.mark.parametrize("record", ["message", "agent", "multi_agent", "session"])
def test_binary_junk_is_a_corrupt_record_error_naming_the_key(client: Any, record: str) -> None:
    # A decoding client turns the reply into text before the repository sees it; session_info
    # (and so list_sessions) decodes every field of the session hash, the record included.
    repo = _populated(client)
    key, field = _field_of(repo, client, record)
    client.hset(key, field, _JUNK)
    for name, read in _reads_of(record).items():
        with pytest.raises(CorruptRecordError) as caught:
            read(repo)
        assert key in str(caught.value), name
    _assert_rest_readable(repo, record)


@pytest.mark.backends("valkey9", "redis7", "cluster")
@pytest.mark.parametrize("field", ["created", "updated", "tags"])
def test_garbled_catalog_field_is_a_corrupt_record_error(client: Any, field: str) -> None:
    repo = _populated(client)
    keys = repo.session_keys("s")
    client.hset(keys.session, field, "not-a-number[" if field != "tags" else "{not json")
    with pytest.raises(CorruptRecordError, match=re.escape(keys.session)):
        repo.session_info("s")


@pytest.mark.backends("valkey9", "redis7", "cluster")
def test_index_entry_without_its_record_is_a_corrupt_record_error(client: Any) -> None:
    repo = _populated(client)
    key, member = _field_of(repo, client, "message")
    client.hdel(key, member)
    with pytest.raises(CorruptRecordError, match="SVSM-MISSING") as caught:
        repo.list_messages("s", "a")
    assert key in str(caught.value)
    assert repo.read_message("s", "a", 0) is None
    assert [m.message["content"][0]["text"] for m in repo.list_messages("s", "b")] == ["b0", "b1"]


@pytest.mark.backends("valkey9", "redis7", "cluster")
def test_update_of_a_record_without_trailing_created_at_is_refused_and_keeps_it(client: Any) -> None:
    repo = _populated(client)
    key, field = _field_of(repo, client, "message")
    client.hset(key, field, '{"message": {"role": "user", "content": []}, "message_id": 0}')
    with pytest.raises(CorruptRecordError, match="created_at") as caught:
        repo.update_message("s", "a", _message(0, "new"))
    assert key in str(caught.value)
    assert _text(client.hget(key, field)) == '{"message": {"role": "user", "content": []}, "message_id": 0}'


# -- keys of the wrong type -------------------------------------------------------------------

# Which session keys each read touches (the key of the HGET, or what its script reads: list_messages
# reads the agent's version from the session hash, session_info the agent ids from the agents hash;
# read_agent pipelines the agent's version and the session's shape with its HGET).
_READS: dict[str, tuple[Any, frozenset[str]]] = {
    "read_session": (lambda r: r.read_session("s"), frozenset({"session"})),
    "read_agent": (lambda r: r.read_agent("s", "a"), frozenset({"agents", "session"})),
    "read_message": (lambda r: r.read_message("s", "a", 0), frozenset({"messages"})),
    "list_messages": (lambda r: r.list_messages("s", "a"), frozenset({"session", "order", "messages"})),
    "read_multi_agent": (lambda r: r.read_multi_agent("s", "o"), frozenset({"multi"})),
    "session_info": (lambda r: r.session_info("s"), frozenset({"session", "agents"})),
}
_WRONG_TYPE_CASES = [
    pytest.param(attr, read, id=f"{attr}-{read}") for read, (_, touched) in _READS.items() for attr in sorted(touched)
]


@pytest.mark.backends("valkey9", "redis7", "cluster")
@pytest.mark.parametrize(("attr", "read"), _WRONG_TYPE_CASES)
def test_key_of_the_wrong_type_is_a_corrupt_record_error_naming_it(client: Any, attr: str, read: str) -> None:
    repo = _populated(client)
    key = getattr(repo.session_keys("s"), attr)
    expected = {name: call(repo) for name, (call, _) in _READS.items()}
    client.delete(key)
    client.rpush(key, "someone else's list")
    with pytest.raises(CorruptRecordError, match="WRONGTYPE") as caught:
        _READS[read][0](repo)
    assert f"key=<{key}>" in str(caught.value)
    # Every read that does not touch the clobbered key still returns what it did before.
    for name, (call, touched) in _READS.items():
        if attr not in touched:
            assert call(repo) == expected[name], name
