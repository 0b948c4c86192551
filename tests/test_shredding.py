"""Crypto-shredding against backups, on real servers: a dataset backup (RDB from SAVE, AOF with
``appendonly yes``) taken before ``delete_session`` and restored on a fresh server opens the
sessions that were not deleted and none that was, when data keys live in a key store outside the
dataset (a directory, or a separate server). With ``LocalKeyProvider`` the wrapped data key travels
with the backup and the wrapping key stays live: the restored copy still opens (the documented
limit of that configuration)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import valkey
from strands.types.exceptions import SessionException
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import DecryptionError, LocalKeyProvider, ValkeySessionRepository
from strands_valkey_session_manager.encryption import (
    FileKeyStore,
    KeyProvider,
    KeyStoreProvider,
    ValkeyKeyStore,
    reencrypt_session,
    rotate_wrapping_key,
)
from strands_valkey_session_manager.exceptions import SessionConflictError, SessionStoreUnavailableError
from tests.servers import ServerProcess, start_server

TEXT = "a confidential note that must not survive deletion " * 8


@pytest.fixture(scope="module")
def key_server() -> Iterator[ServerProcess]:
    """The key store's own server: never the dataset's."""
    with start_server("valkey9", appendonly=True) as server:
        yield server


def _provider(kind: str, tmp_path: Path, key_server: ServerProcess) -> KeyProvider:
    if kind == "file":
        return KeyStoreProvider(FileKeyStore(tmp_path / "keys"))
    if kind == "valkey":
        client = valkey.Valkey(key_server.host, key_server.port)
        client.flushall()
        return KeyStoreProvider(ValkeyKeyStore(client))
    return LocalKeyProvider({"k1": LocalKeyProvider.generate_key()}, "k1")


def _fill(repo: ValkeySessionRepository, session_id: str) -> list[SessionMessage]:
    repo.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))
    repo.create_agent(session_id, SessionAgent(agent_id="agent", state={"note": TEXT}, conversation_manager_state={}))
    messages = [
        SessionMessage(message={"role": "user", "content": [{"text": f"{i} {TEXT}"}]}, message_id=i) for i in range(3)
    ]
    for message in messages:
        repo.create_message(session_id, "agent", message)
    return messages


def _backup(server: ServerProcess, client: Any, kind: str, into: Path) -> None:
    """A copy of the server's persistence files as they are now."""
    if kind == "rdb":
        client.save()
        into.mkdir()
        shutil.copy2(server.workdir / "dump.rdb", into / "dump.rdb")
    else:
        shutil.copytree(server.workdir / "appendonlydir", into / "appendonlydir")


@pytest.mark.parametrize("backup", ["rdb", "aof"])
@pytest.mark.parametrize("keys", ["file", "valkey", "local"])
def test_backup_taken_before_delete_does_not_open_the_deleted_session(
    tmp_path: Path, key_server: ServerProcess, keys: str, backup: str
) -> None:
    provider = _provider(keys, tmp_path, key_server)
    with start_server("valkey9", appendonly=backup == "aof", data_dir=tmp_path / "live") as live:
        client = valkey.Valkey(live.host, live.port)
        repo = ValkeySessionRepository(client, key_provider=provider)
        _fill(repo, "doomed")
        kept = _fill(repo, "kept")
        _backup(live, client, backup, tmp_path / "backup")
        if keys == "file":
            shutil.copytree(tmp_path / "keys", tmp_path / "keys-backup")
        repo.delete_session("doomed")
        client.close()

    with start_server("valkey9", appendonly=backup == "aof", data_dir=tmp_path / "backup") as restored:
        client = valkey.Valkey(restored.host, restored.port)
        assert client.exists("strands:{doomed}:messages") == 1  # the backup does hold the records
        reader = ValkeySessionRepository(client, key_provider=provider)
        assert reader.list_messages("kept", "agent") == kept
        if keys == "local":
            # The wrapped data key is in the backup and the wrapping key is live: no shredding.
            assert len(reader.list_messages("doomed", "agent")) == 3
            return
        with pytest.raises(DecryptionError, match=r"session_id=<doomed>.*not in the key store"):
            reader.list_messages("doomed", "agent")
        with pytest.raises(DecryptionError, match="not in the key store"):
            ValkeySessionRepository(client, key_provider=provider).read_agent("doomed", "agent")
        # The backup alone, without the live key store, opens nothing.
        empty = KeyStoreProvider(FileKeyStore(tmp_path / "empty"))
        with pytest.raises(DecryptionError, match="not in the key store"):
            ValkeySessionRepository(client, key_provider=empty).list_messages("kept", "agent")
        if keys == "file":
            # A backup of the key store taken before the delete is the limit of shredding.
            copy = KeyStoreProvider(FileKeyStore(tmp_path / "keys-backup"))
            assert len(ValkeySessionRepository(client, key_provider=copy).list_messages("doomed", "agent")) == 3
        client.close()


