"""Session manager for Strands Agents on plain Valkey and Redis, standalone or cluster."""

from ._options import RepositoryOptions
from .aio import AsyncValkeySessionRepository
from .catalog import DamagedSession, SessionInfo, SessionPage
from .encryption import KeyProvider, LocalKeyProvider
from .exceptions import (
    AccessDeniedError,
    AgentExistsError,
    CorruptRecordError,
    DamagedSessionError,
    DecryptionError,
    InvalidStorageArgumentError,
    MissingExtraError,
    ReplicationTimeoutError,
    SeedSourceError,
    SessionConflictError,
    SessionLockedError,
    SessionNotFoundError,
    SessionStoreUnavailableError,
    SessionTooLargeError,
    SnapshotMigrationError,
    SourceNotFoundError,
    SourceRecordError,
    StorageReplicationTimeoutError,
    StorageUnavailableError,
    StorageValueTooLargeError,
    ValkeySessionError,
    ValkeyStorageError,
    WriteBehindError,
)
from .migration import SnapshotMigrationReport, migrate_to_snapshots
from .repository import ValkeySessionRepository
from .session_manager import ValkeySessionManager
from .storage import ValkeyStorage

__all__ = [
    "AccessDeniedError",
    "AgentExistsError",
    "AsyncValkeySessionRepository",
    "CorruptRecordError",
    "DamagedSession",
    "DamagedSessionError",
    "DecryptionError",
    "InvalidStorageArgumentError",
    "KeyProvider",
    "LocalKeyProvider",
    "MissingExtraError",
    "ReplicationTimeoutError",
    "RepositoryOptions",
    "SeedSourceError",
    "SessionConflictError",
    "SessionInfo",
    "SessionLockedError",
    "SessionNotFoundError",
    "SessionPage",
    "SessionStoreUnavailableError",
    "SessionTooLargeError",
    "SnapshotMigrationError",
    "SnapshotMigrationReport",
    "SourceNotFoundError",
    "SourceRecordError",
    "StorageReplicationTimeoutError",
    "StorageUnavailableError",
    "StorageValueTooLargeError",
    "ValkeySessionError",
    "ValkeySessionManager",
    "ValkeySessionRepository",
    "ValkeyStorage",
    "ValkeyStorageError",
    "WriteBehindError",
    "migrate_to_snapshots",
]
