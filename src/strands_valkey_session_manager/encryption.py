"""Encryption at rest: key providers, key stores, re-wrapping and re-encryption of sessions.

Each encrypted session has its own random 32-byte **data key**, which seals its records
(AES-SIV, see ``_seal.py``). The session hash keeps only a *wrapped* form of it (field ``dek``),
made by a :class:`KeyProvider`. Where the data key itself lives decides what deleting a session
destroys:

* :class:`KeyStoreProvider` keeps every data key in a :class:`KeyStore` outside the dataset (a
  :class:`FileKeyStore` directory, or a :class:`ValkeyKeyStore` on a *separate* server), in one
  key set per session generation, and the session hash only names it. ``delete_session``
  destroys the deleted session's key set there before it deletes the records, so a backup of the
  dataset taken before the delete (RDB, AOF, replica, ``DUMP``) no longer opens once the delete
  has returned: crypto-shredding. A session created again under the same id keeps its own set.
* :class:`LocalKeyProvider` (or a KMS provider) wraps the data key and the wrapped key sits in
  the session hash. Deleting the session deletes that copy, but a backup taken before the delete
  holds it too, and the wrapping key stays live: **such a backup still opens** with the wrapping
  key. This gives confidentiality at rest, not shredding.

A provider wraps under its *current* wrapping key and names that key inside the wrapped form, so
data keys wrapped under earlier wrapping keys keep working while old keys are still known;
:func:`rotate_wrapping_key` re-wraps one session's data key under the current one without touching
its records, and :func:`reencrypt_session` / :func:`reencrypt_all_sessions` seal every record again
under a *new* data key (a leaked data key then opens nothing stored). :class:`LocalKeyProvider`
holds wrapping keys in memory; with a KMS, ``wrap`` is its *Encrypt* of the data key with the
current key id and ``context`` as the encryption context, and ``unwrap`` its *Decrypt*::

    class KmsKeyProvider:
        def __init__(self, kms, key_id: str) -> None:
            self.kms, self.key_id = kms, key_id  # e.g. boto3.client("kms"), a key ARN or alias

        def wrap(self, data_key: bytes, context: dict[str, str]) -> bytes:
            reply = self.kms.encrypt(KeyId=self.key_id, Plaintext=data_key, EncryptionContext=context)
            return reply["CiphertextBlob"]

        def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytes:
            return self.kms.decrypt(CiphertextBlob=wrapped, EncryptionContext=context)["Plaintext"]

A repository unwraps a session's data key once and keeps it for the repository's lifetime, so the
provider is called once per session per process, not per record. Providers are called inside the
repository's operations; the asyncio repository calls them synchronously too.

No object of this module shows key material in its ``repr`` or ``str``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import os
import re
import stat
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, runtime_checkable

from strands.types.exceptions import SessionException

from . import _codec, _seal, catalog
from ._client import CommandCall, Plan, ScriptCall, Step, adapter_for, arun_plan, run_plan
from ._keys import catalog_member, encode_id, validate_key_prefix
from ._redact import drop_frame_locals
from ._schema import F_DEK, F_RECORD, R_SESSION_GONE, named
from ._seal import DATA_KEY_BYTES, KeyProvider, ShreddingKeyProvider
from .exceptions import DecryptionError, MissingExtraError, SessionConflictError

if TYPE_CHECKING:
    from ._core import SessionCore

__all__ = [
    "FileKeyStore",
    "KeyProvider",
    "KeyStore",
    "KeyStoreProvider",
    "LocalKeyProvider",
    "MissingExtraError",
    "ReencryptProgress",
    "ShreddingKeyProvider",
    "ValkeyKeyStore",
    "areencrypt_all_sessions",
    "areencrypt_session",
    "arotate_wrapping_key",
    "destroy_data_keys",
    "reencrypt_all_sessions",
    "reencrypt_session",
    "rotate_wrapping_key",
]

_FORMAT: Final = b"svsm-lkp1"
_NONCE_BYTES: Final = 12


class LocalKeyProvider:
    """Wraps data keys with AES-256-GCM under wrapping keys held in memory.

    The wrapped form is ``svsm-lkp1``, the key id (length-prefixed), a 12-byte random nonce and the
    ciphertext with its tag; the associated data is the key id and the context, so a wrapped key
    unwraps only for the session it was made for.

    Args:
        keys: Wrapping keys by id, 32 bytes each. Keep retired keys here until every session wrapped
            under them is re-wrapped (:func:`rotate_wrapping_key`).
        current: Id of the key new data keys are wrapped with.

    Raises:
        ValueError: If a key is not 32 bytes, an id is empty or too long, or ``current`` is unknown.
    """

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        problem = _wrapping_keys_problem(keys, current)
        if problem is not None:
            del keys  # a traceback's locals show no wrapping key
            raise ValueError(problem)
        from ._seal import _aesgcm

        self._ciphers = {key_id: _aesgcm(bytes(key)) for key_id, key in keys.items()}
        self.current = current

    def __repr__(self) -> str:
        # Safe on a half-built provider too (a traceback of its constructor shows ``self``).
        key_ids = sorted(getattr(self, "_ciphers", {}))
        return f"LocalKeyProvider(key_ids={key_ids!r}, current={getattr(self, 'current', None)!r})"

    @staticmethod
    def generate_key() -> bytes:
        """A new random 32-byte wrapping key."""
        return os.urandom(DATA_KEY_BYTES)

    @staticmethod
    def _aad(key_id: bytes, context: dict[str, str]) -> bytes:
        parts = [key_id] + [p.encode("utf-8", "surrogatepass") for item in sorted(context.items()) for p in item]
        return _FORMAT + b"".join(struct.pack(">I", len(p)) + p for p in parts)

    def wrap(self, data_key: bytes, context: dict[str, str]) -> bytes:
        """``data_key`` wrapped under the current key."""
        key_id = self.current.encode()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[self.current].encrypt(nonce, bytes(data_key), self._aad(key_id, context))
        return _FORMAT + bytes((len(key_id),)) + key_id + nonce + sealed

    def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytes:
        """The data key inside ``wrapped``.

        Raises:
            ValueError: If ``wrapped`` is not ours or names an unknown key.
            cryptography.exceptions.InvalidTag: If it was altered or made for another context.
        """
        key_id = self.key_id(wrapped)
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise ValueError(f"wrapping key {key_id!r} is not known to this provider")
        start = len(_FORMAT) + 1 + len(key_id.encode())
        nonce, sealed = wrapped[start : start + _NONCE_BYTES], wrapped[start + _NONCE_BYTES :]
        return cipher.decrypt(nonce, sealed, self._aad(key_id.encode(), context))

    @staticmethod
    def key_id(wrapped: bytes) -> str:
        """Id of the wrapping key a wrapped data key was made with.

        Raises:
            ValueError: If ``wrapped`` is not a wrapped key of this provider's format.
        """
        if not wrapped.startswith(_FORMAT) or len(wrapped) <= len(_FORMAT):
            raise ValueError("not a key wrapped by LocalKeyProvider")
        size = wrapped[len(_FORMAT)]
        start = len(_FORMAT) + 1
        if len(wrapped) < start + size + _NONCE_BYTES + 16:
            raise ValueError("wrapped key is truncated")
        return wrapped[start : start + size].decode()


def _wrapping_keys_problem(keys: Mapping[str, bytes], current: str) -> str | None:
    """What is wrong with ``LocalKeyProvider``'s arguments (None when nothing); names key ids only."""
    for key_id, key in keys.items():
        if not isinstance(key_id, str) or not key_id or len(key_id.encode()) > 255:
            return f"key id {key_id!r} must be a non-empty str of at most 255 bytes"
        if not isinstance(key, (bytes, bytearray)) or len(key) != DATA_KEY_BYTES:
            return f"wrapping key {key_id!r} must be {DATA_KEY_BYTES} bytes"
    if current not in keys:
        return f"current key id {current!r} is not among the keys"
    return None


