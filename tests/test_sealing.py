"""Compression and encryption at rest on real servers: round trips, tampering, keys, rotation,
crypto-shredding, mixed old and sealed records, copies, and nothing changed with the options off."""

from __future__ import annotations

import base64
import os
from typing import Any

import orjson
import pytest
from cryptography.exceptions import InvalidTag
from strands.types.exceptions import SessionException
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import (
    AsyncValkeySessionRepository,
    CorruptRecordError,
    DecryptionError,
    LocalKeyProvider,
    ValkeySessionManager,
    ValkeySessionRepository,
)
from strands_valkey_session_manager._seal import COMPRESSED, ENCRYPTED, SIV, Binding, Cipher, DataKey, Sealer
from strands_valkey_session_manager.encryption import (
    FileKeyStore,
    KeyStoreProvider,
    ValkeyKeyStore,
    areencrypt_all_sessions,
    areencrypt_session,
    arotate_wrapping_key,
    reencrypt_session,
    rotate_wrapping_key,
)
from strands_valkey_session_manager.transfer import SessionExport, export_lines, parse_export
from tests.blocking import BlockingFace
from tests.conftest import Backend
from tests.interleave import Orchestrator
from tests.roundtrips import count_round_trips

SEALED = "__svsm_sealed__"
# A PNG-like payload that does not compress, and text that does.
IMAGE = os.urandom(3000)
TEXT = "The quick brown fox jumps over the lazy dog. " * 60

MODES = {
    "compress": {"compress_threshold": 256},
    "encrypt": {"encrypt": True},
    "both": {"compress_threshold": 256, "encrypt": True},
}


def _provider(current: str = "k1", **keys: bytes) -> LocalKeyProvider:
    return LocalKeyProvider(keys or {current: LocalKeyProvider.generate_key()}, current)


KEYS = {"k1": LocalKeyProvider.generate_key(), "k2": LocalKeyProvider.generate_key()}
PROVIDER = LocalKeyProvider({"k1": KEYS["k1"]}, "k1")


def _options(mode: str) -> dict[str, Any]:
    options = dict(MODES[mode])
    if options.pop("encrypt", False):
        options["key_provider"] = PROVIDER
    return options


def _session(session_id: str = "s1") -> Session:
    return Session(session_id=session_id, session_type=SessionType.AGENT)


def _agent(agent_id: str = "agent", **state: Any) -> SessionAgent:
    return SessionAgent(
        agent_id=agent_id,
        state={"notes": TEXT, **state},
        conversation_manager_state={"removed_message_count": 0},
    )


def _message(message_id: int, text: str = "hello", image: bytes | None = None) -> SessionMessage:
    content: list[Any] = [{"text": text}]
    if image is not None:
        content.append({"image": {"format": "png", "source": {"bytes": image}}})
    return SessionMessage(message={"role": "user", "content": content}, message_id=message_id)


def _raw(client: Any, key: str, field: str) -> dict[str, Any]:
    value = client.hget(key, field)
    assert value is not None, (key, field)
    parsed: dict[str, Any] = orjson.loads(value)
    return parsed


def _set_raw(client: Any, key: str, field: str, record: dict[str, Any]) -> None:
    client.hset(key, field, orjson.dumps(record))


def _member(repo: ValkeySessionRepository, agent_id: str, message_id: int) -> str:
    return repo._member(agent_id, message_id)


