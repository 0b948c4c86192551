"""Sealed records: compression (zstd) and encryption (AES-SIV, RFC 5297) of a record's content.

A sealed record keeps the plaintext envelope the scripts rely on (ids, ``updated_at``, and
``created_at`` last) and carries everything else in one base64 member, :data:`SEALED_MARKER`::

    {"__svsm_sealed__": "<base64 blob>", "message_id": 3, "updated_at": "...", "created_at": "..."}

The blob is one flags byte, then the payload:

* bit 0 (:data:`COMPRESSED`): the inner JSON is a zstd frame;
* bit 1 (:data:`ENCRYPTED`): the payload is encrypted under the session's data key, with associated
  data made of the flags byte, the session id, the record's key name and its hash field (message
  member, agent id or orchestrator id), so a value cannot be moved to another session, key or
  position, nor its flags changed, undetected;
* bit 2 (:data:`SIV`, always set with bit 1 on writes): the payload is AES-SIV (RFC 5297, a
  deterministic AEAD) under a 512-bit key derived from the data key with HKDF-SHA256: the 16-byte
  synthetic IV, then the ciphertext. Without bit 2 an encrypted payload is the format of earlier
  versions, still read: a 12-byte nonce (keyed BLAKE2b of associated data and plaintext) and
  AES-256-GCM ciphertext with its tag.

AES-SIV is deterministic by design: the same record at the same place seals to the same bytes,
which keeps every write safe to repeat (the scripts recognise a repeated write by its identical
value, ``repeated_write`` in ``lua/_prelude.lua``). What an observer learns is that two seals of
one position under one data key hold the same content.

Other bits are reserved; a blob that sets one is refused. Compression happens only above a
threshold and only when it shrinks the record; with encryption off a record that is not worth
compressing stays plain, so compression alone costs nothing on small records.

This module imports ``zstandard`` and ``cryptography`` on first use, so they are optional extras.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from ._codec import SEALED_MARKER, CodecError
from ._redact import drop_frame_locals
from .exceptions import AccessDeniedError, MissingExtraError, SessionStoreUnavailableError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV

COMPRESSED: Final = 0x01
ENCRYPTED: Final = 0x02
SIV: Final = 0x04
_KNOWN_FLAGS: Final = COMPRESSED | ENCRYPTED | SIV
# Shortest encrypted payload: AES-SIV's 16-byte synthetic IV; the earlier AES-GCM format's nonce and tag.
_MIN_SIV: Final = 16
_MIN_LEGACY: Final = 12 + 16
_NONCE_BYTES: Final = 12
DATA_KEY_BYTES: Final = 32
#: Largest inner JSON a compressed blob may expand to (the server's own value limit).
MAX_INFLATED_BYTES: Final = 512 * 1024 * 1024
_ZSTD_LEVEL: Final = 3
# JSON around the blob in a sealed record: "__svsm_sealed__":"" and a comma.
_MARKER_OVERHEAD: Final = len(SEALED_MARKER) + 6


class UnsealError(CodecError):
    """A sealed record cannot be opened: wrong or missing key, tampered bytes, unknown format."""


@runtime_checkable
class KeyProvider(Protocol):
    """Wraps and unwraps per-session data keys (envelope encryption).

    ``wrap`` encrypts a 32-byte data key under the provider's *current* wrapping key and returns an
    opaque blob that names that wrapping key inside it, so blobs wrapped under earlier keys still
    unwrap after the current key changes (rotation). ``context`` (``{"session_id": ...}``) must be
    bound to the blob (as AES-GCM associated data, or a KMS encryption context): unwrapping with
    another context fails. Both methods may raise anything on failure; the repository reports it as
    :class:`~strands_valkey_session_manager.exceptions.DecryptionError` naming the session.
    """

    def wrap(self, data_key: bytes, context: dict[str, str]) -> bytes:
        """The data key encrypted under the current wrapping key (key id inside)."""
        ...

    def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytes:
        """The data key of a blob made by :meth:`wrap` (under any wrapping key still known)."""
        ...


@runtime_checkable
class ShreddingKeyProvider(Protocol):
    """A :class:`KeyProvider` that keeps data keys itself (outside the dataset) and can destroy them.

    ``delete_session`` calls :meth:`destroy` with the session's ``dek`` before it deletes the
    session's records (and only if its ``dek`` is still that one), so once it returns no copy of
    the records (backup, replica, dump) can be decrypted through this provider.
    """

    def destroy(self, wrapped: bytes, context: dict[str, str]) -> None:
        """Destroy every data key of the session generation ``wrapped`` (its ``dek``) belongs to,
        and no key of a session created again under the same id; no error when there is none."""
        ...

    def retire(self, wrapped: bytes, context: dict[str, str]) -> None:
        """Destroy one data key (made by ``wrap``) that no stored record uses any more."""
        ...


def _aesgcm(key: bytes) -> AESGCM:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise MissingExtraError(
            "encryption needs the 'cryptography' package: pip install 'strands-valkey-session-manager[encryption]'"
        ) from e
    return AESGCM(key)


def _aessiv(data_key: bytes) -> AESSIV:
    """AES-SIV (RFC 5297) under the 512-bit record key derived from ``data_key`` (HKDF-SHA256)."""
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESSIV
        from cryptography.hazmat.primitives.hashes import SHA256
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise MissingExtraError(
            "encryption needs the 'cryptography' package: pip install 'strands-valkey-session-manager[encryption]'"
        ) from e
    return AESSIV(HKDF(algorithm=SHA256(), length=64, salt=None, info=b"svsm record key aes-siv").derive(data_key))


_zstd_local = threading.local()


def _zstd() -> Any:
    try:
        import zstandard
    except ImportError as e:
        raise MissingExtraError(
            "compression needs the 'zstandard' package: pip install 'strands-valkey-session-manager[compression]'"
        ) from e
    return zstandard


def _compressor() -> Any:
    # zstandard's (de)compressor objects are not safe to share between threads.
    compressor = getattr(_zstd_local, "compressor", None)
    if compressor is None:
        compressor = _zstd_local.compressor = _zstd().ZstdCompressor(level=_ZSTD_LEVEL)
    return compressor


def _decompressor() -> Any:
    decompressor = getattr(_zstd_local, "decompressor", None)
    if decompressor is None:
        decompressor = _zstd_local.decompressor = _zstd().ZstdDecompressor()
    return decompressor


def _inflate(payload: bytes) -> bytes:
    zstandard = _zstd()
    try:
        size = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as e:
        raise UnsealError(f"compressed payload is not a zstd frame: {e}") from e
    if size < 0 or size > MAX_INFLATED_BYTES:
        raise UnsealError(f"compressed payload declares {size} bytes, not between 0 and {MAX_INFLATED_BYTES}")
    try:
        inflated: bytes = _decompressor().decompress(payload, max_output_size=size)
    except zstandard.ZstdError as e:
        raise UnsealError(f"compressed payload does not decompress: {e}") from e
    return inflated


def _prefixed(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    return struct.pack(">I", len(raw)) + raw


def _codecs() -> tuple[Callable[[str], bytes], Callable[[bytes], bytes]]:
    """Base64 decoder and encoder: pybase64's (SIMD, installed with the extras) if present, about
    seven times faster on a 1 KiB record than the standard library's, which is the fallback."""
    try:
        import pybase64
    except ImportError:
        if sys.version_info >= (3, 11):
            decode: Callable[[str], bytes] = partial(binascii.a2b_base64, strict_mode=True)
        else:  # pragma: no cover - Python 3.10
            decode = partial(base64.b64decode, validate=True)
        return decode, base64.b64encode
    return partial(pybase64.b64decode, validate=True), pybase64.b64encode


