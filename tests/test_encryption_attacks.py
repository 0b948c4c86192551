"""Encryption at rest under attack, on real servers: stale data keys after re-encryption, a dataset
writer downgrading records, key store faults and hostile key-store directories, and key material
kept out of tracebacks' locals.

Each test here is a break found by attacking the feature (it failed before its fix), or pins the
documented limit an attack ran into."""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import valkey
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import (
    DecryptionError,
    LocalKeyProvider,
    SessionConflictError,
    ValkeySessionRepository,
    transfer,
)
from strands_valkey_session_manager._client import Plan, ScriptCall, Step, run_plan
from strands_valkey_session_manager._codec import encode_message as _encode_message
from strands_valkey_session_manager.encryption import (
    FileKeyStore,
    KeyStoreProvider,
    ValkeyKeyStore,
    destroy_data_keys,
    reencrypt_session,
    rotate_wrapping_key,
)
from strands_valkey_session_manager.transfer import parse_export
from tests.interleave import Orchestrator
from tests.servers import kill9, restart

SEALED = "__svsm_sealed__"
_T = TypeVar("_T")
TEXT = "a confidential note " * 20


def _message(message_id: int, text: str = TEXT) -> SessionMessage:
    return SessionMessage(
        message={"role": "user", "content": [{"text": f"{message_id} {text}"}]}, message_id=message_id
    )


def _fill(repo: ValkeySessionRepository, session_id: str = "s1", count: int = 2) -> list[SessionMessage]:
    repo.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))
    repo.create_agent(session_id, SessionAgent(agent_id="agent", state={"n": TEXT}, conversation_manager_state={}))
    messages = [_message(i) for i in range(count)]
    for message in messages:
        repo.create_message(session_id, "agent", message)
    repo.create_multi_agent(session_id, Orchestrator("swarm", {"step": 0}))  # type: ignore[arg-type]
    return messages


@pytest.fixture
def provider(tmp_path: Path) -> KeyStoreProvider:
    return KeyStoreProvider(FileKeyStore(tmp_path / "keys"))


# -- a repository that cached the old data key, after re-encryption ----------------------------


@pytest.mark.parametrize("check_versions", [False, True])
def test_stale_writer_after_reencryption_loses_nothing(
    standalone_client: Any, provider: KeyStoreProvider, check_versions: bool
) -> None:
    """A writer that cached the data key before another process re-encrypted the session (and
    destroyed the old key) must not store records under the destroyed key: each of its writes
    either lands readable under the session's current key, or is refused with nothing written."""
    writer = ValkeySessionRepository(standalone_client, key_provider=provider, check_versions=check_versions)
    messages = _fill(writer)
    writer.read_agent("s1", "agent")
    writer.list_messages("s1", "agent")  # data key and versions cached
    assert reencrypt_session(ValkeySessionRepository(standalone_client, key_provider=provider), "s1") is True

    acknowledged: list[SessionMessage] = []
    late = _message(2, "written by a writer holding the destroyed key")
    try:
        writer.create_message("s1", "agent", late)
        acknowledged.append(late)
    except SessionConflictError:
        pass
    orchestrator: dict[str, Any] = {"step": 0}
    try:
        writer.update_multi_agent("s1", Orchestrator("swarm", {"step": 1}))  # type: ignore[arg-type]
        orchestrator = {"step": 1}
    except SessionConflictError:
        pass
    agent_state = {"n": TEXT}
    try:
        writer.update_agent("s1", SessionAgent(agent_id="agent", state={"n": "new"}, conversation_manager_state={}))
        agent_state = {"n": "new"}
    except SessionConflictError:
        pass

    reader = ValkeySessionRepository(standalone_client, key_provider=provider)
    assert reader.list_messages("s1", "agent") == [*messages, *acknowledged]
    assert reader.read_multi_agent("s1", "swarm") == orchestrator
    agent = reader.read_agent("s1", "agent")
    assert agent is not None and agent.state == agent_state