def rotate_wrapping_key(repository: SessionCore, session_id: str) -> bool:
    """Re-wrap a session's data key under the repository's key provider's current wrapping key.

    One round trip to read the wrapped key, one script to replace it if no other writer did
    meanwhile; messages, agents and orchestrator state are not read or rewritten. Works on a
    :class:`~strands_valkey_session_manager.ValkeySessionRepository` or manager; for the asyncio
    repository use :func:`arotate_wrapping_key`.

    Returns:
        True when re-wrapped, False when the session has no data key (it is not encrypted).

    Raises:
        ValueError: If the repository has no key provider.
        SessionException: If the session does not exist.
        DecryptionError: If the provider cannot unwrap the stored data key.
        SessionConflictError: If another writer replaced the wrapped key meanwhile (nothing written).
    """
    db: Any = repository._db  # type: ignore[attr-defined]
    return run_plan(db, repository._p_rotate_wrapping_key(session_id))


async def arotate_wrapping_key(repository: SessionCore, session_id: str) -> bool:
    """:func:`rotate_wrapping_key` for :class:`~strands_valkey_session_manager.AsyncValkeySessionRepository`."""
    db: Any = repository._db  # type: ignore[attr-defined]
    return await arun_plan(db, repository._p_rotate_wrapping_key(session_id))