def _flip(blob: str, position: int) -> str:
    raw = bytearray(base64.b64decode(blob))
    raw[position % len(raw)] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def _fill(repo: ValkeySessionRepository, session_id: str = "s1", count: int = 3) -> list[SessionMessage]:
    repo.create_session(_session(session_id))
    repo.create_agent(session_id, _agent())
    messages = [_message(i, f"{i}: {TEXT}", IMAGE if i % 2 else None) for i in range(count)]
    for message in messages:
        repo.create_message(session_id, "agent", message)
    repo.create_multi_agent(session_id, Orchestrator("swarm", {"type": "swarm", "history": [TEXT], "n": 1}))  # type: ignore[arg-type]
    return messages


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.backends("valkey9", "redis7", "cluster")
@pytest.mark.parametrize("mode", sorted(MODES))
def test_round_trip(client: Any, mode: str) -> None:
    repo = ValkeySessionRepository(client, **_options(mode))
    messages = _fill(repo)
    keys = repo.session_keys("s1")

    reader = ValkeySessionRepository(client, **_options(mode))  # a new process: nothing cached
    assert reader.list_messages("s1", "agent") == messages
    assert reader.read_message("s1", "agent", 1) == messages[1]
    assert reader.list_messages("s1", "agent", limit=1, offset=1) == messages[1:2]
    agent = reader.read_agent("s1", "agent")
    assert agent is not None and agent.state == _agent().state
    assert reader.read_multi_agent("s1", "swarm") == {"type": "swarm", "history": [TEXT], "n": 1}

    stored = _raw(client, keys.messages, _member(repo, "agent", 0))
    assert SEALED in stored and list(stored)[-1] == "created_at"
    assert set(stored) == {SEALED, "message_id", "updated_at", "created_at"}
    assert TEXT[:40] not in str(stored)
    agent_record = _raw(client, keys.agents, "agent")
    assert set(agent_record) == {SEALED, "agent_id", "updated_at", "created_at"}
    assert set(_raw(client, keys.multi, "swarm")) == {SEALED}
    encrypted = "key_provider" in _options(mode)
    assert (client.hget(keys.session, "dek") is not None) is encrypted

    # Updates keep created_at through update_record.lua's splice, sealed or not.
    changed = _message(1, "changed", IMAGE)
    changed.created_at = "ignored"
    reader.update_message("s1", "agent", changed)
    again = repo.read_message("s1", "agent", 1)
    assert again is not None and again.message == changed.message and again.created_at == messages[1].created_at
    agent.state["more"] = 1
    reader.update_agent("s1", agent)
    updated = repo.read_agent("s1", "agent")
    assert updated is not None and updated.state["more"] == 1 and updated.created_at == agent.created_at
    reader.update_multi_agent("s1", Orchestrator("swarm", {"n": 2}))  # type: ignore[arg-type]
    assert repo.read_multi_agent("s1", "swarm") == {"n": 2}


@pytest.mark.backends("valkey9", "cluster")
def test_every_client_kind_including_glide(store_client: Any) -> None:
    repo = ValkeySessionRepository(store_client, compress_threshold=256, key_provider=PROVIDER)
    messages = _fill(repo)
    reader = ValkeySessionRepository(store_client, key_provider=PROVIDER)
    assert reader.list_messages("s1", "agent") == messages
    assert reader.read_multi_agent("s1", "swarm") == {"type": "swarm", "history": [TEXT], "n": 1}
    assert rotate_wrapping_key(reader, "s1") is True
    assert reencrypt_session(reader, "s1") is True
    assert ValkeySessionRepository(store_client, key_provider=PROVIDER).list_messages("s1", "agent") == messages
    reader.fork_session("s1", "fork")
    assert ValkeySessionRepository(store_client, key_provider=PROVIDER).list_messages("fork", "agent") == messages


@pytest.mark.backends("valkey9", "cluster")
def test_async_face_round_trip(backend: Backend) -> None:
    kind = backend.client_kinds()[0]
    face: Any = BlockingFace(
        AsyncValkeySessionRepository(backend.make_async_client(kind), compress_threshold=256, key_provider=PROVIDER)
    )
    try:
        messages = _fill(face)
        assert face.list_messages("s1", "agent") == messages
        assert face.run(arotate_wrapping_key(face._target, "s1")) is True
        assert face.run(areencrypt_session(face._target, "s1")) is True
        assert face.run(areencrypt_all_sessions(face._target)) == 1
        assert face.read_message("s1", "agent", 2) == messages[2]
    finally:
        face.close()
    sync = ValkeySessionRepository(backend.make_client(kind), key_provider=PROVIDER)
    try:
        assert sync.list_messages("s1", "agent") == messages
    finally:
        sync.client.close()


@pytest.mark.backends("valkey9")
def test_compression_only_where_it_pays(client: Any) -> None:
    repo = ValkeySessionRepository(client, compress_threshold=256)
    repo.create_session(_session())
    repo.create_agent("s1", _agent())
    repo.create_message("s1", "agent", _message(0, "short"))
    repo.create_message("s1", "agent", _message(1, "x", os.urandom(4000)))  # base64 of noise: no gain
    repo.create_message("s1", "agent", _message(2, TEXT))
    messages = repo.session_keys("s1").messages
    assert SEALED not in _raw(client, messages, _member(repo, "agent", 0))
    assert SEALED not in _raw(client, messages, _member(repo, "agent", 1))
    compressed = client.hget(messages, _member(repo, "agent", 2))
    assert SEALED in orjson.loads(compressed) and len(compressed) < len(TEXT) / 4
    # Compressed records read without any option: they need no key.
    assert [m.message_id for m in ValkeySessionRepository(client).list_messages("s1", "agent")] == [0, 1, 2]