def test_orchestrator_write_with_the_destroyed_key_is_resealed(
    standalone_client: Any, provider: KeyStoreProvider
) -> None:
    """Orchestrator state has no version to check: a write from a process holding the old data key
    is sealed again under the current one (not refused, not lost)."""
    writer = ValkeySessionRepository(standalone_client, key_provider=provider, check_versions=True)
    _fill(writer)
    writer.read_multi_agent("s1", "swarm")
    reencrypt_session(ValkeySessionRepository(standalone_client, key_provider=provider), "s1")
    writer.update_multi_agent("s1", Orchestrator("swarm", {"step": 7}))  # type: ignore[arg-type]
    writer.create_multi_agent("s1", Orchestrator("graph", {"node": "a"}))  # type: ignore[arg-type]
    reader = ValkeySessionRepository(standalone_client, key_provider=provider)
    assert reader.read_multi_agent("s1", "swarm") == {"step": 7}
    assert reader.read_multi_agent("s1", "graph") == {"node": "a"}


def test_stale_reader_after_reencryption_reads_the_new_records(
    standalone_client: Any, provider: KeyStoreProvider
) -> None:
    """A long-lived repository that read a session before it was re-encrypted reads it afterwards
    (the data key it cached no longer opens the records: it learns the new one)."""
    reader = ValkeySessionRepository(standalone_client, key_provider=provider)
    messages = _fill(reader)
    assert reader.list_messages("s1", "agent") == messages
    reencrypt_session(ValkeySessionRepository(standalone_client, key_provider=provider), "s1")
    assert reader.list_messages("s1", "agent") == messages
    assert reader.read_message("s1", "agent", 1) == messages[1]
    assert reader.read_multi_agent("s1", "swarm") == {"step": 0}
    agent = reader.read_agent("s1", "agent")
    assert agent is not None and agent.state == {"n": TEXT}


def _after_script(plan: Plan[_T], script: str, action: Callable[[], None]) -> Plan[_T]:
    """``plan``, running ``action`` (another process) right after the round trip that ran ``script``."""
    reply: Any = None
    done = False
    while True:
        try:
            step: Step = plan.send(reply)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        calls = step.call if isinstance(step.call, list) else [step.call]
        reply = yield step
        if not done and any(isinstance(c, ScriptCall) and c.name == script for c in calls):
            done = True
            action()


def _every_record_opens(client: Any, repo: ValkeySessionRepository, session_id: str) -> None:
    """Every sealed record stored for the session opens under the session's current data key."""
    reader = ValkeySessionRepository(client, key_provider=repo._sealer.key_provider)
    for agent_id in [_text(k) for k in client.hkeys(f"strands:{{{session_id}}}:agents")]:
        reader.read_agent(session_id, agent_id)
        reader.list_messages(session_id, agent_id)
    for multi_id in [_text(k) for k in client.hkeys(f"strands:{{{session_id}}}:multi")]:
        reader.read_multi_agent(session_id, multi_id)


@pytest.mark.parametrize("copy", ["fork", "import"])
def test_reencryption_racing_a_copy_leaves_nothing_under_a_destroyed_key(
    standalone_client: Any, provider: KeyStoreProvider, copy: str
) -> None:
    """A copy writes its records after creating the target under a fresh data key; a re-encryption
    of the target landing in between (a walk over every session meets it) destroys that key. The
    copy's records must not be stored under it: the copy fails, saying so, and what is stored opens."""
    repo = ValkeySessionRepository(standalone_client, key_provider=provider)
    _fill(repo, "source")
    export = repo.export_session("source")
    outcome: list[bool] = []

    def reencrypt() -> None:
        outcome.append(reencrypt_session(ValkeySessionRepository(standalone_client, key_provider=provider), "copy"))

    if copy == "fork":
        plan = transfer.p_fork_session(repo, "source", "copy", None, None)
    else:
        source = parse_export(export)
        renamed = dataclasses.replace(source, session=dataclasses.replace(source.session, session_id="copy"))
        plan = transfer.p_write_export(repo, renamed)
    try:
        run_plan(repo._db, _after_script(plan, "create_session", reencrypt))
    except SessionConflictError as e:
        assert "re-encrypted" in str(e)
    assert outcome == [True]
    _every_record_opens(standalone_client, repo, "copy")


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- key material in tracebacks' locals --------------------------------------------------------