def test_delete_destroys_the_key_files_and_keeps_others(tmp_path: Path, standalone_client: Any) -> None:
    store = FileKeyStore(tmp_path / "keys")
    repo = ValkeySessionRepository(standalone_client, key_provider=KeyStoreProvider(store))
    _fill(repo, "a")
    _fill(repo, "b")
    directories = sorted(p for p in (tmp_path / "keys").iterdir())
    assert len(directories) == 2
    for directory in directories:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        (key_file,) = directory.iterdir()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and len(key_file.read_bytes()) == 32
    repo.delete_session("a")
    assert len(list((tmp_path / "keys").iterdir())) == 1
    _fill(repo, "c")
    for session_id in ("b", "c"):
        standalone_client.hset(f"strands:{{{session_id}}}:session", "updated", 1)  # last written in 1970
    assert repo.prune(older_than=60) == 2  # prune deletes, so it destroys keys too
    assert list((tmp_path / "keys").iterdir()) == []
    _fill(repo, "b")
    assert (
        len(
            ValkeySessionRepository(standalone_client, key_provider=KeyStoreProvider(store)).list_messages("b", "agent")
        )
        == 3
    )
    # The session hash names the key (its key set and key id), it does not hold it.
    dek = standalone_client.hget("strands:{b}:session", "dek")
    assert dek is not None and re.fullmatch(rb"svsm-ks2:[0-9a-f]{32}:[0-9a-f]{32}", base64.b64decode(dek))


def test_import_that_overwrites_keeps_its_new_key(tmp_path: Path, standalone_client: Any) -> None:
    """An import with overwrite seals under a fresh key, then deletes the old session (destroying
    its keys): the fresh key is stored again, so the imported session opens."""
    provider = KeyStoreProvider(FileKeyStore(tmp_path / "keys"))
    repo = ValkeySessionRepository(standalone_client, key_provider=provider)
    messages = _fill(repo, "s")
    repo.import_session(repo.export_session("s"), overwrite=True)
    assert ValkeySessionRepository(standalone_client, key_provider=provider).list_messages("s", "agent") == messages


def test_key_store_server_out_of_reach_is_unavailable_not_corrupt(tmp_path: Path, standalone_client: Any) -> None:
    with start_server("valkey9") as key_server:
        key_client = valkey.Valkey(key_server.host, key_server.port)
        provider = KeyStoreProvider(ValkeyKeyStore(key_client))
        _fill(ValkeySessionRepository(standalone_client, key_provider=provider), "s")
    reader = ValkeySessionRepository(standalone_client, key_provider=provider, retries=0)
    with pytest.raises(SessionStoreUnavailableError, match="key_store_get"):
        reader.list_messages("s", "agent")
    with pytest.raises(SessionStoreUnavailableError, match="key_store_destroy"):
        reader.delete_session("s")
    assert standalone_client.exists("strands:{s}:session") == 1  # nothing deleted: the key lives on