@pytest.mark.backends("valkey9")
def test_option_validation(client: Any) -> None:
    for threshold in (-1, 1.5, True, "1024"):
        with pytest.raises(ValueError, match="compress_threshold"):
            ValkeySessionRepository(client, compress_threshold=threshold)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key_provider"):
        ValkeySessionRepository(client, key_provider=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="32 bytes"):
        LocalKeyProvider({"k": b"short"}, "k")
    with pytest.raises(ValueError, match="current"):
        LocalKeyProvider({"k": KEYS["k1"]}, "other")
    provider = LocalKeyProvider(KEYS, "k2")
    wrapped = provider.wrap(b"d" * 32, {"session_id": "s"})
    assert LocalKeyProvider.key_id(wrapped) == "k2"
    assert provider.unwrap(wrapped, {"session_id": "s"}) == b"d" * 32
    with pytest.raises(InvalidTag):
        provider.unwrap(wrapped, {"session_id": "t"})


# -- tampering and keys -----------------------------------------------------------------------


@pytest.mark.backends("valkey9", "cluster")
@pytest.mark.parametrize("position", [0, 5, -1])
def test_flipped_byte_is_refused_naming_the_key(client: Any, position: int) -> None:
    repo = ValkeySessionRepository(client, key_provider=PROVIDER)
    _fill(repo)
    keys = repo.session_keys("s1")
    for key, field in (
        (keys.messages, _member(repo, "agent", 1)),
        (keys.agents, "agent"),
        (keys.multi, "swarm"),
    ):
        record = _raw(client, key, field)
        record[SEALED] = _flip(record[SEALED], position)
        _set_raw(client, key, field, record)
    fresh = ValkeySessionRepository(client, key_provider=PROVIDER)
    with pytest.raises(DecryptionError, match=rf"key=<{keys.messages}>"):
        fresh.read_message("s1", "agent", 1)
    with pytest.raises(DecryptionError, match=rf"key=<{keys.messages}>"):
        fresh.list_messages("s1", "agent")
    with pytest.raises(DecryptionError, match=rf"key=<{keys.agents}>"):
        fresh.read_agent("s1", "agent")
    with pytest.raises(DecryptionError, match=rf"key=<{keys.multi}>"):
        fresh.read_multi_agent("s1", "swarm")
    assert fresh.read_message("s1", "agent", 0) is not None  # the others are intact
    assert issubclass(DecryptionError, CorruptRecordError)


@pytest.mark.backends("valkey9", "cluster")
def test_values_cannot_move_between_sessions_or_positions(client: Any) -> None:
    repo = ValkeySessionRepository(client, key_provider=PROVIDER)
    _fill(repo, "s1")
    _fill(repo, "s2")
    one, two = repo.session_keys("s1"), repo.session_keys("s2")
    member0, member1 = _member(repo, "agent", 0), _member(repo, "agent", 1)

    # Session s1's message 1, its agent and its orchestrator state copied into session s2.
    client.hset(two.messages, member1, client.hget(one.messages, member1))
    client.hset(two.agents, "agent", client.hget(one.agents, "agent"))
    client.hset(two.multi, "swarm", client.hget(one.multi, "swarm"))
    reader = ValkeySessionRepository(client, key_provider=PROVIDER)
    with pytest.raises(DecryptionError):
        reader.read_message("s2", "agent", 1)
    with pytest.raises(DecryptionError):
        reader.list_messages("s2", "agent")
    with pytest.raises(DecryptionError):
        reader.read_agent("s2", "agent")
    with pytest.raises(DecryptionError):
        reader.read_multi_agent("s2", "swarm")

    # Within s1: message 0's record stored as message 1, as is, or with its envelope's id edited.
    client.hset(one.messages, member1, client.hget(one.messages, member0))
    with pytest.raises(DecryptionError, match="stored under message 1"):
        reader.read_message("s1", "agent", 1)
    with pytest.raises(DecryptionError, match="do not rise"):
        reader.list_messages("s1", "agent")
    record = _raw(client, one.messages, member1)
    record["message_id"] = 1
    _set_raw(client, one.messages, member1, record)
    with pytest.raises(DecryptionError):
        reader.read_message("s1", "agent", 1)
    with pytest.raises(DecryptionError):
        reader.list_messages("s1", "agent")


