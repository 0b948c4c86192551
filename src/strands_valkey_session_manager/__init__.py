"""Session manager for Strands Agents on plain Valkey and Redis, standalone or cluster."""

from .aio import AsyncValkeySessionRepository
from .catalog import SessionInfo, SessionPage
from .encryption import KeyProvider, LocalKeyProvider
from .exceptions import (
    AccessDeniedError,
    CorruptRecordError,
    DecryptionError,
    SessionConflictError,
    SessionLockedError,
    SessionStoreUnavailableError,
    SessionTooLargeError,
    ValkeySessionError,
)
from .repository import ValkeySessionRepository
from .session_manager import ValkeySessionManager
from .snapshot_migration import SnapshotMigrationReport, migrate_to_snapshots
from .storage import ValkeyStorage

__all__ = [
    "AccessDeniedError",
    "AsyncValkeySessionRepository",
    "CorruptRecordError",
    "DecryptionError",
    "KeyProvider",
    "LocalKeyProvider",
    "SessionConflictError",
    "SessionInfo",
    "SessionLockedError",
    "SessionPage",
    "SessionStoreUnavailableError",
    "SessionTooLargeError",
    "SnapshotMigrationReport",
    "ValkeySessionError",
    "ValkeySessionManager",
    "ValkeySessionRepository",
    "ValkeyStorage",
    "migrate_to_snapshots",
]
