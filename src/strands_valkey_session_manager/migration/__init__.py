"""Migrations: from the original package's layout or a ``FileSessionManager`` directory into the
repository (:mod:`.to_repository`, reading :mod:`.sources`), and from message-log sessions into
``SnapshotSessionManager`` snapshots (:mod:`.to_snapshots`)."""

from ..exceptions import SeedSourceError, SnapshotMigrationError, SourceNotFoundError, SourceRecordError
from .report import MigrationProgress, MigrationReport, Outcome
from .sources import (
    FETCH_BATCH,
    SEED_PREFIX,
    FileStoreReader,
    SeedKey,
    SeedLayoutReader,
    SessionSource,
    check_json_module,
    json_fetch,
    parse_seed_key,
    scan_seed_keys,
)
from .to_repository import check_export_fits, migrate_from_file_store, migrate_from_seed, migrate_from_source
from .to_snapshots import (
    ConversationManagerFactory,
    SnapshotEntry,
    SnapshotMigrationReport,
    SnapshotOutcome,
    migrate_to_snapshots,
)

__all__ = [
    "FETCH_BATCH",
    "SEED_PREFIX",
    "ConversationManagerFactory",
    "FileStoreReader",
    "MigrationProgress",
    "MigrationReport",
    "Outcome",
    "SeedKey",
    "SeedLayoutReader",
    "SeedSourceError",
    "SessionSource",
    "SnapshotEntry",
    "SnapshotMigrationError",
    "SnapshotMigrationReport",
    "SnapshotOutcome",
    "SourceNotFoundError",
    "SourceRecordError",
    "check_export_fits",
    "check_json_module",
    "json_fetch",
    "migrate_from_file_store",
    "migrate_from_seed",
    "migrate_from_source",
    "migrate_to_snapshots",
    "parse_seed_key",
    "scan_seed_keys",
]