# -- key stores: data keys outside the dataset ----------------------------------------------------

# References stored in the session hash: ``svsm-ks1:<key id>`` (key set: the bare session id, made
# by earlier versions, still read) and ``svsm-ks2:<set id>:<key id>`` (key set of one generation).
_KS_FORMAT: Final = b"svsm-ks1:"
_KS2_FORMAT: Final = b"svsm-ks2:"
_KEY_ID = re.compile(r"[0-9a-f]{32}")


@runtime_checkable
class KeyStore(Protocol):
    """Where :class:`KeyStoreProvider` keeps data keys: in key sets, by key id.

    The first argument of each method names a **key set**: one per session generation, i.e. per
    create of a session id (``<session id>:<set id>``, the set id random), so that deleting a
    session destroys its own set and never the set of a session created again under the same id
    meanwhile. Key sets written before key sets were per generation are named by the bare session
    id, and still open. A store treats the name as opaque text.

    Keys must live outside the dataset the records are in (another directory, another server), so
    that no backup of the dataset holds them. ``put`` must be durable when it returns: a key lost
    by the store is a session that no longer opens.
    """

    def put(self, session_id: str, key_id: str, key: bytes) -> None:
        """Store ``key`` in the key set ``session_id`` under ``key_id`` (a new id each time)."""
        ...

    def get(self, session_id: str, key_id: str) -> bytes | None:
        """The key stored under ``key_id`` in the key set, or None when there is none."""
        ...

    def delete(self, session_id: str, key_id: str) -> None:
        """Delete one key of the key set; no error when it is absent."""
        ...

    def destroy(self, session_id: str) -> None:
        """Delete every key of the key set; no error when there is none."""
        ...