@pytest.mark.backends("valkey9")
def test_wrong_or_missing_wrapping_key(client: Any) -> None:
    repo = ValkeySessionRepository(client, key_provider=PROVIDER)
    _fill(repo)
    keys = repo.session_keys("s1")
    same_id_other_key = LocalKeyProvider({"k1": LocalKeyProvider.generate_key()}, "k1")
    unknown_id = LocalKeyProvider({"k9": LocalKeyProvider.generate_key()}, "k9")
    for provider in (same_id_other_key, unknown_id):
        with pytest.raises(DecryptionError, match=rf"session_id=<s1>, .*key=<{keys.messages}>.*unwrap"):
            ValkeySessionRepository(client, key_provider=provider).list_messages("s1", "agent")
        with pytest.raises(DecryptionError, match="unwrap"):
            ValkeySessionRepository(client, key_provider=provider).create_message("s1", "agent", _message(9))
    with pytest.raises(DecryptionError, match="no key_provider"):
        ValkeySessionRepository(client).read_agent("s1", "agent")
    # A provider that fails outright is reported the same way.

    class Broken:
        def wrap(self, data_key: bytes, context: dict[str, str]) -> bytes:
            raise RuntimeError("KMS unreachable")

        def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytes:
            raise RuntimeError("KMS unreachable")

    with pytest.raises(DecryptionError, match="KMS unreachable"):
        ValkeySessionRepository(client, key_provider=Broken()).read_message("s1", "agent", 0)
    # The wrapped key is bound to its session: copied to another session it does not unwrap.
    _fill(ValkeySessionRepository(client, key_provider=PROVIDER), "s2")
    client.hset(repo.session_keys("s2").session, "dek", client.hget(keys.session, "dek"))
    with pytest.raises(DecryptionError, match="unwrap"):
        ValkeySessionRepository(client, key_provider=PROVIDER).read_agent("s2", "agent")


# -- migration, rotation, crypto-shredding ----------------------------------------------------


@pytest.mark.backends("valkey9", "cluster")
def test_old_plaintext_and_new_sealed_records_mix(client: Any) -> None:
    plain = ValkeySessionRepository(client)
    old = _fill(plain, count=2)
    keys = plain.session_keys("s1")
    assert client.hget(keys.session, "dek") is None

    sealing = ValkeySessionRepository(client, compress_threshold=64, key_provider=PROVIDER)
    assert sealing.list_messages("s1", "agent") == old  # reads plain records; no key needed yet
    new = [_message(i, TEXT, IMAGE) for i in (2, 3)]
    for message in new:
        sealing.create_message("s1", "agent", message)  # the first one gives the session its data key
    assert client.hget(keys.session, "dek") is not None
    sealing.update_message("s1", "agent", _message(0, "now sealed"))  # a plain record updated sealed
    assert SEALED in _raw(client, keys.messages, _member(plain, "agent", 0))
    assert SEALED not in _raw(client, keys.messages, _member(plain, "agent", 1))

    reader = ValkeySessionRepository(client, key_provider=PROVIDER)
    listed = reader.list_messages("s1", "agent")
    assert [m.message_id for m in listed] == [0, 1, 2, 3]
    assert listed[0].message["content"][0]["text"] == "now sealed" and listed[0].created_at == old[0].created_at
    assert listed[1:] == [old[1], *new]
    with pytest.raises(DecryptionError):
        plain.list_messages("s1", "agent")  # the sealed ones need the key
    assert plain.read_message("s1", "agent", 1) == old[1]


@pytest.mark.backends("valkey9", "cluster")
def test_rotation_rewraps_without_touching_records(client: Any) -> None:
    first = LocalKeyProvider({"k1": KEYS["k1"]}, "k1")
    repo = ValkeySessionRepository(client, key_provider=first)
    messages = _fill(repo)
    keys = repo.session_keys("s1")
    before = client.hgetall(keys.messages), client.hgetall(keys.agents), client.hgetall(keys.multi)
    wrapped = base64.b64decode(client.hget(keys.session, "dek"))
    assert LocalKeyProvider.key_id(wrapped) == "k1"

    both = LocalKeyProvider(KEYS, "k2")
    rotating = ValkeySessionRepository(client, key_provider=both)
    assert rotate_wrapping_key(rotating, "s1") is True
    rewrapped = base64.b64decode(client.hget(keys.session, "dek"))
    assert LocalKeyProvider.key_id(rewrapped) == "k2"
    assert (client.hgetall(keys.messages), client.hgetall(keys.agents), client.hgetall(keys.multi)) == before

    only_new = LocalKeyProvider({"k2": KEYS["k2"]}, "k2")
    reader = ValkeySessionRepository(client, key_provider=only_new)
    assert reader.list_messages("s1", "agent") == messages
    reader.create_message("s1", "agent", _message(7, "after rotation"))
    with pytest.raises(DecryptionError, match="unwrap"):
        ValkeySessionRepository(client, key_provider=first).list_messages("s1", "agent")
    # The repository that rotated keeps working with what it cached, and with itself.
    assert rotating.read_message("s1", "agent", 7) is not None
    assert rotate_wrapping_key(rotating, "s1") is True
    # Sessions without a data key, and missing sessions.
    ValkeySessionRepository(client).create_session(_session("plain"))
    assert rotate_wrapping_key(rotating, "plain") is False
    with pytest.raises(SessionException, match="does not exist"):
        rotate_wrapping_key(rotating, "missing")
    with pytest.raises(ValueError, match="key_provider"):
        rotate_wrapping_key(ValkeySessionRepository(client), "s1")