def test_key_store_on_the_dataset_server_is_refused(key_server: ServerProcess, standalone_client: Any) -> None:
    same = ValkeyKeyStore(valkey.Valkey(key_server.host, key_server.port, db=1))
    with pytest.raises(ValueError, match="same server"):
        same.check_separate_from(valkey.Valkey(key_server.host, key_server.port, db=0))
    same.check_separate_from(standalone_client)  # another server: fine


def test_legacy_sessions_open_and_move_into_the_key_store(tmp_path: Path, standalone_client: Any) -> None:
    """Sessions sealed under a LocalKeyProvider open through ``legacy``; re-encryption moves them
    into the key store, after which deleting them shreds them (the legacy wrapped key is gone)."""
    local = LocalKeyProvider({"k1": LocalKeyProvider.generate_key()}, "k1")
    messages = _fill(ValkeySessionRepository(standalone_client, key_provider=local), "old")
    old_dek = standalone_client.hget("strands:{old}:session", "dek")
    provider = KeyStoreProvider(FileKeyStore(tmp_path / "keys"), legacy=local)
    repo = ValkeySessionRepository(standalone_client, key_provider=provider)
    assert repo.list_messages("old", "agent") == messages
    with pytest.raises(DecryptionError, match="no legacy provider"):
        ValkeySessionRepository(
            standalone_client, key_provider=KeyStoreProvider(FileKeyStore(tmp_path / "keys"))
        ).list_messages("old", "agent")
    assert reencrypt_session(repo, "old") is True
    assert standalone_client.hget("strands:{old}:session", "dek").startswith("c3ZzbS1rczI6")  # svsm-ks2:
    assert ValkeySessionRepository(standalone_client, key_provider=provider).list_messages("old", "agent") == messages
    # The old wrapped key, put back as a backup would have it, no longer opens what is stored now.
    standalone_client.hset("strands:{old}:session", "dek", old_dek)
    with pytest.raises(DecryptionError):
        ValkeySessionRepository(standalone_client, key_provider=local).list_messages("old", "agent")


def test_rotation_in_a_key_store_retires_the_previous_entry(tmp_path: Path, standalone_client: Any) -> None:
    provider = KeyStoreProvider(FileKeyStore(tmp_path / "keys"))
    repo = ValkeySessionRepository(standalone_client, key_provider=provider)
    messages = _fill(repo, "s")
    assert rotate_wrapping_key(repo, "s") is True
    (directory,) = (tmp_path / "keys").iterdir()
    assert len(list(directory.iterdir())) == 1
    assert ValkeySessionRepository(standalone_client, key_provider=provider).list_messages("s", "agent") == messages


def test_what_does_not_destroy_a_key(tmp_path: Path, standalone_client: Any) -> None:
    """Keys are destroyed only by ``delete_session`` through a repository holding the provider:
    not when the session's keys vanish otherwise (expiry), nor by a repository without it (the
    ``svsm`` CLI, the web viewer)."""
    provider = KeyStoreProvider(FileKeyStore(tmp_path / "keys"))
    repo = ValkeySessionRepository(standalone_client, key_provider=provider)
    _fill(repo, "expired")
    _fill(repo, "elsewhere")
    standalone_client.delete(*repo.session_keys("expired").all())  # what expiry does
    ValkeySessionRepository(standalone_client).delete_session("elsewhere")
    assert len(list((tmp_path / "keys").iterdir())) == 2  # both keys are still there