class FileKeyStore:
    """Data keys as files: ``<directory>/<SHA-256 of the key set>/<key id>.key``, 0600 in 0700
    directories, each written to a temporary file, flushed to disk and renamed into place.

    ``destroy`` removes the key set's directory. The directory must not be inside anything backed
    up with the dataset; a file system that keeps snapshots, or a backup of this directory, keeps
    deleted keys for as long as it keeps them.

    Hostile directories: a key directory other users can write to (or owned by another user) is
    refused, since they could plant links in it; a session directory that is a symbolic link is
    refused by ``put`` and ``get`` and only unlinked by ``destroy``; temporary files are created
    exclusively, never through a link. Session ids only ever name a SHA-256 digest, so ``/``,
    ``..``, any Unicode or length, and ids differing only in case (distinct digests) stay apart.

    Args:
        directory: Created (mode 0700) if missing.

    Raises:
        ValueError: If the directory is writable by other users or owned by another user.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._root = Path(directory)
        self._root.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.stat(self._root)
        if info.st_mode & 0o022 or info.st_uid != os.geteuid():
            raise ValueError(
                f"key directory {str(self._root)!r} is writable by other users or owned by another user "
                f"(mode {stat.S_IMODE(info.st_mode):o}): they could redirect or remove keys; use a directory "
                "of mode 0700 owned by this user"
            )

    def __repr__(self) -> str:
        return f"FileKeyStore({str(getattr(self, '_root', ''))!r})"

    def _dir(self, session_id: str) -> Path:
        return self._root / hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()

    @staticmethod
    def _name(key_id: str) -> str:
        if not _KEY_ID.fullmatch(key_id):
            raise ValueError(f"key id {key_id!r} is not 32 lowercase hex digits")
        return f"{key_id}.key"

    def _session_dir(self, session_id: str) -> Path:
        """The session's directory, refused when it is anything but a directory (a link)."""
        directory = self._dir(session_id)
        if not stat.S_ISDIR(os.lstat(directory).st_mode):
            raise NotADirectoryError(
                errno.ENOTDIR,
                "a session's key directory is not a directory (a symbolic link?): refused",
                str(directory),
            )
        return directory

    def put(self, session_id: str, key_id: str, key: bytes) -> None:
        """Write the key file durably (temporary file, fsync, rename, fsync of the directory)."""
        name = self._name(key_id)
        with contextlib.suppress(FileExistsError):
            self._dir(session_id).mkdir(mode=0o700)
        directory = self._session_dir(session_id)
        temporary = directory / f".{name}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()  # left by a crash of an earlier process with this pid
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, bytes(key))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, directory / name)
        _fsync_dir(directory)
        _fsync_dir(self._root)

    def get(self, session_id: str, key_id: str) -> bytes | None:
        """The key file's bytes, or None when it does not exist."""
        name = self._name(key_id)
        try:
            return (self._session_dir(session_id) / name).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, session_id: str, key_id: str) -> None:
        """Remove one key file."""
        name = self._name(key_id)
        with contextlib.suppress(FileNotFoundError):
            directory = self._session_dir(session_id)
            (directory / name).unlink()
            _fsync_dir(directory)

    def destroy(self, session_id: str) -> None:
        """Remove the session's directory and every key file in it."""
        directory = self._dir(session_id)
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISDIR(os.lstat(directory).st_mode):
                directory.unlink()  # a link: removed, never followed
                return
        while True:
            try:
                entries = list(directory.iterdir())
            except FileNotFoundError:
                return
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
            try:
                directory.rmdir()
            except FileNotFoundError:
                return
            except OSError:
                continue  # a key was written meanwhile: remove it too
            _fsync_dir(self._root)
            return


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ValkeyKeyStore:
    """Data keys in a Valkey/Redis server of their own: hash ``<prefix>:{<key set>}`` (the set
    percent-encoded), field key id, value the key in base64.

    The server must not be the dataset's server: a database number on the same server is not
    enough, since an RDB file or AOF holds every database (:meth:`check_separate_from`). Give it
    ``appendonly yes`` with ``appendfsync always`` (a key it loses is a session that no longer
    opens), and keep its own backups away from the dataset's, for no longer than a deleted session
    may stay readable. Connection failures raise ``SessionStoreUnavailableError``, which the
    repository retries and which never reads as corrupt data.

    Args:
        client: A synchronous valkey-py, redis-py or Valkey GLIDE client of the key server.
        key_prefix: First component of the key store's keys (default ``svsm-keys``).
    """

    def __init__(self, client: Any, key_prefix: str = "svsm-keys") -> None:
        self._prefix = validate_key_prefix(key_prefix)
        self._db = adapter_for(client, None, is_async=False)

    def __repr__(self) -> str:
        return f"ValkeyKeyStore(key_prefix={getattr(self, '_prefix', None)!r})"

    def _key(self, session_id: str) -> str:
        return f"{self._prefix}:{{{encode_id(session_id, 'session_id')}}}"

    def _run(self, operation: str, session_id: str, method: str, *args: Any) -> Any:
        key = self._key(session_id)

        def plan() -> Plan[Any]:
            return (yield Step(operation, session_id, key, CommandCall(method, (key, *args))))

        return run_plan(self._db, plan())

    def put(self, session_id: str, key_id: str, key: bytes) -> None:
        """``HSET`` of the key."""
        self._run("key_store_put", session_id, "hset", key_id, base64.b64encode(bytes(key)).decode("ascii"))

    def get(self, session_id: str, key_id: str) -> bytes | None:
        """``HGET`` of the key, or None."""
        value = self._run("key_store_get", session_id, "hget", key_id)
        return None if value is None else base64.b64decode(value, validate=True)

    def delete(self, session_id: str, key_id: str) -> None:
        """``HDEL`` of one key."""
        self._run("key_store_delete", session_id, "hdel", key_id)

    def destroy(self, session_id: str) -> None:
        """``UNLINK`` of the session's hash."""
        self._run("key_store_destroy", session_id, "unlink")

    def check_separate_from(self, dataset_client: Any) -> None:
        """Raise ``ValueError`` when ``dataset_client`` talks to the key store's own server.

        Compares the servers' ``run_id`` (``INFO server``): two database numbers of one server are
        one server, and its backups hold both. Standalone valkey-py/redis-py clients only.
        """
        mine = _run_id(self._db.client)
        if mine is not None and mine == _run_id(dataset_client):
            raise ValueError(
                "the key store and the dataset are on the same server: its backups would hold the data keys"
            )


def _run_id(client: Any) -> str | None:
    info = client.info("server")
    if not isinstance(info, dict) or "run_id" not in info:
        return None
    return str(info["run_id"])