_b64decode, _b64encode = _codecs()


class Binding:
    """Where sealed records live: session id and key name; :meth:`aad` adds flags and hash field.

    Built once per read or write, so a list of thousands of records encodes the common part once.
    """

    __slots__ = ("_heads",)

    def __init__(self, session_id: str, key: str) -> None:
        middle = _prefixed(session_id) + _prefixed(key)
        self._heads = tuple(b"svsm1" + bytes((flags,)) + middle for flags in range(_KNOWN_FLAGS + 1))

    def aad(self, flags: int, field: str) -> bytes:
        """The associated data: flags, session id, key name and hash field, length-prefixed."""
        return self._heads[flags] + _prefixed(field)

    def head(self, flags: int) -> bytes:
        """The associated data up to the hash field."""
        return self._heads[flags]


def associated_data(flags: int, session_id: str, key: str, field: str) -> bytes:
    """What a sealed blob is bound to (see :class:`Binding`)."""
    return Binding(session_id, key).aad(flags, field)


class Cipher:
    """Records' encryption under one data key: AES-SIV for writing, and reading both formats
    (see the module docstring). Its repr shows no key material."""

    __slots__ = ("_invalid", "_legacy", "_siv")

    def __init__(self, key: bytes) -> None:
        from cryptography.exceptions import InvalidTag

        self._siv = _aessiv(key)
        self._legacy = _aesgcm(key)
        self._invalid: type[Exception] = InvalidTag

    def __repr__(self) -> str:
        return "Cipher(AES-SIV)"

    def encrypt(self, payload: bytes, aad: bytes) -> bytes:
        """The synthetic IV followed by the ciphertext (deterministic: same input, same bytes)."""
        return self._siv.encrypt(payload, [aad])

    def decrypt(self, sealed: bytes, aad: bytes, flags: int = ENCRYPTED | SIV) -> bytes:
        """Inverse of :meth:`encrypt`; with ``flags`` lacking :data:`SIV`, the earlier AES-GCM format.

        Raises:
            UnsealError: If the tag does not verify.
        """
        try:
            if flags & SIV:
                return self._siv.decrypt(sealed, [aad])
            return self._legacy.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], aad)
        except self._invalid as e:
            raise UnsealError(
                "decryption failed: the record was altered, moved from another session or position, "
                "or sealed under another data key"
            ) from e