@pytest.mark.backends("valkey9", "cluster")
def test_crypto_shredding(client: Any) -> None:
    repo = ValkeySessionRepository(client, key_provider=PROVIDER)
    _fill(repo)
    keys = repo.session_keys("s1")
    backup = {key: client.dump(key) for key in (keys.messages, keys.order, keys.agents, keys.multi)}
    old_dek = client.hget(keys.session, "dek")

    repo.delete_session("s1")
    assert client.exists(keys.session) == 0  # the wrapped data key went with the session hash
    again = ValkeySessionRepository(client, key_provider=PROVIDER)
    again.create_session(_session("s1"))  # same id, new data key
    again.create_agent("s1", _agent())
    assert client.hget(keys.session, "dek") not in (None, old_dek)
    for key, payload in backup.items():
        client.restore(key, 0, payload, replace=True)
    # With the message counter the copied index matches (else a restore reports the session as
    # damaged before it opens anything): the old records must still not open.
    client.hset(keys.session, "n:agent", client.zcard(keys.order))

    for reader in (again, ValkeySessionRepository(client, key_provider=PROVIDER)):
        with pytest.raises(DecryptionError):
            reader.list_messages("s1", "agent")
        with pytest.raises(DecryptionError):
            reader.read_message("s1", "agent", 0)
        with pytest.raises(DecryptionError):
            reader.read_agent("s1", "agent")
        with pytest.raises(DecryptionError):
            reader.read_multi_agent("s1", "swarm")


# -- the primitive, the format, the earlier format ----------------------------------------------