class KeyStoreProvider:
    """A :class:`KeyProvider` whose data keys live in a :class:`KeyStore`, one key set per session
    generation, destroyed by ``delete_session`` (:class:`ShreddingKeyProvider`).

    ``wrap`` (a new session) stores the data key in a new key set under a new random key id and
    returns ``svsm-ks2:<set id>:<key id>``, the only thing the session hash holds;
    :meth:`wrap_beside` (re-encryption, rotation) stores a session's next data key in the set of
    its current one, so the set holds every key the session generation ever referenced.
    ``unwrap`` looks the id up under the session of ``context``, so a wrapped key copied to
    another session finds nothing. :meth:`destroy` destroys the one set the deleted session's
    ``dek`` names: a session created again under the same id meanwhile has its key in a set of its
    own, which stays (a set per session id would be destroyed under a create that had put its key
    but not yet run its script, leaving the new session sealed under a destroyed key). Sessions sealed earlier
    under another provider (a :class:`LocalKeyProvider` or a KMS) still open through ``legacy``;
    :func:`reencrypt_session` moves them into the key store under a new data key.

    Args:
        store: Where the data keys live.
        legacy: Unwraps data keys this provider did not make (optional).
    """

    def __init__(self, store: KeyStore, *, legacy: KeyProvider | None = None) -> None:
        if not isinstance(store, KeyStore):
            raise TypeError(f"store must have put, get, delete and destroy, not {type(store).__name__}")
        if legacy is not None and not isinstance(legacy, KeyProvider):
            raise TypeError(f"legacy must have wrap and unwrap, not {type(legacy).__name__}")
        self._store = store
        self._legacy = legacy

    def __repr__(self) -> str:
        return f"KeyStoreProvider({getattr(self, '_store', None)!r}, legacy={getattr(self, '_legacy', None)!r})"

    @staticmethod
    def _reference(wrapped: bytes, session_id: str) -> tuple[str, str] | None:
        """(key set, key id) that ``wrapped`` names, or None when it was not made by a key store.

        Raises:
            ValueError: If it has our prefix but is malformed.
        """
        if wrapped.startswith(_KS2_FORMAT):
            set_id, _, key_id = wrapped[len(_KS2_FORMAT) :].decode("ascii", "replace").partition(":")
            if not (_KEY_ID.fullmatch(set_id) and _KEY_ID.fullmatch(key_id)):
                raise ValueError("malformed key store reference")
            return _set_name(session_id, set_id), key_id
        if wrapped.startswith(_KS_FORMAT):
            key_id = wrapped[len(_KS_FORMAT) :].decode("ascii", "replace")
            if not _KEY_ID.fullmatch(key_id):
                raise ValueError("malformed key store reference")
            return session_id, key_id  # a key set made before sets were per generation
        return None

    def _put(self, data_key: bytes, session_id: str, set_id: str | None) -> bytes:
        """Store ``data_key`` under a new key id in the key set ``set_id`` of the session (None:
        the earlier per-session set); the reference to store in the session hash.

        A failure of the store is raised with no key bytes among its traceback's locals."""
        key_id = os.urandom(16).hex()
        try:
            if set_id is None:
                self._store.put(session_id, key_id, bytes(data_key))
                return _KS_FORMAT + key_id.encode("ascii")
            self._store.put(_set_name(session_id, set_id), key_id, bytes(data_key))
            return _KS2_FORMAT + f"{set_id}:{key_id}".encode("ascii")
        except BaseException as e:
            del data_key
            drop_frame_locals(e)
            raise

    def wrap(self, data_key: bytes, context: dict[str, str]) -> bytes:
        """Store ``data_key`` in a new key set (a new session generation); the reference to store
        in the session hash."""
        try:
            return self._put(data_key, context["session_id"], os.urandom(16).hex())
        except BaseException:
            del data_key  # this frame's locals in the traceback: no key bytes (``_put`` clears its own)
            raise

    def wrap_beside(self, data_key: bytes, current: bytes, context: dict[str, str]) -> bytes:
        """Store a session's next data key in the key set of its ``current`` one (what its
        ``dek`` holds now); a new set when ``current`` was not made by a key store (``legacy``).

        Re-encryption and rotation call this, so that deleting the session destroys the old key
        too even when the process that replaced it died before retiring it."""
        wrapped = bytes(current)
        set_id: str | None = os.urandom(16).hex()
        if wrapped.startswith(_KS2_FORMAT):
            named = wrapped[len(_KS2_FORMAT) :].decode("ascii", "replace").partition(":")[0]
            set_id = named if _KEY_ID.fullmatch(named) else set_id
        elif wrapped.startswith(_KS_FORMAT):
            set_id = None
        try:
            return self._put(data_key, context["session_id"], set_id)
        except BaseException:
            del data_key  # this frame's locals in the traceback: no key bytes (``_put`` clears its own)
            raise

    def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytes:
        """The data key ``wrapped`` names (or, not made here, ``legacy``'s unwrap).

        Raises:
            LookupError: If the key store does not hold it: the session was deleted (its keys
                destroyed), the key store lost its data, or this is another key store.
            ValueError: If ``wrapped`` is not ours and there is no ``legacy`` provider.
        """
        reference = self._reference(bytes(wrapped), context["session_id"])
        if reference is None:
            if self._legacy is None:
                raise ValueError("the data key was not made by this KeyStoreProvider and it has no legacy provider")
            return self._legacy.unwrap(wrapped, context)
        key_set, key_id = reference
        key = self._store.get(key_set, key_id)
        if key is None:
            raise LookupError(
                f"data key {key_id} is not in the key store: the session was deleted (its keys were "
                "destroyed), the key store lost its data (a key server restarted without persistence, or "
                "flushed; a key directory replaced), or this is another key store"
            )
        return key

    def destroy(self, wrapped: bytes, context: dict[str, str]) -> None:
        """Destroy the key set ``wrapped`` (a deleted session's ``dek``) belongs to: every data key
        of that session generation, and no other's. Nothing when ``wrapped`` was not made here."""
        reference = self._reference(bytes(wrapped), context["session_id"])
        if reference is not None:
            self._store.destroy(reference[0])

    def retire(self, wrapped: bytes, context: dict[str, str]) -> None:
        """Destroy one data key no record uses any more (after re-encryption or rotation)."""
        reference = self._reference(bytes(wrapped), context["session_id"])
        if reference is not None:
            self._store.delete(*reference)


