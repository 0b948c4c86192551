"""Session manager for Strands Agents on plain Valkey and Redis, standalone or cluster."""

from typing import TYPE_CHECKING, Any

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
    StorageConflictError,
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
from .storage import KeyQuery, ValkeyStorage

if TYPE_CHECKING:
    from .snapshots import ValkeySnapshotSessionManager

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
    "KeyQuery",
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
    "StorageConflictError",
    "StorageReplicationTimeoutError",
    "StorageUnavailableError",
    "StorageValueTooLargeError",
    "ValkeySessionError",
    "ValkeySessionManager",
    "ValkeySessionRepository",
    "ValkeySnapshotSessionManager",
    "ValkeyStorage",
    "ValkeyStorageError",
    "WriteBehindError",
    "migrate_to_snapshots",
]


def __getattr__(name: str) -> Any:
    # Imported on first use: it subclasses the SDK's SnapshotSessionManager, which SDKs before the
    # unified storage API lack (the package still imports there).
    if name == "ValkeySnapshotSessionManager":
        from .snapshots import ValkeySnapshotSessionManager

        return ValkeySnapshotSessionManager
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