@pytest.mark.backends("valkey9", "cluster")
def test_valkey_key_store_on_every_client_kind(store_client: Any, key_server: ServerProcess) -> None:
    """The key store's client may be valkey-py, redis-py or GLIDE, standalone or cluster (here the
    key store is the test backend and the dataset the module's other server)."""
    store = ValkeyKeyStore(store_client)
    store.put("s", "a" * 32, b"k" * 32)
    assert store.get("s", "a" * 32) == b"k" * 32 and store.get("s", "b" * 32) is None
    store.delete("s", "a" * 32)
    assert store.get("s", "a" * 32) is None
    dataset = valkey.Valkey(key_server.host, key_server.port)
    dataset.flushall()
    provider = KeyStoreProvider(store)
    repo = ValkeySessionRepository(dataset, key_provider=provider)
    messages = _fill(repo, "s")
    assert ValkeySessionRepository(dataset, key_provider=provider).list_messages("s", "agent") == messages
    repo.fork_session("s", "fork")  # the fork's own key goes to the key store too
    assert ValkeySessionRepository(dataset, key_provider=provider).list_messages("fork", "agent") == messages
    fork_dek = base64.b64decode(dataset.hget("strands:{fork}:session", "dek"))
    assert len(provider.unwrap(fork_dek, {"session_id": "fork"})) == 32
    dek = dataset.hget("strands:{s}:session", "dek")
    repo.delete_session("s")
    _fill(repo, "s")  # same id again, new key; the old one is gone from the key store
    dataset.hset("strands:{s}:session", "dek", dek)
    with pytest.raises(DecryptionError, match="not in the key store"):
        ValkeySessionRepository(dataset, key_provider=provider).list_messages("s", "agent")
    dataset.close()


# -- a delete racing a create (or a re-encryption) of the same session id --------------------------


class _Hooked:
    """A key store that runs another process's step right after (or before) one of its own calls:
    a deterministic interleaving of two processes sharing one key store. Each hook runs once."""

    def __init__(
        self,
        store: Any,
        *,
        before: dict[str, Callable[[], object]] | None = None,
        after: dict[str, Callable[[], object]] | None = None,
    ) -> None:
        self._store, self._before, self._after = store, dict(before or {}), dict(after or {})

    def _call(self, name: str, *args: Any) -> Any:
        if name in self._before:
            self._before.pop(name)()
        result = getattr(self._store, name)(*args)
        if name in self._after:
            self._after.pop(name)()
        return result

    def put(self, session_id: str, key_id: str, key: bytes) -> None:
        self._call("put", session_id, key_id, key)

    def get(self, session_id: str, key_id: str) -> bytes | None:
        return self._call("get", session_id, key_id)  # type: ignore[no-any-return]

    def delete(self, session_id: str, key_id: str) -> None:
        self._call("delete", session_id, key_id)

    def destroy(self, session_id: str) -> None:
        self._call("destroy", session_id)


def _store(kind: str, tmp_path: Path, key_server: ServerProcess) -> Any:
    if kind == "file":
        return FileKeyStore(tmp_path / "keys")
    client = valkey.Valkey(key_server.host, key_server.port)
    client.flushall()
    return ValkeyKeyStore(client)


def _dek(client: Any, session_id: str) -> bytes:
    return base64.b64decode(client.hget(f"strands:{{{session_id}}}:session", "dek"))


def _assert_destroyed(store: Any, session_id: str, *wrapped: bytes) -> None:
    for dek in wrapped:
        with pytest.raises(LookupError, match="not in the key store"):
            KeyStoreProvider(store).unwrap(dek, {"session_id": session_id})


@pytest.mark.parametrize("kind", ["file", "valkey"])
def test_delete_racing_a_create_of_the_same_id_keeps_the_new_sessions_key(
    tmp_path: Path, key_server: ServerProcess, standalone_client: Any, kind: str
) -> None:
    """Process B creates session ``s`` again while process A deletes the old ``s``: B's data key
    is in the key store (``wrap``) before A destroys the old session's keys, and B's create script
    runs after A deleted the old records. A's delete must destroy the old session's keys only: B's
    new session stays readable, the old one's key is gone."""
    store = _store(kind, tmp_path, key_server)
    a = ValkeySessionRepository(standalone_client, key_provider=KeyStoreProvider(store))
    _fill(a, "s")
    old = _dek(standalone_client, "s")
    # B's key store runs A's whole delete between B's put of its new key and B's create script.
    b_store = _Hooked(store, after={"put": lambda: a.delete_session("s")})
    b = ValkeySessionRepository(standalone_client, key_provider=KeyStoreProvider(b_store))
    messages = _fill(b, "s")
    assert _dek(standalone_client, "s") != old
    reader = ValkeySessionRepository(standalone_client, key_provider=KeyStoreProvider(store))
    assert reader.list_messages("s", "agent") == messages
    assert reader.read_agent("s", "agent").state == {"note": TEXT}  # type: ignore[union-attr]
    _assert_destroyed(store, "s", old)


