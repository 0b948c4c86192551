"""Encryption at rest: key providers, and re-wrapping a session's data key.

Each encrypted session has its own random 32-byte **data key**, which seals its records
(AES-256-GCM, see ``_seal.py``). The session hash keeps the data key only *wrapped* by a
:class:`KeyProvider` (field ``dek``), so the server never holds a usable key, and deleting the
session deletes the key: copies of its records (backups, replicas, dumps) become unreadable
("crypto-shredding").

A provider wraps under its *current* wrapping key and names that key inside the wrapped form, so
data keys wrapped under earlier wrapping keys keep working while old keys are still known;
:func:`rotate_wrapping_key` re-wraps one session's data key under the current one without touching
its records. :class:`LocalKeyProvider` holds wrapping keys in memory (tests, local use); with a
KMS, ``wrap`` is its *Encrypt* of the data key with the current key id and ``context`` as the
encryption context, and ``unwrap`` its *Decrypt* (the KMS finds the key id in the blob)::

    class KmsKeyProvider:
        def __init__(self, kms, key_id: str) -> None:
            self.kms, self.key_id = kms, key_id  # e.g. boto3.client("kms"), a key ARN or alias

        def wrap(self, data_key: bytes, context: dict[str, str]) -> bytes:
            reply = self.kms.encrypt(KeyId=self.key_id, Plaintext=data_key, EncryptionContext=context)
            return reply["CiphertextBlob"]

        def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytes:
            return self.kms.decrypt(CiphertextBlob=wrapped, EncryptionContext=context)["Plaintext"]

A repository unwraps a session's data key once and keeps it for the repository's lifetime, so the
provider is called once per session per process, not per record.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from ._client import arun_plan, run_plan
from ._seal import DATA_KEY_BYTES, KeyProvider, MissingExtraError

if TYPE_CHECKING:
    from ._core import SessionCore

__all__ = ["KeyProvider", "LocalKeyProvider", "MissingExtraError", "arotate_wrapping_key", "rotate_wrapping_key"]

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
        for key_id, key in keys.items():
            if not isinstance(key_id, str) or not key_id or len(key_id.encode()) > 255:
                raise ValueError(f"key id {key_id!r} must be a non-empty str of at most 255 bytes")
            if not isinstance(key, (bytes, bytearray)) or len(key) != DATA_KEY_BYTES:
                raise ValueError(f"wrapping key {key_id!r} must be {DATA_KEY_BYTES} bytes")
        if current not in keys:
            raise ValueError(f"current key id {current!r} is not among the keys")
        from ._seal import _aesgcm

        self._ciphers = {key_id: _aesgcm(bytes(key)) for key_id, key in keys.items()}
        self.current = current

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