def test_aes_siv_matches_rfc_5297_and_our_derivation_is_pinned() -> None:
    """RFC 5297 appendix A.1 (deterministic AES-SIV) through the primitive records use, and a
    known answer for the record cipher (HKDF-SHA256 to a 512-bit AES-SIV key)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV

    key = bytes.fromhex("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
    ad = bytes.fromhex("101112131415161718191a1b1c1d1e1f2021222324252627")
    plaintext = bytes.fromhex("112233445566778899aabbccddee")
    expected = "85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c"
    assert AESSIV(key).encrypt(plaintext, [ad]).hex() == expected
    cipher = Cipher(bytes(range(32)))
    sealed = cipher.encrypt(b'{"message":1}', b"svsm1 aad")
    assert sealed.hex() == "9acc1195f02730055111e8aa049785688fa491f73101e12e715bdaeb63"
    assert cipher.encrypt(b'{"message":1}', b"svsm1 aad") == sealed  # deterministic
    assert cipher.decrypt(sealed, b"svsm1 aad") == b'{"message":1}'


@pytest.mark.backends("valkey9")
def test_new_records_carry_the_siv_flag(client: Any) -> None:
    repo = ValkeySessionRepository(client, compress_threshold=64, key_provider=PROVIDER)
    _fill(repo)
    keys = repo.session_keys("s1")
    flags = {base64.b64decode(_raw(client, keys.messages, _member(repo, "agent", i))[SEALED])[0] for i in range(3)}
    assert flags == {ENCRYPTED | SIV | COMPRESSED}
    # SIV without encryption is no format: refused, never read as plaintext.
    record = _raw(client, keys.messages, _member(repo, "agent", 0))
    record[SEALED] = base64.b64encode(bytes((SIV,)) + b"x" * 40).decode()
    _set_raw(client, keys.messages, _member(repo, "agent", 0), record)
    with pytest.raises(DecryptionError, match="unsupported sealed record format"):
        ValkeySessionRepository(client, key_provider=PROVIDER).read_message("s1", "agent", 0)


# Sealed by the earlier format (AES-256-GCM, synthetic nonce from keyed BLAKE2b; flags 0x02 and
# 0x03), generated by that code with the wrapping key below for session "legacy", agent "agent".
LEGACY_WRAPPING_KEY = bytes(range(32))
LEGACY = {
    "dek": ("c3ZzbS1sa3AxCGxlZ2FjeS1rooPgDPqfQ1gReKn0lF2Z2znkR1VWzXhK0OqvgzsxFIxpf0F7OTvv6is+qSteeMiEI42ePd2z8nchFWaT"),
    "agent": (
        '{"__svsm_sealed__":"AhyewocmJxh0TfaL7j+8k0mPIKAZEEzm/BMLo45rtVyqV/GZb0Ha/yt585sallBz6DnStEYyMkLt'
        '/WxOPDuxVz+5ZkWX4STpG1rWLJZIfcbnXW+YWh0d9lJjJjkS7wtvbkYbEFo=","agent_id":"agent","updated_at":"2'
        '026-12-04T18:29:18.535302+00:00","created_at":"2026-12-04T18:29:18.535291+00:00"}'
    ),
    "m0": (
        '{"__svsm_sealed__":"AqAeQ9FogI1CgnQWarPjcUbuvLZeYFxtmixYdmSiPk1JfZN+dW+7ns87Hf5KqGURC3xNvC3vAr+i'
        'DHJKvQPp+B7S1Ca0hf6wEHr7v4QW+JhnFxZrlKDHraVOI65bqoZN+KM=","message_id":0,"updated_at":"2026-12-0'
        '4T18:29:18.536182+00:00","created_at":"2026-12-04T18:29:18.536174+00:00"}'
    ),
    "m1": (
        '{"__svsm_sealed__":"A3O/b7fBJpZ6piyNlKEjvvGpPaLpjk0wPUn1TnEPvxZFploBYKvPe8E0VP6TXJWi/2aEr5vYmWaG'
        'nLqbPXSeERIp+SbM++JLIzvPkc6esWjltt6r768zn3IsYNpYqRVufJITKVp6aDeQkq8P","message_id":1,"updated_at'
        '":"2026-12-04T18:29:18.536928+00:00","created_at":"2026-12-04T18:29:18.536920+00:00"}'
    ),
}


def test_records_sealed_in_the_earlier_format_still_open(standalone_client: Any) -> None:
    client = standalone_client
    provider = LocalKeyProvider({"legacy-k": LEGACY_WRAPPING_KEY}, "legacy-k")
    plain = ValkeySessionRepository(client)
    plain.create_session(_session("legacy"))
    plain.create_agent("legacy", SessionAgent(agent_id="agent", state={}, conversation_manager_state={}))
    plain.create_message("legacy", "agent", _message(0))
    plain.create_message("legacy", "agent", _message(1))
    keys = plain.session_keys("legacy")
    client.hset(keys.session, "dek", LEGACY["dek"])
    client.hset(keys.agents, "agent", LEGACY["agent"])
    client.hset(keys.messages, _member(plain, "agent", 0), LEGACY["m0"])
    client.hset(keys.messages, _member(plain, "agent", 1), LEGACY["m1"])

    reader = ValkeySessionRepository(client, key_provider=provider)
    listed = reader.list_messages("legacy", "agent")
    assert [m.message["content"][0]["text"] for m in listed] == ["sealed the old way", "compressed too " * 20]
    assert reader.read_message("legacy", "agent", 0) == listed[0]
    agent = reader.read_agent("legacy", "agent")
    assert agent is not None and agent.state == {"k": "v"}
    # A new write to the same session is sealed in the current format, under the same data key.
    reader.create_message("legacy", "agent", _message(2, "new"))
    assert base64.b64decode(_raw(client, keys.messages, _member(plain, "agent", 2))[SEALED])[0] & SIV
    assert len(ValkeySessionRepository(client, key_provider=provider).list_messages("legacy", "agent")) == 3
    # Rewritten, or re-encrypted, records come out in the current format.
    reader.update_message("legacy", "agent", _message(1, "rewritten"))
    assert base64.b64decode(_raw(client, keys.messages, _member(plain, "agent", 1))[SEALED])[0] & SIV
    assert not base64.b64decode(_raw(client, keys.messages, _member(plain, "agent", 0))[SEALED])[0] & SIV
    assert reencrypt_session(reader, "legacy") is True
    for field, value in client.hgetall(keys.messages).items():
        assert base64.b64decode(orjson.loads(value)[SEALED])[0] & SIV, field
    assert base64.b64decode(_raw(client, keys.agents, "agent")[SEALED])[0] & SIV
    again = ValkeySessionRepository(client, key_provider=provider).list_messages("legacy", "agent")
    assert [m.message["content"][0]["text"] for m in again] == ["sealed the old way", "rewritten", "new"]


# -- no key material in any repr or str --------------------------------------------------------


def _forms(secret: bytes) -> list[str]:
    """How bytes may show up in text: repr, hex, base64, a list of ints."""
    return [repr(secret)[2:-1], secret.hex(), base64.b64encode(secret).decode()[:40], str(list(secret))[1:-1]]


def test_no_key_material_in_any_repr(tmp_path: Any, standalone_client: Any) -> None:
    canary = bytes.fromhex("c0ffee11" * 8)
    wrapping = bytes.fromhex("deadbeef" * 8)
    provider = LocalKeyProvider({"canary": wrapping}, "canary")
    data_key = DataKey(wrapped=provider.wrap(canary, {"session_id": "s"}), key=canary)
    cipher = data_key.cipher(provider, {"session_id": "s"})
    file_store = FileKeyStore(tmp_path)
    file_store.put("s", "0" * 32, canary)
    stores = [file_store, ValkeyKeyStore(standalone_client)]
    objects: list[Any] = [
        data_key,
        cipher,
        provider,
        Sealer(None, provider),
        Binding("s", "k"),
        *stores,
        *(KeyStoreProvider(store, legacy=provider) for store in stores),
    ]
    repo = ValkeySessionRepository(standalone_client, key_provider=KeyStoreProvider(file_store, legacy=provider))
    repo.create_session(_session("s2"))
    repo.create_agent("s2", _agent())
    objects += [repo, repo._data_keys, repo._sealer]
    for obj in objects:
        for text in (repr(obj), str(obj)):
            for form in _forms(canary) + _forms(wrapping):
                assert form not in text, (type(obj).__name__, text)
    for key in repo._data_keys.values():
        assert key.key is not None
        assert not any(form in repr(repo._data_keys) for form in _forms(key.key))


# -- volume, copies ---------------------------------------------------------------------------


@pytest.mark.backends("valkey9", "cluster")
def test_list_of_2500_sealed_messages(client: Any) -> None:
    repo = ValkeySessionRepository(client, compress_threshold=256, key_provider=PROVIDER)
    messages = [_message(i, f"{i} {TEXT[: (i % 7) * 100]}") for i in range(2500)]
    repo.write_export(SessionExport(session=_session(), agents=[_agent()], messages={"agent": messages}))
    assert client.hlen(repo.session_keys("s1").messages) == 2500
    reader = ValkeySessionRepository(client, key_provider=PROVIDER)
    # Warm the client (a cluster client fetches COMMAND per node on first use), not the reader.
    ValkeySessionRepository(client, key_provider=PROVIDER).list_messages("s1", "agent", limit=1)
    with count_round_trips() as trips:
        listed = reader.list_messages("s1", "agent")
    assert listed == messages
    # Bounded steps of at most 1,000 records (these are well under the 1 MiB a step may read): the
    # first step's script with the data key in the same pipeline (HGET dek after it), then two
    # pipelines of an HMGET of the members listed and the script's check, no other round trip.
    # (redis-py's cluster client may first ask a node for COMMAND, its own command table, whatever
    # the repository sends.)
    assert [c for c in trips.commands if c != "COMMAND"] == ["EVALSHA", "HMGET", "HMGET"]
    assert reader.list_messages("s1", "agent", offset=990, limit=1020) == messages[990:2010]


@pytest.mark.backends("valkey9", "cluster")
def test_export_import_and_fork_of_an_encrypted_session(client: Any) -> None:
    repo = ValkeySessionRepository(client, compress_threshold=256, key_provider=PROVIDER)
    messages = _fill(repo, count=4)
    exported = repo.export_session("s1")
    assert TEXT[:40] in exported and SEALED not in exported  # plaintext by design

    other = ValkeySessionRepository(client, key_provider=_provider("elsewhere"))
    renamed = parse_export(exported)  # an edited file fails its end line's checksum: rename the records
    renamed.session.session_id = "copy"
    other.import_session("".join(line + "\n" for line in export_lines(renamed)))
    assert other.list_messages("copy", "agent") == messages
    copy_keys = other.session_keys("copy")
    assert SEALED in _raw(client, copy_keys.messages, _member(repo, "agent", 0))
    with pytest.raises(DecryptionError):
        repo.list_messages("copy", "agent")  # sealed under the other provider's data key
    other.import_session(other.export_session("copy"), overwrite=True)
    assert (
        ValkeySessionRepository(client, key_provider=other._sealer.key_provider).list_messages("copy", "agent")
        == messages
    )

    repo.fork_session("s1", "fork", user_id="u")
    fork_keys = repo.session_keys("fork")
    assert client.hget(fork_keys.session, "dek") != client.hget(repo.session_keys("s1").session, "dek")
    reader = ValkeySessionRepository(client, key_provider=PROVIDER)
    assert reader.list_messages("fork", "agent") == messages
    assert reader.read_multi_agent("fork", "swarm") == repo.read_multi_agent("s1", "swarm")
    info = reader.session_info("fork")
    assert info is not None and info.user_id == "u" and info.message_counts == {"agent": 4}
    with pytest.raises(DecryptionError, match="key_provider"):
        ValkeySessionRepository(client).fork_session("s1", "fork2")
    with pytest.raises(SessionException, match="already exists"):
        repo.fork_session("s1", "fork")
    # A fork of a plaintext session by an encrypting repository: copied as is, new data key.
    plain = ValkeySessionRepository(client)
    plain_messages = _fill(plain, "p")
    repo.fork_session("p", "p-fork")
    assert client.hget(repo.session_keys("p-fork").session, "dek") is not None
    assert reader.list_messages("p-fork", "agent") == plain_messages


# -- retries, managers, options off -----------------------------------------------------------


@pytest.mark.backends("valkey9")
def test_writes_stay_safe_to_repeat(client: Any) -> None:
    repo = ValkeySessionRepository(client, compress_threshold=256, key_provider=PROVIDER, check_versions=True)
    session = _session()
    # A create whose reply was lost, then repeated: recognised, with the same data key.
    plan = repo._p_create_session(session, None, None)
    step = next(plan)
    repo._db.execute(step.call)
    plan.close()
    repo.create_session(session)
    repo.create_agent("s1", _agent())
    message = _message(0, TEXT, IMAGE)
    repo.create_message("s1", "agent", message)
    first = client.hget(repo.session_keys("s1").messages, _member(repo, "agent", 0))
    # An append whose reply was lost: the repeat seals to the same bytes, so it is recognised too.
    repo._versions[("s1", "agent")] -= 1  # type: ignore[index]
    repo.create_message("s1", "agent", message)
    assert client.hget(repo.session_keys("s1").messages, _member(repo, "agent", 0)) == first
    assert ValkeySessionRepository(client, key_provider=PROVIDER).list_messages("s1", "agent") == [message]


@pytest.mark.backends("valkey9")
def test_manager_with_encryption(client: Any) -> None:
    manager = ValkeySessionManager("m1", client, key_provider=PROVIDER, compress_threshold=128)
    manager.create_agent("m1", _agent())
    manager.create_message("m1", "agent", _message(0, TEXT))
    assert client.hget(manager.session_keys("m1").session, "dek") is not None
    assert SEALED in _raw(client, manager.session_keys("m1").messages, _member(manager, "agent", 0))
    assert manager.rotate_wrapping_key() is True
    restored = ValkeySessionManager("m1", client, key_provider=PROVIDER)
    assert [m.message_id for m in restored.list_messages("m1", "agent")] == [0]


@pytest.mark.backends("valkey9", "cluster")
def test_options_off_change_nothing(client: Any) -> None:
    """Without the options records are the plain SDK shape and round trips are as before; with
    encryption on, steady-state round trips are the same too (the data key rides along)."""
    for options in ({}, {"key_provider": PROVIDER, "compress_threshold": 64}):
        client_repo = ValkeySessionRepository(client, **options)
        client_repo.create_session(_session("rt"))
        client_repo.create_agent("rt", _agent())
        with pytest.raises(SessionException):
            client_repo.delete_session("not-there")  # loads the scripts
        client_repo.create_message("rt", "agent", _message(0))
        with count_round_trips() as append:
            client_repo.create_message("rt", "agent", _message(1, TEXT))
        assert append.value == 1
        reader = ValkeySessionRepository(client, **options)
        with count_round_trips() as restore:
            assert reader.read_agent("rt", "agent") is not None
            assert len(reader.list_messages("rt", "agent")) == 2
        assert restore.value == 2
        with count_round_trips() as delete:
            reader.delete_session("rt")
        assert delete.value == 2
    plain = ValkeySessionRepository(client)
    _fill(plain)
    keys = plain.session_keys("s1")
    record = _raw(client, keys.messages, _member(plain, "agent", 0))
    assert list(record) == ["message", "message_id", "updated_at", "created_at"]
    agent_record = _raw(client, keys.agents, "agent")
    assert list(agent_record) == [
        "agent_id",
        "state",
        "conversation_manager_state",
        "_internal_state",
        "updated_at",
        "created_at",
    ]
    assert client.hget(keys.session, "dek") is None


def test_sealing_benchmark_quick_run(tmp_path: Any) -> None:
    """``benchmarks/sealing_bench.py --quick`` runs end to end and writes both result files."""
    from benchmarks import sealing_bench

    assert sealing_bench.main(["--quick", "--output-dir", str(tmp_path)]) == 0
    results = orjson.loads((tmp_path / "sealing.json").read_bytes())
    assert set(results["modes"]) == {"none", "zstd", "aes-gcm", "both"}
    assert results["modes"]["zstd"]["stored_bytes_per_message"] < results["modes"]["none"]["stored_bytes_per_message"]
    assert "| aes-gcm |" in (tmp_path / "sealing.md").read_text(encoding="utf-8")