def _set_name(session_id: str, set_id: str) -> str:
    """The key set of one generation of a session: what a :class:`KeyStore` gets as its first
    argument. A bare session id is an earlier version's set; a session id that itself ends in
    ``:<32 hex digits>`` could only meet another session's set by guessing its random set id."""
    return f"{session_id}:{set_id}"


def destroy_data_keys(repository: SessionCore, session_id: str, dek: str) -> None:
    """Destroy the data keys of a deleted session whose key set the key store still holds.

    ``dek`` is what the session hash held (base64, as ``prune``'s error on a key store out of
    reach reports it). Only this session generation's keys are destroyed: a session created again
    under the same id keeps its own.

    Raises:
        ValueError: If the repository's key provider does not keep keys (not shredding) or ``dek``
            is not base64.
    """
    provider = repository._sealer.key_provider
    if not isinstance(provider, ShreddingKeyProvider):
        raise ValueError("destroy_data_keys needs a repository whose key_provider keeps its keys (KeyStoreProvider)")
    try:
        wrapped = base64.b64decode(dek, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"session_id=<{session_id}> | dek is not base64: {e}") from e
    provider.destroy(wrapped, repository._key_context(session_id))


# -- re-encryption under a new data key -----------------------------------------------------------

ReencryptOutcome = Literal["reencrypted", "not encrypted", "missing"]


@dataclass(frozen=True)
class ReencryptProgress:
    """One session visited by :func:`reencrypt_all_sessions`."""

    session_id: str
    outcome: ReencryptOutcome
    #: Pass as ``cursor=`` to resume after this session.
    cursor: str
    #: Sessions visited so far in this call, this one included.
    visited: int


def _digest(pairs: Mapping[bytes, bytes]) -> str:
    """What ``digest()`` in ``reencrypt_session.lua`` computes of a hash."""
    each = sorted(hashlib.sha1(b"%d:%b%b" % (len(f), f, v)).hexdigest() for f, v in pairs.items())
    return hashlib.sha1("".join(each).encode("ascii")).hexdigest()


def _raw_pairs(reply: Any) -> dict[bytes, bytes]:
    if isinstance(reply, dict):
        items = list(reply.items())
    else:  # a flat list
        items = [(reply[i], reply[i + 1]) for i in range(0, len(reply or ()), 2)]
    return {_as_bytes(f): _as_bytes(v) for f, v in items}


def _as_bytes(value: Any) -> bytes:
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(value)


def _reseal(
    raw: bytes, *, old: _seal.Cipher, new: _seal.Cipher, sealer: _seal.Sealer, binding: _seal.Binding, field: str
) -> bytes | None:
    """``raw`` with its encrypted content sealed again under ``new``; None if it is not encrypted.

    Raises:
        UnsealError: If the content does not open under ``old`` at this place.
    """
    if _codec.SEALED_MARKER.encode() not in raw:
        return None
    try:
        record = _codec.loads(raw)
    except _codec.CodecError as e:
        raise _seal.UnsealError(f"not a valid record: {e}") from e
    if not isinstance(record, dict) or not isinstance(record.get(_codec.SEALED_MARKER), str):
        return None
    blob = record[_codec.SEALED_MARKER]
    try:
        flags = base64.b64decode(blob[:4], validate=True)[0]
    except (binascii.Error, ValueError, IndexError):
        flags = _seal.ENCRYPTED  # malformed: open_blob says how
    if not flags & _seal.ENCRYPTED:
        return None
    inner = _seal.open_blob(blob, lambda: old, binding, field)
    record[_codec.SEALED_MARKER] = sealer.seal(inner, new, binding, field)
    return _codec.dumps(record)