@pytest.mark.parametrize("kind", ["file", "valkey"])
def test_prune_racing_a_create_of_the_same_id_keeps_the_new_sessions_key(
    tmp_path: Path, key_server: ServerProcess, standalone_client: Any, kind: str
) -> None:
    """``prune`` deletes the records first and destroys the keys after: a create of the same id
    landing in between (key put and script run) must keep its key."""
    store = _store(kind, tmp_path, key_server)
    b = ValkeySessionRepository(standalone_client, key_provider=KeyStoreProvider(store))
    created: list[list[SessionMessage]] = []
    a_store = _Hooked(store, before={"destroy": lambda: created.append(_fill(b, "s"))})
    a = ValkeySessionRepository(standalone_client, key_provider=KeyStoreProvider(a_store))
    _fill(a, "s")
    old = _dek(standalone_client, "s")
    standalone_client.hset("strands:{s}:session", "updated", 1)  # last written in 1970
    assert a.prune(older_than=60) == 1
    reader = ValkeySessionRepository(standalone_client, key_provider=KeyStoreProvider(store))
    assert reader.list_messages("s", "agent") == created[0]
    _assert_destroyed(store, "s", old)


@pytest.mark.parametrize("kind", ["file", "valkey"])
def test_delete_racing_a_reencryption_destroys_the_new_key_too(
    tmp_path: Path, key_server: ServerProcess, standalone_client: Any, kind: str
) -> None:
    """A re-encryption that puts its new key after the delete destroyed the session's keys and
    swaps it in before the delete's script: the delete finds another ``dek`` than the one whose
    keys it destroyed, destroys that one's too, and only then deletes; no key of the session is
    left."""
    store = _store(kind, tmp_path, key_server)
    a = ValkeySessionRepository(standalone_client, key_provider=KeyStoreProvider(store))
    _fill(a, "s")
    old = _dek(standalone_client, "s")
    plan = a._p_delete_session("s")
    pending: list[Any] = []
    # R unwraps the old key, then A destroys the session's keys (its plan up to its first round
    # trip), then R puts its new key and swaps it in; then A's round trips run.
    r_store = _Hooked(store, after={"get": lambda: pending.append(plan.send(None))})
    r = ValkeySessionRepository(standalone_client, key_provider=KeyStoreProvider(r_store))
    assert reencrypt_session(r, "s") is True
    new = _dek(standalone_client, "s")
    assert new != old
    step = pending[0]
    with pytest.raises(StopIteration):
        while True:
            step = plan.send(a._db.execute(step.call))
    assert standalone_client.exists(*a.session_keys("s").all()) == 0
    _assert_destroyed(store, "s", old, new)


def test_a_refused_create_leaves_no_key_behind(tmp_path: Path, standalone_client: Any) -> None:
    """A create refused because the session exists put its fresh key in a key set of its own
    first: it is destroyed, the existing session's key is kept."""
    store = FileKeyStore(tmp_path / "keys")
    messages = _fill(ValkeySessionRepository(standalone_client, key_provider=KeyStoreProvider(store)), "s")
    other = ValkeySessionRepository(standalone_client, key_provider=KeyStoreProvider(store))
    with pytest.raises(SessionException, match="already exists"):
        other.create_session(Session(session_id="s", session_type=SessionType.AGENT))
    assert len([path for path in (tmp_path / "keys").rglob("*") if path.is_file()]) == 1
    assert other.list_messages("s", "agent") == messages