def test_no_key_bytes_in_traceback_locals_when_a_key_store_or_key_fails(tmp_path: Path, standalone_client: Any) -> None:
    """A report made with ``capture_locals`` (or a debugger) of a failed key store write, of a
    truncated key file, or of a bad wrapping key, shows no key bytes."""
    from tests.test_secrets import assert_no_secret, raised

    root = tmp_path / "keys"
    provider = KeyStoreProvider(FileKeyStore(root))
    repo = ValkeySessionRepository(standalone_client, key_provider=provider)
    _fill(repo, "s")
    (directory,) = root.iterdir()
    (key_file,) = directory.iterdir()
    data_key = key_file.read_bytes()

    # Rotation stores the same data key under a new id: a key store that cannot write.
    blocked = root / "blocked"
    os.rename(directory, blocked)
    directory.write_bytes(b"")  # a file where the session's directory should be
    assert_no_secret(raised(functools.partial(rotate_wrapping_key, repo, "s")), extra=[data_key])
    current = base64.b64decode(standalone_client.hget("strands:{s}:session", "dek"))
    beside = functools.partial(provider.wrap_beside, data_key, current, {"session_id": "s"})
    assert_no_secret(raised(beside), extra=[data_key])
    directory.unlink()
    os.rename(blocked, directory)

    # A key file cut short (a partial write, tampering): a clear error, no key bytes.
    key_file.write_bytes(data_key[:20])
    reader = ValkeySessionRepository(standalone_client, key_provider=provider)
    error = raised(functools.partial(reader.list_messages, "s", "agent"))
    assert isinstance(error, DecryptionError) and "20 bytes, not 32" in str(error)
    assert_no_secret(error, extra=[data_key, data_key[:20]])

    # A wrapping key of the wrong size among good ones.
    good = LocalKeyProvider.generate_key()
    error = raised(functools.partial(LocalKeyProvider, {"good": good, "bad": good[:31]}, "good"))
    assert isinstance(error, ValueError)
    assert_no_secret(error, extra=[good, good[:31]])


# -- key store faults --------------------------------------------------------------------------


def test_prune_with_the_key_store_out_of_reach_leaves_no_key_behind_silently(standalone_client: Any) -> None:
    """``prune`` deletes a session's records first, then destroys its keys (a session kept must
    keep them). With the key server out of reach the records are gone but the key lives on, and a
    second prune no longer sees the session: the error must name the session, its ``dek`` and how
    to destroy its keys, and ``destroy_data_keys`` with them must destroy them."""
    from strands_valkey_session_manager.exceptions import SessionStoreUnavailableError
    from tests.servers import start_server

    with start_server("valkey9") as key_server:
        key_client = valkey.Valkey(key_server.host, key_server.port)
        provider = KeyStoreProvider(ValkeyKeyStore(key_client))
        _fill(ValkeySessionRepository(standalone_client, key_provider=provider), "old")
        dek = _text(standalone_client.hget("strands:{old}:session", "dek"))
        key_client.save()
        kill9(key_server)
        repo = ValkeySessionRepository(standalone_client, key_provider=provider, retries=0)
        with pytest.raises(SessionStoreUnavailableError) as raised_:
            repo.prune(older_than=timedelta(milliseconds=1))  # the kill above took longer
        message = str(raised_.value)
        assert "session_id=<old>" in message and f"destroy_data_keys(repository, 'old', {dek!r})" in message
        assert standalone_client.exists("strands:{old}:session") == 0  # the records are gone
        restart(key_server)
        context = {"session_id": "old"}
        assert len(provider.unwrap(base64.b64decode(dek), context)) == 32  # the key is not
        destroy_data_keys(repo, "old", dek)  # the documented way out
        with pytest.raises(LookupError):
            provider.unwrap(base64.b64decode(dek), context)


def test_a_key_server_that_lost_its_keys_is_reported_as_such(standalone_client: Any) -> None:
    """A key server restarted without persistence (here: its data flushed) has lost every data
    key: each session is then unreadable, and the error says that this may be the cause."""
    from tests.servers import start_server

    with start_server("valkey9") as key_server:
        key_client = valkey.Valkey(key_server.host, key_server.port)
        provider = KeyStoreProvider(ValkeyKeyStore(key_client))
        _fill(ValkeySessionRepository(standalone_client, key_provider=provider), "s")
        key_client.flushall()
        with pytest.raises(DecryptionError, match="lost its data") as raised_:
            ValkeySessionRepository(standalone_client, key_provider=provider).list_messages("s", "agent")
        assert "session_id=<s>" in str(raised_.value)


# -- a dataset writer ----------------------------------------------------------------------------


