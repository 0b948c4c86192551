"""Exceptions raised by this package.

All of them derive from the SDK's ``SessionException``, so code written for the SDK's own stores
keeps working; the subclasses let a caller tell "retry later" from "the data is bad".
Invalid arguments (wrong types, non-integer message ids) raise ``ValueError``, as the SDK's stores do.
"""

from __future__ import annotations

from strands.types.exceptions import SessionException


class ValkeySessionError(SessionException):
    """Root of every error this package raises."""


class SessionStoreUnavailableError(ValkeySessionError):
    """The server could not be reached, timed out, or refused the command (connection, OOM, READONLY).

    Nothing is known to have been written; the operation may be retried.
    """


class SessionConflictError(ValkeySessionError):
    """Another writer changed the agent since this process read it; nothing was written.

    Raised instead of overwriting (``check_versions=True``, the session manager's default).
    Restore the agent with a new session manager and retry.
    """


class SessionLockedError(ValkeySessionError):
    """Another owner holds the agent's lease (``lock=True``); nothing was written.

    Raised at once when a second manager tries to take an agent another one owns, and for writes
    fenced out because their lease expired and was taken over.
    """


class AccessDeniedError(ValkeySessionError):
    """The server's ACL does not allow a command or key this package needs (NOPERM)."""


class CorruptRecordError(ValkeySessionError):
    """A value under one of our keys is not a record this package wrote.

    The message names the session and key; other records of the session remain readable.
    """


class SessionTooLargeError(ValkeySessionError):
    """A record exceeds the configured size limit; nothing was written."""


class DecryptionError(CorruptRecordError):
    """A sealed record cannot be opened: wrong or missing key, tampered bytes, or a record moved
    from another session or position.

    The message names the session and key. Raised instead of returning anything decrypted wrongly;
    it is also what every read of a crypto-shredded session's copied records raises.
    """


class SessionNotFoundError(ValkeySessionError):
    """The session this write belongs to no longer exists; nothing was written.

    It expired (``ttl``/``max_age``), was deleted or pruned, or the server lost it (a restart
    without persistence, a failover that dropped it). The conversation cannot continue in place:
    create the session again (a new session manager) and, if the application kept it, replay the
    history into it.

    Also what ``delete_session``, ``export_session`` and ``fork_session`` (its source) raise for a
    session that does not exist (a ``SessionException``, as the SDK's stores raise).
    """


class DamagedSessionError(CorruptRecordError):
    """Some keys of a session are gone while others remain (eviction under memory pressure, a
    manual ``DEL``): its counters and versions disagree with the surviving keys.

    The message names the session and what is missing. Nothing is written into such a session;
    inspect it with ``session_info``/``svsm show`` and delete it (or repair it from an export).
    """


class ReplicationTimeoutError(SessionStoreUnavailableError):
    """A write was applied by the primary but fewer replicas than ``wait_for_replicas``
    acknowledged it within ``wait_timeout``.

    The write is **not acknowledged**: a failover now may lose it. It is not retried
    automatically: repeating it is safe for the data, but a repeat that finds its own earlier
    write writes nothing, so its ``WAIT`` would prove nothing about the first attempt.
    """


class WriteBehindError(ValkeySessionError):
    """A write queued by write-behind (``write_behind=True``) failed; the cause is chained.

    Raised at the next write or flush; the writes queued behind it were not applied (the message
    says how many).
    """


class MissingExtraError(ValkeySessionError, ImportError):
    """The optional package a sealed record or an option needs is not installed (also an ``ImportError``)."""


class AgentExistsError(SessionConflictError):
    """``create_agent`` found the agent already created (by another process, after this one
    read that it was missing); nothing was written, the stored agent and its messages are kept.
    ``create_multi_agent`` raises it too for a Graph or Swarm whose state exists.

    The session manager adopts such an agent or orchestrator: it restores it instead of starting
    it afresh.
    """


try:
    from strands.types.exceptions import StorageError as StorageError  # noqa: PLC0414 (re-exported)
except ImportError:  # strands-agents before the unified storage API (1.0 has none): keep the package importable

    class StorageError(Exception):  # type: ignore[no-redef]
        """Stand-in for ``strands.types.exceptions.StorageError`` on SDKs that predate it."""


class ValkeyStorageError(StorageError, ValkeySessionError):
    """Root of the errors ``ValkeyStorage`` raises: a ``StorageError``, as the SDK's storage protocol
    promises, and a :class:`ValkeySessionError`, as every error of this package."""


class StorageUnavailableError(ValkeyStorageError, SessionStoreUnavailableError):
    """The server could not be reached, timed out, or refused for now (READONLY, OOM, LOADING, cluster down).

    A write that raises this left no index entry without its value; it may be retried (the storage
    already retried it ``retries`` times).
    """


class StorageReplicationTimeoutError(StorageUnavailableError, ReplicationTimeoutError):
    """A write or delete was applied by the primary but fewer replicas than ``wait_for_replicas``
    acknowledged it within ``wait_timeout`` (or, with ``wait_aof``, its AOF was not fsynced).

    The write is **not acknowledged**: a failover now may lose it. Both a ``StorageError`` and a
    :class:`ReplicationTimeoutError`; not retried.
    """


class StorageValueTooLargeError(ValkeyStorageError):
    """A value exceeds ``max_value_bytes``; nothing was sent to the server."""


class InvalidStorageArgumentError(ValkeyStorageError, TypeError):
    """A key that is not a ``str`` or data that is not bytes-like; also a ``TypeError``."""


class StorageConflictError(ValkeyStorageError, SessionConflictError):
    """A conditional write found another value than the one it expected; nothing was written.

    Raised by ``ValkeyStorage.compare_and_write`` and by a ``ValkeySnapshotSessionManager`` with
    ``conditional_latest=True`` when another process saved the same ``snapshot_latest`` since this
    one read or wrote it. Restore (``restore_snapshot()``) to take the other save, then save again.
    Both a ``StorageError`` and a :class:`SessionConflictError`.
    """


class SeedSourceError(ValkeySessionError):
    """The source server cannot serve the old layout (no JSON module)."""


class SourceRecordError(ValkeySessionError):
    """A record in the source is missing, unreadable or not in the SDK's shape; names the key or path."""


class SnapshotMigrationError(ValkeySessionError):
    """The session cannot be converted (unknown conversation manager, unsupported SDK, ...)."""


class SourceNotFoundError(SnapshotMigrationError, LookupError):
    """The session, or an agent asked for, is not in the source."""