def _pack(records: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(b"%d:%b%d:%b" % (len(f), f, len(v), v) for f, v in records)


def _next_key(
    provider: KeyProvider, fresh: _seal.DataKey | None, beside: bytes, current: bytes, context: dict[str, str]
) -> _seal.DataKey:
    """The data key to replace ``current`` with: ``fresh`` when it was made beside ``current``,
    else a new one beside it (``fresh`` retired): when the session's key changed between two
    attempts (deleted and created again, or re-encrypted by another process), the new key must
    join the key set of the key it replaces, which a delete of that session destroys."""
    if fresh is not None and beside == current:
        return fresh
    if fresh is not None and isinstance(provider, ShreddingKeyProvider):
        provider.retire(fresh.wrapped, context)
    return _seal.DataKey.fresh(provider, context, beside=current)


def _p_reencrypt(core: SessionCore, session_id: str, attempts: int) -> Plan[ReencryptOutcome]:
    """Read the session, seal every encrypted record again under a new data key, swap with
    ``reencrypt_session.lua`` if nothing changed meanwhile; read again on a change."""
    provider = core._sealer.key_provider
    if provider is None:
        raise ValueError("reencrypt_session needs a repository with a key_provider")
    keys = core.session_keys(session_id)
    context = core._key_context(session_id)
    fresh: _seal.DataKey | None = None
    fresh_beside = b""
    bindings = {k: _seal.Binding(session_id, k) for k in (keys.agents, keys.messages, keys.multi)}
    try:
        for _ in range(attempts):
            reads = [
                CommandCall("hget", (keys.session, F_RECORD)),
                CommandCall("hget", (keys.session, F_DEK)),
                CommandCall("hgetall", (keys.agents,)),
                CommandCall("hgetall", (keys.messages,)),
                CommandCall("hgetall", (keys.multi,)),
            ]
            record, stored, *hashes = yield Step("reencrypt_session", session_id, keys.session, reads)
            if record is None:
                return "missing"
            if stored is None:
                return "not encrypted"
            old = core._stored_key(session_id, stored)
            try:
                old_cipher = old.cipher(provider, context)
            except _seal.UnsealError as e:
                raise DecryptionError(f"session_id=<{session_id}>, key=<{keys.session}> | {e}") from e
            fresh = _next_key(provider, fresh, fresh_beside, old.wrapped, context)
            fresh_beside = old.wrapped
            new_cipher = fresh.cipher(None, context)
            fingerprint = ""
            packed: list[bytes] = []
            for key, reply in zip((keys.agents, keys.messages, keys.multi), hashes, strict=True):
                pairs = _raw_pairs(reply)
                fingerprint += _digest(pairs)
                changed = []
                for field_bytes, value in pairs.items():
                    field = field_bytes.decode("utf-8", "surrogatepass")
                    try:
                        resealed = _reseal(
                            value,
                            old=old_cipher,
                            new=new_cipher,
                            sealer=core._sealer,
                            binding=bindings[key],
                            field=field,
                        )
                    except _seal.UnsealError as e:
                        raise DecryptionError(
                            f"session_id=<{session_id}>, key=<{key}> | cannot open a sealed record: {e}"
                        ) from e
                    if resealed is not None:
                        changed.append((field_bytes, core._sized(resealed, key)))
                packed.append(_pack(changed))
            agents, messages, multi = packed
            args = named(
                "reencrypt_session",
                fingerprint=fingerprint,
                dek=_codec.text(stored),
                new_dek=fresh.stored,
                agents=agents,
                messages=messages,
                multi=multi,
            )
            swapped = yield Step(
                "reencrypt_session", session_id, keys.session, ScriptCall("reencrypt_session", keys.all(), args)
            )
            if int(swapped) == R_SESSION_GONE:
                return "missing"
            if int(swapped) == 1:
                core._data_keys[session_id] = fresh
                fresh = None
                if isinstance(provider, ShreddingKeyProvider):
                    provider.retire(old.wrapped, context)
                return "reencrypted"
        raise SessionConflictError(
            f"session_id=<{session_id}>, key=<{keys.session}> | the session changed during each of {attempts} "
            "attempts to re-encrypt it; nothing was written"
        )
    finally:
        if fresh is not None and isinstance(provider, ShreddingKeyProvider):
            provider.retire(fresh.wrapped, context)  # never stored in the session


def _p_reencrypt_all(
    core: SessionCore, cursor: str | None, progress: Callable[[ReencryptProgress], None] | None, attempts: int
) -> Plan[int]:
    visited = reencrypted = 0
    while True:
        page = yield from catalog.p_list_sessions(core._layout, None, None, cursor, 100)
        for info in page.sessions:
            outcome = yield from _p_reencrypt(core, info.session_id, attempts)
            visited += 1
            reencrypted += outcome == "reencrypted"
            created = round(info.created_at.timestamp() * 1000)
            cursor = catalog_member(created, info.session_id)
            if progress is not None:
                progress(ReencryptProgress(info.session_id, outcome, cursor, visited))
        if page.cursor is None:
            return reencrypted
        cursor = page.cursor


def reencrypt_session(repository: SessionCore, session_id: str, *, attempts: int = 5) -> bool:
    """Seal every encrypted record of a session again under a new data key, and retire the old key.

    Reads the session's records in one round trip, opens each encrypted one with the current data
    key and seals it under a new one (records sealed in the earlier AES-GCM format come out in
    the current one), then swaps records and wrapped key in one script that first checks that no
    record and not the data key changed since the read (compare and set). When something changed
    (another process appended, say), nothing is written and it starts again, up to ``attempts``
    times, so a concurrent write is never lost. The swap bumps every agent's version: a writer that
    checks versions (the manager's default) and still holds the old data key gets
    ``SessionConflictError`` instead of storing a record under a key the session no longer has.
    With a :class:`KeyStoreProvider` the old data key is then destroyed in the key store.

    Plaintext and compressed-only records are left as they are. Holds the server for one script
    over the whole session; run it from a maintenance process (the repository that runs it gets
    a conflict on its own next write to the session, as any other writer).

    Returns:
        True when re-encrypted, False when the session has no data key (it is not encrypted).

    Raises:
        ValueError: If the repository has no key provider.
        SessionException: If the session does not exist.
        DecryptionError: If a record or the data key cannot be opened.
        SessionConflictError: If the session changed during every attempt (nothing written).
    """
    db: Any = repository._db  # type: ignore[attr-defined]
    return _outcome(run_plan(db, _p_reencrypt(repository, session_id, attempts)), session_id)


async def areencrypt_session(repository: SessionCore, session_id: str, *, attempts: int = 5) -> bool:
    """:func:`reencrypt_session` for :class:`~strands_valkey_session_manager.AsyncValkeySessionRepository`."""
    db: Any = repository._db  # type: ignore[attr-defined]
    return _outcome(await arun_plan(db, _p_reencrypt(repository, session_id, attempts)), session_id)


def _outcome(outcome: ReencryptOutcome, session_id: str) -> bool:
    if outcome == "missing":
        raise SessionException(f"Session {session_id} does not exist")
    return outcome == "reencrypted"


def reencrypt_all_sessions(
    repository: SessionCore,
    *,
    cursor: str | None = None,
    progress: Callable[[ReencryptProgress], None] | None = None,
    attempts: int = 5,
) -> int:
    """:func:`reencrypt_session` of every session in the catalog, newest first.

    Resumable: each :class:`ReencryptProgress` passed to ``progress`` carries the ``cursor`` to
    pass to a later call to carry on after that session. Sessions deleted meanwhile are skipped
    (outcome ``"missing"``); sessions without a data key are left alone (``"not encrypted"``).
    Sessions created during the walk already get a data key of their own.

    Returns:
        The number of sessions re-encrypted by this call.

    Raises:
        The errors of :func:`reencrypt_session`, for the session being visited; resume from the
        last cursor reported.
    """
    db: Any = repository._db  # type: ignore[attr-defined]
    return run_plan(db, _p_reencrypt_all(repository, cursor, progress, attempts))


async def areencrypt_all_sessions(
    repository: SessionCore,
    *,
    cursor: str | None = None,
    progress: Callable[[ReencryptProgress], None] | None = None,
    attempts: int = 5,
) -> int:
    """:func:`reencrypt_all_sessions` for the asyncio repository."""
    db: Any = repository._db  # type: ignore[attr-defined]
    return await arun_plan(db, _p_reencrypt_all(repository, cursor, progress, attempts))