@dataclass(repr=False)
class DataKey:
    """One session's data key: the wrapped form stored in the session hash, unwrapped on first use.

    Its repr shows the wrapped form's length and whether the key is unwrapped, never key material.
    """

    wrapped: bytes
    key: bytes | None = None
    _cipher: Cipher | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        state = "unwrapped" if self.key is not None else "wrapped"
        return f"DataKey(<{len(self.wrapped)} bytes wrapped>, {state})"

    @classmethod
    def fresh(cls, provider: KeyProvider, context: dict[str, str], *, beside: bytes | None = None) -> DataKey:
        """A new random data key, wrapped by ``provider``; ``beside``: the session's current
        wrapped key, when this one replaces it (see :func:`wrap_beside`)."""
        key = os.urandom(DATA_KEY_BYTES)
        try:
            wrapped = wrap_beside(provider, key, beside, context)
        except BaseException as e:
            # Tracebacks keep this frame and the provider's: no key material among their locals.
            del key
            drop_frame_locals(e)
            raise
        return cls(wrapped=wrapped, key=key)

    @property
    def stored(self) -> str:
        """The wrapped key as stored in the session hash field ``dek`` (base64 text)."""
        return base64.b64encode(self.wrapped).decode("ascii")

    @classmethod
    def from_stored(cls, value: bytes | str) -> DataKey:
        try:
            return cls(wrapped=base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError) as e:
            raise UnsealError(f"the stored data key is not base64: {e}") from e

    def cipher(self, provider: KeyProvider | None, context: dict[str, str]) -> Cipher:
        """The cipher of this key, unwrapping it with ``provider`` the first time.

        Raises:
            UnsealError: If there is no provider or it cannot unwrap the key.
        """
        if self._cipher is None:
            if self.key is None:
                if provider is None:
                    raise UnsealError("the record is encrypted and this repository has no key_provider")
                try:
                    key = bytes(provider.unwrap(self.wrapped, context))
                except (SessionStoreUnavailableError, AccessDeniedError):
                    raise  # a key store out of reach: retry later, the data is not bad
                except Exception as e:
                    # The provider's frames may hold what it unwrapped: a traceback keeps none of it.
                    drop_frame_locals(e)
                    raise UnsealError(f"the key provider cannot unwrap the session's data key: {e!r}") from e
                if len(key) != DATA_KEY_BYTES:
                    size = len(key)
                    del key  # a traceback's locals show no key bytes (a key file cut short)
                    raise UnsealError(
                        f"the unwrapped data key has {size} bytes, not {DATA_KEY_BYTES}: the key store's copy "
                        "is damaged (cut short or altered)"
                    )
                self.key = key
            self._cipher = Cipher(self.key)
        return self._cipher


