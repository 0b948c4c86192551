"""Session manager for Strands Agents on plain Valkey and Redis, standalone or cluster."""

from .aio import AsyncValkeySessionRepository
from .catalog import DamagedSession, SessionInfo, SessionPage
from .encryption import KeyProvider, LocalKeyProvider
from .exceptions import (
    AccessDeniedError,
    AgentExistsError,
    CorruptRecordError,
    DamagedSessionError,
    DecryptionError,
    ReplicationTimeoutError,
    SessionConflictError,
    SessionLockedError,
    SessionNotFoundError,
    SessionStoreUnavailableError,
    SessionTooLargeError,
    StorageReplicationTimeoutError,
    StorageUnavailableError,
    ValkeySessionError,
    ValkeyStorageError,
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
    "KeyProvider",
    "LocalKeyProvider",
    "ReplicationTimeoutError",
    "SessionConflictError",
    "SessionInfo",
    "SessionLockedError",
    "SessionNotFoundError",
    "SessionPage",
    "SessionStoreUnavailableError",
    "SessionTooLargeError",
    "SnapshotMigrationReport",
    "StorageReplicationTimeoutError",
    "StorageUnavailableError",
    "ValkeySessionError",
    "ValkeySessionManager",
    "ValkeySessionRepository",
    "ValkeyStorage",
    "ValkeyStorageError",
    "migrate_to_snapshots",
]