class _EarlierProvider(KeyStoreProvider):
    """``wrap`` as the earlier version made it: ``svsm-ks1:<key id>`` in a set per session id."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self._raw = store

    def wrap(self, data_key: bytes, context: dict[str, str]) -> bytes:
        key_id = os.urandom(16).hex()
        self._raw.put(context["session_id"], key_id, bytes(data_key))
        return b"svsm-ks1:" + key_id.encode()


@pytest.mark.parametrize("kind", ["file", "valkey"])
def test_sessions_keyed_by_the_earlier_layout_open_rotate_and_shred(
    tmp_path: Path, key_server: ServerProcess, standalone_client: Any, kind: str
) -> None:
    """Key sets written before sets were per generation (one per session id, ``svsm-ks1``) still
    open, re-encryption keeps the session's next key in that set, and a delete destroys it while a
    session created again under the id meanwhile keeps its own key."""
    store = _store(kind, tmp_path, key_server)
    messages = _fill(ValkeySessionRepository(standalone_client, key_provider=_EarlierProvider(store)), "s")
    assert _dek(standalone_client, "s").startswith(b"svsm-ks1:")
    repo = ValkeySessionRepository(standalone_client, key_provider=KeyStoreProvider(store))
    assert repo.list_messages("s", "agent") == messages
    first = _dek(standalone_client, "s")
    assert reencrypt_session(repo, "s") is True
    old = _dek(standalone_client, "s")
    assert old.startswith(b"svsm-ks1:") and old != first
    _assert_destroyed(store, "s", first)  # retired
    assert (
        ValkeySessionRepository(standalone_client, key_provider=KeyStoreProvider(store)).list_messages("s", "agent")
        == messages
    )
    b_store = _Hooked(store, after={"put": lambda: repo.delete_session("s")})
    again = _fill(ValkeySessionRepository(standalone_client, key_provider=KeyStoreProvider(b_store)), "s")
    reader = ValkeySessionRepository(standalone_client, key_provider=KeyStoreProvider(store))
    assert reader.list_messages("s", "agent") == again
    _assert_destroyed(store, "s", old)


def test_delete_round_trips_with_a_key_store(tmp_path: Path, standalone_client: Any) -> None:
    """A repository that holds the session's ``dek`` (it created or read the session) deletes in
    2 round trips, as without a key store; one that does not learns it from a first script call
    that deletes nothing: 3."""
    from tests.roundtrips import count_round_trips

    store = FileKeyStore(tmp_path / "keys")
    owner = ValkeySessionRepository(standalone_client, key_provider=KeyStoreProvider(store))
    for session_id in ("warm", "a", "b"):
        _fill(owner, session_id)
    owner.delete_session("warm")  # the script loaded
    with count_round_trips() as trips:
        owner.delete_session("a")
    assert trips.value == 2, trips
    stranger = ValkeySessionRepository(standalone_client, key_provider=KeyStoreProvider(store))
    with count_round_trips() as trips:
        stranger.delete_session("b")
    assert trips.value == 3, trips
    assert [p for p in (tmp_path / "keys").rglob("*") if p.is_file()] == []


def test_delete_whose_session_key_changes_every_time_is_a_conflict(tmp_path: Path, standalone_client: Any) -> None:
    """Each destroy followed by another ``dek`` (a re-encryption, or the id deleted and created
    again, every time): after 5 attempts ``SessionConflictError``, and nothing deleted."""
    store = FileKeyStore(tmp_path / "keys")

    class Churning(_Hooked):
        def destroy(self, session_id: str) -> None:
            super().destroy(session_id)
            other = b"svsm-ks2:" + os.urandom(16).hex().encode() + b":" + os.urandom(16).hex().encode()
            standalone_client.hset("strands:{s}:session", "dek", base64.b64encode(other))

    repo = ValkeySessionRepository(standalone_client, key_provider=KeyStoreProvider(Churning(store)))
    _fill(repo, "s")
    with pytest.raises(SessionConflictError, match="each of 5 attempts"):
        repo.delete_session("s")
    assert standalone_client.exists(*repo.session_keys("s").all()[:4]) == 4  # no multi-agent key