def wrap_beside(provider: KeyProvider, data_key: bytes, current: bytes | None, context: dict[str, str]) -> bytes:
    """``data_key`` wrapped by ``provider``; when it replaces a session's ``current`` key and the
    provider groups keys by session generation (``KeyStoreProvider.wrap_beside``), in the same
    group, so deleting the session destroys both."""
    beside = getattr(provider, "wrap_beside", None)
    try:
        if current is not None and callable(beside):
            return bytes(beside(data_key, current, context))
        return bytes(provider.wrap(data_key, context))
    except BaseException as e:
        # Tracebacks keep this frame and the provider's: no key material among their locals.
        del data_key
        drop_frame_locals(e)
        raise


@dataclass(frozen=True)
class Sealer:
    """The sealing options of a repository: compression threshold and key provider."""

    compress_threshold: int | None = None
    key_provider: KeyProvider | None = None

    def __post_init__(self) -> None:
        threshold = self.compress_threshold
        if threshold is not None and (not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 0):
            raise ValueError(f"compress_threshold=<{threshold!r}> | must be None or a non-negative int")
        if self.key_provider is not None and not isinstance(self.key_provider, KeyProvider):
            raise TypeError(
                f"key_provider must have wrap(data_key, context) and unwrap(wrapped, context), "
                f"not {type(self.key_provider).__name__}"
            )
        if threshold is not None:
            _zstd()  # fail at construction, not at the first large record
        if self.key_provider is not None:
            Cipher(bytes(DATA_KEY_BYTES))

    @property
    def active(self) -> bool:
        """Whether records are sealed when written."""
        return self.compress_threshold is not None or self.key_provider is not None

    @property
    def encrypts(self) -> bool:
        return self.key_provider is not None

    def seal(self, inner: bytes, cipher: Cipher | None, binding: Binding, field: str) -> str | None:
        """The blob of ``inner`` as base64 text, or None when it should stay plain.

        Args:
            inner: The JSON of the record's sealed members.
            cipher: The session's cipher when encrypting, else None.
            binding: Session id and key name the blob is bound to.
            field: The hash field the blob is bound to.
        """
        flags = 0
        payload = inner
        if self.compress_threshold is not None and len(inner) > self.compress_threshold:
            packed: bytes = _compressor().compress(inner)
            stored = len(packed) if cipher is not None else 4 * (len(packed) // 3 + 1) + _MARKER_OVERHEAD
            if stored < len(inner):
                flags |= COMPRESSED
                payload = packed
        if cipher is not None:
            flags |= ENCRYPTED | SIV
            payload = cipher.encrypt(payload, binding.aad(flags, field))
        if not flags:
            return None
        return _b64encode(bytes((flags,)) + payload).decode("ascii")


def _unsupported(flags: int) -> bool:
    """Whether ``flags`` is no format this module reads (unknown bits, nothing set, SIV alone)."""
    return not flags or bool(flags & ~_KNOWN_FLAGS) or (flags & (SIV | ENCRYPTED)) == SIV


def open_blob(blob: Any, cipher_for: Callable[[], Cipher], binding: Binding, field: str) -> bytes:
    """The inner JSON of a sealed blob.

    Args:
        blob: The base64 text of the sealed member.
        cipher_for: Called (no arguments) for the session's cipher when the blob is encrypted.
        binding: Session id and key name the blob must be bound to.
        field: The hash field the blob must be bound to.

    Raises:
        UnsealError: If the blob is malformed, tampered with, moved, or the key is wrong or missing.
    """
    if not isinstance(blob, str):
        raise UnsealError(f"sealed member is a {type(blob).__name__}, not base64 text")
    try:
        raw = _b64decode(blob)
    except (binascii.Error, ValueError) as e:
        raise UnsealError(f"sealed member is not base64: {e}") from e
    if not raw:
        raise UnsealError("sealed member is empty")
    flags, payload = raw[0], raw[1:]
    if _unsupported(flags):
        raise UnsealError(f"unsupported sealed record format (flags {flags:#04x})")
    if flags & ENCRYPTED:
        if len(payload) < (_MIN_SIV if flags & SIV else _MIN_LEGACY):
            raise UnsealError("encrypted payload is too short")
        payload = cipher_for().decrypt(payload, binding.aad(flags, field), flags)
    if flags & COMPRESSED:
        payload = _inflate(payload)
    return payload


# -- what a sealed record must be bound to ----------------------------------------------------
# Each returns the hash field a record read from a known place was sealed for, after checking that
# its plaintext envelope names that place (else a sealed record of agent A copied under agent B
# would open, being authentic, and come back as A).


def agent_field(agent_id: Any) -> Callable[[dict[str, Any]], str]:
    """A sealed agent record stored under the hash field ``agent_id``."""
    expected = agent_id.decode() if isinstance(agent_id, bytes) else str(agent_id)

    def field_of(envelope: dict[str, Any]) -> str:
        if envelope.get("agent_id") != expected:
            raise UnsealError(f"sealed record of agent {envelope.get('agent_id')!r} stored under {expected!r}")
        return expected

    return field_of


def message_field(member: str, message_id: int) -> Callable[[dict[str, Any]], str]:
    """A sealed message record stored under ``member`` (message ``message_id``)."""

    def field_of(envelope: dict[str, Any]) -> str:
        found = envelope.get("message_id")
        if type(found) is not int or found != message_id:
            raise UnsealError(f"sealed record of message {found!r} stored under message {message_id}")
        return member

    return field_of


def fixed_field(field: str) -> Callable[[dict[str, Any]], str]:
    """A record whose envelope names nothing (orchestrator state): bound to its hash field."""
    return lambda envelope: field


def open_many(blobs: list[Any], fields: list[str], cipher_for: Callable[[], Cipher], binding: Binding) -> list[bytes]:
    """:func:`open_blob` of many records at once (a restore): the same checks and errors, with the
    common formats in one tight loop."""
    opened: list[bytes] = []
    decode, pack = _b64decode, struct.Struct(">I").pack
    cipher: Cipher | None = None
    for blob, name in zip(blobs, fields, strict=True):
        try:
            raw = decode(blob)
        except (binascii.Error, ValueError, TypeError):
            raw = b""
        flags = raw[0] if raw else 0
        if _unsupported(flags) or (flags & ENCRYPTED and len(raw) <= (_MIN_SIV if flags & SIV else _MIN_LEGACY)):
            opened.append(open_blob(blob, cipher_for, binding, name))  # raises the precise error
            continue
        payload = raw[1:]
        if flags & ENCRYPTED:
            if cipher is None:
                cipher = cipher_for()
            encoded = name.encode("utf-8", "surrogatepass")
            payload = cipher.decrypt(payload, binding.head(flags) + pack(len(encoded)) + encoded, flags)
        if flags & COMPRESSED:
            payload = _inflate(payload)
        opened.append(payload)
    return opened