def test_dataset_writer_can_replace_a_sealed_record_by_plaintext(standalone_client: Any) -> None:
    """The documented limit (README threat model): encryption at rest keeps content secret from
    someone who can write the dataset and refuses any sealed record altered or moved, but a plain
    record put in place of a sealed one reads as written (plaintext records stay readable so that
    encryption can be turned on for a live deployment), and an earlier copy of the same record
    put back at its place opens."""
    provider = LocalKeyProvider({"k1": LocalKeyProvider.generate_key()}, "k1")
    repo = ValkeySessionRepository(standalone_client, key_provider=provider)
    messages = _fill(repo)
    key = "strands:{s1}:messages"
    member = repo._member("agent", 1)
    sealed = standalone_client.hget(key, member)
    record = orjson.loads(sealed)
    blob = bytearray(base64.b64decode(record[SEALED]))
    blob[-1] ^= 1
    standalone_client.hset(key, member, orjson.dumps(record | {SEALED: base64.b64encode(bytes(blob)).decode()}))
    with pytest.raises(DecryptionError):
        ValkeySessionRepository(standalone_client, key_provider=provider).read_message("s1", "agent", 1)

    forged = SessionMessage(message={"role": "user", "content": [{"text": "forged"}]}, message_id=1)
    plain = orjson.loads(ValkeySessionRepository(standalone_client)._sized(_encode_message(forged), key))
    standalone_client.hset(key, member, orjson.dumps(plain))
    read = ValkeySessionRepository(standalone_client, key_provider=provider).read_message("s1", "agent", 1)
    assert read is not None and read.message == forged.message

    repo.update_message("s1", "agent", _message(1, "edited"))
    standalone_client.hset(key, member, sealed)  # the earlier copy, from a backup
    assert (
        ValkeySessionRepository(standalone_client, key_provider=provider).read_message("s1", "agent", 1) == messages[1]
    )


# -- FileKeyStore against hostile directories and ids -------------------------------------------


def test_file_key_store_refuses_a_shared_or_symlinked_directory(tmp_path: Path) -> None:
    """Keys are never written where another user could have put a link: a key directory others can
    write to is refused, and so is a session directory that is a symbolic link (keys would land in
    the link's target); ids never leave the directory whatever they hold."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(ValueError, match="writable by other users"):
        FileKeyStore(shared)

    root, elsewhere = tmp_path / "keys", tmp_path / "elsewhere"
    store = FileKeyStore(root)
    elsewhere.mkdir()
    session = "victim"
    link = root / hashlib.sha256(session.encode()).hexdigest()
    link.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(OSError):
        store.put(session, "0" * 32, b"k" * 32)
    assert list(elsewhere.iterdir()) == []
    with pytest.raises(OSError):
        store.get(session, "0" * 32)
    store.destroy(session)  # removes the link, never what it points to
    assert not link.is_symlink() and elsewhere.is_dir()

    for hostile in ("../../etc", "a/b", "..", "é" * 300, "\ud800", "x" * 5000, "CASE", "case"):
        store.put(hostile, "1" * 32, b"v" * 32)
        assert store.get(hostile, "1" * 32) == b"v" * 32
    assert all(p.parent == root for p in root.iterdir())
    assert store.get("case", "1" * 32) == b"v" * 32 and len(list(root.iterdir())) == 8
    with pytest.raises(ValueError, match="32 lowercase hex"):
        store.put("s", "../" + "0" * 29, b"k" * 32)


def test_what_determinism_shows() -> None:
    """AES-SIV is deterministic: the same content at the same place under the same data key seals
    to the same bytes (a repeated write is recognised; two backups show the record unchanged), and
    the same content at another place, or under another data key, to unrelated bytes."""
    from strands_valkey_session_manager._seal import Binding, Cipher, Sealer

    sealer, inner = Sealer(key_provider=LocalKeyProvider({"k": bytes(32)}, "k")), b'{"message":"same"}'
    key, other = Cipher(os.urandom(32)), Cipher(os.urandom(32))
    here = Binding("s", "strands:{s}:messages")
    first = sealer.seal(inner, key, here, "agent:00000000000000000001")
    assert first == sealer.seal(inner, key, here, "agent:00000000000000000001")
    assert first != sealer.seal(b'{"message":"other"}', key, here, "agent:00000000000000000001")
    assert first != sealer.seal(inner, key, here, "agent:00000000000000000002")
    assert first != sealer.seal(inner, key, Binding("t", "strands:{t}:messages"), "agent:00000000000000000001")
    assert first != sealer.seal(inner, other, here, "agent:00000000000000000001")
