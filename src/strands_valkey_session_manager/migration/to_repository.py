"""Migrations into a :class:`~strands_valkey_session_manager.ValkeySessionRepository`, from a :class:`SessionSource`.

Migration is idempotent and resumable. A session is written with
:meth:`~strands_valkey_session_manager.ValkeySessionRepository.write_export` (records in batches of
pipelined scripts). A session that already exists in the target is **skipped** when it is complete:
every source agent is there with at least as many messages as the source has, and every orchestrator
state is there (more is fine: the conversation may have gone on in the new store). A session that is
there but short of that is a **partial** copy left by an interrupted run; it is deleted and written
again. Nothing is ever deleted from the source.

The migrated sessions take the target repository's lifetime settings (``ttl``, ``max_age``) and keep
their original ``created_at``; remaining TTLs of the source keys are not carried over.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Collection
from typing import Any, Literal

from strands.types.exceptions import SessionException

from .. import _codec
from ..exceptions import (
    AccessDeniedError,
    SessionStoreUnavailableError,
    SessionTooLargeError,
)
from ..repository import ValkeySessionRepository
from ..transfer import SessionExport
from .report import MigrationProgress, MigrationReport, Outcome
from .sources import (
    FileStoreReader,
    SeedLayoutReader,
    SessionSource,
    check_json_module,
    json_fetch,
    one_line,
    scan_seed_keys,
)


def migrate_from_source(
    source: SessionSource,
    target: ValkeySessionRepository,
    *,
    session_ids: Collection[str] | None = None,
    dry_run: bool = False,
    on_session: Callable[[MigrationProgress], None] | None = None,
) -> MigrationReport:
    """Copy every session of ``source`` (or those in ``session_ids``) into ``target``.

    Sessions are handled one at a time, in id order; a session that cannot be read is recorded in
    :attr:`MigrationReport.failures` and the others go on. Errors of the target (server down, ACL)
    stop the migration: run it again to resume.

    Args:
        source: The reader of the source layout.
        target: The repository to write to.
        session_ids: Only these sessions (ids missing from the source are ignored).
        dry_run: Read and compare only; write nothing.
        on_session: Called after each session.

    Raises:
        SessionStoreUnavailableError: If the target server is unavailable.
        AccessDeniedError: If the target's ACL refuses a command.
    """
    report = MigrationReport(dry_run=dry_run)
    found = source.session_ids(report)
    if session_ids is not None:
        wanted = set(session_ids)
        found = [s for s in found if s in wanted]
    report.sessions_found = len(found)
    for done, session_id in enumerate(found, start=1):
        error: str | None = None
        try:
            outcome = _migrate_one(source, target, session_id, report, dry_run)
        except (SessionStoreUnavailableError, AccessDeniedError):
            raise
        except (SessionException, ValueError, TypeError) as e:
            # SessionException: an unreadable source record, a record too large, a session created in
            # the target meanwhile; ValueError/TypeError: an id or value the target cannot store.
            outcome, error = "failed", one_line(e)
            report.failures[session_id] = error
        if on_session is not None:
            on_session(MigrationProgress(session_id, outcome, done, len(found), error))
    return report


def check_export_fits(target: ValkeySessionRepository, export: SessionExport) -> None:
    """Make sure every record of ``export`` fits the target's ``max_record_bytes``, before any write.

    ``write_export`` sizes records only after it has created the session, so a too-large record
    would leave an empty session behind (and, after an overwrite's delete, lose the old one).

    Raises:
        SessionTooLargeError: Naming the first record that is too large.
    """
    limit = target.max_record_bytes
    session_id = export.session.session_id
    records: list[tuple[str, bytes]] = [("session", _codec.encode_session(export.session))]
    records += [(f"agent {a.agent_id!r}", _codec.encode_agent(a)) for a in export.agents]
    for agent_id, messages in export.messages.items():
        records += [(f"message {m.message_id} of agent {agent_id!r}", _codec.encode_message(m)) for m in messages]
    records += [(f"orchestrator {k!r}", _codec.encode_state(v)) for k, v in export.multi_agents.items()]
    for what, record in records:
        if len(record) > limit:
            raise SessionTooLargeError(
                f"session_id=<{session_id}> | {what} is {len(record)} bytes, over max_record_bytes={limit}; "
                "nothing was written"
            )


def _migrate_one(
    source: SessionSource, target: ValkeySessionRepository, session_id: str, report: MigrationReport, dry_run: bool
) -> Outcome:
    export = source.read(session_id, report)
    agents = len(export.agents)
    messages = export.message_count
    multi = len(export.multi_agents)
    state = _target_state(target, export)
    if state == "complete":
        report.sessions_skipped += 1
        report.agents_skipped += agents
        report.messages_skipped += messages
        report.multi_agents_skipped += multi
        return "skipped"
    check_export_fits(target, export)
    if not dry_run:
        if state == "partial":
            target.delete_session(session_id)
        try:
            target.write_export(export)
        except SessionTooLargeError:
            # Backstop for check_export_fits: write_export creates the session before it sizes the
            # records, so leave no empty shell behind.
            with contextlib.suppress(SessionException):
                target.delete_session(session_id)
            raise
    report.sessions_migrated += 1
    report.agents_migrated += agents
    report.messages_migrated += messages
    report.multi_agents_migrated += multi
    if state == "partial":
        report.sessions_replaced += 1
        return "replaced"
    return "migrated"


def _target_state(target: ValkeySessionRepository, export: SessionExport) -> Literal["absent", "partial", "complete"]:
    """Whether the target lacks the session, holds a partial copy of it, or all of it."""
    session_id = export.session.session_id
    info = target.session_info(session_id)
    if info is None:
        return "absent"
    for agent in export.agents:
        stored = info.message_counts.get(agent.agent_id)
        if stored is None or stored < len(export.messages.get(agent.agent_id, ())):
            return "partial"
    for multi_id in export.multi_agents:
        if target.read_multi_agent(session_id, multi_id) is None:
            return "partial"
    return "complete"


def migrate_from_seed(
    source_client: Any,
    target: ValkeySessionRepository,
    *,
    session_ids: Collection[str] | None = None,
    dry_run: bool = False,
    on_session: Callable[[MigrationProgress], None] | None = None,
) -> MigrationReport:
    """Migrate sessions from the original package's layout (see the module docstring).

    Args:
        source_client: A synchronous valkey-py or redis-py client on the source server (standalone or
            cluster), whose server has the JSON module.
        target: The repository to write to (it may be on the same server).
        session_ids: Only these sessions.
        dry_run: Read and compare only; write nothing.
        on_session: Called after each session.

    Raises:
        SeedSourceError: If the source server has no JSON module.
    """
    check_json_module(source_client)
    reader = SeedLayoutReader(scan_seed_keys(source_client), json_fetch(source_client))
    return migrate_from_source(reader, target, session_ids=session_ids, dry_run=dry_run, on_session=on_session)


def migrate_from_file_store(
    directory: str | os.PathLike[str],
    target: ValkeySessionRepository,
    *,
    session_ids: Collection[str] | None = None,
    dry_run: bool = False,
    on_session: Callable[[MigrationProgress], None] | None = None,
) -> MigrationReport:
    """Migrate sessions from a ``FileSessionManager`` directory (see the module docstring).

    Args:
        directory: The ``storage_dir`` of the ``FileSessionManager``.
        target: The repository to write to.
        session_ids: Only these sessions.
        dry_run: Read and compare only; write nothing.
        on_session: Called after each session.

    Raises:
        FileNotFoundError: If ``directory`` is not a directory.
    """
    reader = FileStoreReader(directory)
    return migrate_from_source(reader, target, session_ids=session_ids, dry_run=dry_run, on_session=on_session)
