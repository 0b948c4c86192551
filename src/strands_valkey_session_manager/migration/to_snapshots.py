"""Convert a message-log session into a ``SnapshotSessionManager`` session in a ``ValkeyStorage``.

The message-log managers (``ValkeySessionManager``, the SDK's ``FileSessionManager``) keep every
message as its own record next to an agent record (state, conversation-manager state, interrupt and
model state) and orchestrator records. The SDK's ``SnapshotSessionManager`` keeps one JSON blob per
agent instead, ``session/<session id>/scopes/agent/<agent id>/snapshots/snapshot_latest.json``, and
one per orchestrator, ``session/<session id>/scopes/multiAgent/<id>/snapshots/snapshot_latest.json``.

:func:`migrate_to_snapshots` does not reimplement either format. For each agent it

1. restores a real ``strands.Agent`` (offline model, no tools) through the SDK's own
   ``RepositorySessionManager`` over a read-only view of the source records, so ``messages``,
   ``state``, conversation-manager state, interrupt state and model state are exactly what a
   message-log restore yields (trimmed history skipped, a summary prepended, broken tool pairs
   repaired);
2. asks a ``SnapshotSessionManager`` for the target session to save that agent
   (``save_snapshot(agent, is_latest=True)``), with its writes captured instead of stored, so the
   key and the bytes are the SDK's own;
3. drops ``system_prompt`` from that snapshot: the message log never stored one, and an agent
   restored from a snapshot without it keeps the system prompt it was built with, as it does with
   the message-log manager (the next save by ``SnapshotSessionManager`` records it);
4. compares with what the storage already holds under that key and writes only if it differs.

Orchestrator (Graph/Swarm) state goes the same way through the manager's orchestrator save, with a
stand-in holding the stored ``serialize_state()`` output: the snapshot format has a place for it.

**Idempotent**: a snapshot already in the storage whose content equals the one the run would write
(creation time aside) is reported ``unchanged`` and not written; a second run writes nothing. A
snapshot that differs (the source went on, or the agent went on in the snapshot store) is a
``conflict`` and left alone unless ``overwrite=True``. **Dry run** reads the source and the storage
and writes nothing. Nothing is ever written to or deleted from the source.

Not carried, because the snapshot format has no place for it (listed in
:attr:`SnapshotMigrationReport.not_carried`): messages the conversation manager had already removed
(a message-log restore skips them too), the original text of redacted messages, the session record's
timestamps, and this package's catalog owner, tags and lifetime.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import copy
import dataclasses
import json
import os
import warnings
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from strands.session.session_repository import SessionRepository
from strands.types.session import Session, SessionAgent, SessionMessage

from ..exceptions import SnapshotMigrationError, SourceNotFoundError
from ..repository import ValkeySessionRepository
from ..transfer import SessionExport
from .report import MigrationReport
from .sources import FileStoreReader

if TYPE_CHECKING:
    from strands.agent import Agent
    from strands.agent.conversation_manager import ConversationManager
    from strands.multiagent.base import MultiAgentBase
    from strands.session import SnapshotSessionManager

    from ..storage import ValkeyStorage

__all__ = [
    "ConversationManagerFactory",
    "SnapshotEntry",
    "SnapshotMigrationError",
    "SnapshotMigrationReport",
    "SnapshotOutcome",
    "SourceNotFoundError",
    "migrate_to_snapshots",
]

_T = TypeVar("_T")

#: ``migrated``: the storage had no snapshot under the key; it was written (would be, in a dry run).
#: ``unchanged``: the storage already holds the same snapshot; nothing written.
#: ``replaced``: the storage held a different snapshot; overwritten (``overwrite=True``).
#: ``conflict``: the storage holds a different snapshot; left alone (``overwrite=False``).
SnapshotOutcome = Literal["migrated", "unchanged", "replaced", "conflict"]

#: Called with an agent id and the stored conversation-manager state; returns the conversation
#: manager that agent runs with (a fresh instance of the class named by ``state["__name__"]``).
ConversationManagerFactory = Callable[[str, dict[str, Any]], "ConversationManager"]

_WRITES: frozenset[str] = frozenset({"migrated", "replaced"})
_SNAPSHOT_FILE = "snapshot_latest.json"


@dataclass(frozen=True)
class SnapshotEntry:
    """One snapshot of the migration: an agent's or an orchestrator's ``snapshot_latest``."""

    #: ``agent`` or ``multiAgent`` (the snapshot's scope).
    kind: Literal["agent", "multiAgent"]
    #: The agent or orchestrator id.
    id: str
    #: The key in the storage passed to :func:`migrate_to_snapshots`.
    key: str
    outcome: SnapshotOutcome
    #: Size of the snapshot this run built.
    bytes: int
    #: Messages in the snapshot (what the restored agent holds); 0 for orchestrators.
    messages: int = 0
    #: Message records in the source for this agent.
    source_messages: int = 0
    #: Of those, the ones the conversation manager had removed: not in the snapshot (nor in a
    #: message-log restore).
    trimmed_messages: int = 0
    #: What differs, for ``conflict`` and ``replaced``.
    reason: str | None = None

    @property
    def written(self) -> bool:
        """Whether this run wrote the snapshot (or would have, in a dry run)."""
        return self.outcome in _WRITES


@dataclass
class SnapshotMigrationReport:
    """What :func:`migrate_to_snapshots` did, or would do in a dry run."""

    #: ``valkey:<key prefix>`` or ``file:<directory>``.
    source: str
    session_id: str
    target_session_id: str
    dry_run: bool
    entries: list[SnapshotEntry] = field(default_factory=list)
    #: Things the snapshot format has no place for, one line each.
    not_carried: list[str] = field(default_factory=list)
    #: Source records left out (e.g. an agent record that is not a ``strands.Agent``), one line each.
    skipped: list[str] = field(default_factory=list)

    @property
    def agents(self) -> builtins.list[SnapshotEntry]:
        return [e for e in self.entries if e.kind == "agent"]

    @property
    def orchestrators(self) -> builtins.list[SnapshotEntry]:
        return [e for e in self.entries if e.kind == "multiAgent"]

    @property
    def written(self) -> builtins.list[str]:
        """Keys written (in a dry run: keys that would be written)."""
        return [e.key for e in self.entries if e.written]

    @property
    def conflicts(self) -> builtins.list[SnapshotEntry]:
        """Snapshots left alone because the storage holds a different one."""
        return [e for e in self.entries if e.outcome == "conflict"]

    @property
    def already_migrated(self) -> bool:
        """True when every snapshot was already in the storage, exactly as this run would write it."""
        return all(e.outcome == "unchanged" for e in self.entries)

    def summary(self) -> str:
        """A few lines for a terminal."""
        verb = "would write" if self.dry_run else "wrote"
        lines = [
            f"{self.source} session {self.session_id!r} -> snapshots of session {self.target_session_id!r}: "
            f"{verb} {len(self.written)}, unchanged {sum(e.outcome == 'unchanged' for e in self.entries)}, "
            f"conflicts {len(self.conflicts)}"
        ]
        for e in self.entries:
            detail = f"{e.messages} messages" if e.kind == "agent" else "state"
            if e.trimmed_messages:
                detail += f" ({e.trimmed_messages} trimmed earlier, not carried)"
            reason = f": {e.reason}" if e.reason else ""
            lines.append(f"  {e.outcome:<9} {e.kind} {e.id!r}, {detail}, {e.bytes} bytes{reason}")
        lines += [f"  skipped: {s}" for s in self.skipped]
        lines += [f"  not carried: {s}" for s in self.not_carried]
        return "\n".join(lines)


def migrate_to_snapshots(
    source: ValkeySessionRepository | str | os.PathLike[str],
    storage: ValkeyStorage,
    session_id: str,
    *,
    agent_ids: Collection[str] | None = None,
    target_session_id: str | None = None,
    dry_run: bool = False,
    overwrite: bool = False,
    conversation_manager: ConversationManagerFactory | None = None,
) -> SnapshotMigrationReport:
    """Write a message-log session as ``SnapshotSessionManager`` snapshots into ``storage``.

    An ``Agent`` then restored with ``SnapshotSessionManager(target_session_id, storage=storage)``
    has the same ``messages``, ``state``, conversation-manager state, interrupt state and model state
    as one restored from the source with the message-log manager (see the module docstring).

    Args:
        source: A :class:`ValkeySessionRepository`, or the ``storage_dir`` of the SDK's
            ``FileSessionManager``.
        storage: Where the snapshots go (the storage the ``SnapshotSessionManager`` will be given;
            a ``namespace()`` view works as it does for the manager). Any SDK ``Storage`` works.
        session_id: The source session.
        agent_ids: Only these agents (default: every agent of the session). Orchestrators are
            always carried.
        target_session_id: The ``SnapshotSessionManager`` session id (default: ``session_id``).
        dry_run: Read the source and the storage, report, write nothing.
        overwrite: Replace a snapshot in the storage that differs from the source (else: ``conflict``).
        conversation_manager: Makes the conversation manager of an agent (see
            :data:`ConversationManagerFactory`). Default: the SDK's class named in the stored state
            (``SlidingWindowConversationManager``, ``SummarizingConversationManager``,
            ``NullConversationManager``), with default arguments.

    Returns:
        What was written or found, per snapshot.

    Raises:
        SourceNotFoundError: If the session, or an agent of ``agent_ids``, is not in the source.
        FileNotFoundError: If ``source`` is a path that is not a directory.
        ValueError: If the target session id or an agent id cannot be a ``SnapshotSessionManager``
            id (``/``, ``\\``, ``.``, ``..``, blank); nothing is written. (An orchestrator whose id
            cannot be is reported in :attr:`SnapshotMigrationReport.skipped`.)
        SnapshotMigrationError: If an agent cannot be restored (e.g. a custom conversation manager
            without ``conversation_manager``); every snapshot is built before the first write, so
            nothing is written then.
        strands.types.exceptions.StorageError: If the storage fails.
    """
    manager_type = _snapshot_manager_type()
    target_id = session_id if target_session_id is None else target_session_id
    _check_id(target_id, "target session id")
    if agent_ids is not None and isinstance(agent_ids, str):
        raise TypeError("agent_ids must be a collection of ids, not a str")
    export, report = _read_source(source, session_id, target_id, dry_run)
    _select_agents(export, agent_ids, report)
    for agent in export.agents:
        _check_id(agent.agent_id, "agent id")
    for multi_id in builtins.list(export.multi_agents):
        if not _usable_id(multi_id):
            del export.multi_agents[multi_id]
            report.skipped.append(f"orchestrator {multi_id!r}: cannot be a SnapshotSessionManager id")
    _note_not_carried(export, report)

    job = _Job(manager_type, storage, target_id, conversation_manager, dry_run, overwrite)
    repository = _ReadOnlyExport(export)
    # Every snapshot is built before the first read or write of the target, so an agent that cannot
    # be restored stops the migration with nothing written.
    prepared = [job.agent(repository, record) for record in export.agents]
    prepared += [job.orchestrator(multi_id, state) for multi_id, state in export.multi_agents.items()]
    report.entries = _run(job.apply_all, prepared)
    return report


@dataclass(frozen=True)
class _Prepared:
    """A snapshot built from the source, not yet compared with the target."""

    entry: SnapshotEntry
    data: bytes
    known_tracking_ids: frozenset[str]


@dataclass(frozen=True)
class _Job:
    """One migration's target and options."""

    manager_type: type[SnapshotSessionManager]
    storage: Any
    target_id: str
    factory: ConversationManagerFactory | None
    dry_run: bool
    overwrite: bool

    def agent(self, repository: _ReadOnlyExport, record: SessionAgent) -> _Prepared:
        """Restore the agent through the message-log manager and capture its snapshot (no I/O to the target)."""
        messages = repository.source_messages(record.agent_id)
        agent = _restore_agent(repository, record, self.factory)
        capture = _CapturingStorage(self.storage)
        manager = self.manager_type(self.target_id, storage=capture)
        key, captured = _run(_capture_agent, manager, capture, agent)
        data = _without_system_prompt(captured)
        entry = SnapshotEntry(
            kind="agent",
            id=record.agent_id,
            key=key,
            outcome="migrated",
            bytes=len(data),
            messages=len(agent.messages),
            source_messages=len(messages),
            trimmed_messages=min(_removed_count(record), len(messages)),
        )
        return _Prepared(entry, data, _known_tracking_ids(record, messages))

    def orchestrator(self, orchestrator_id: str, state: dict[str, Any]) -> _Prepared:
        """Capture an orchestrator's snapshot from its stored state (no I/O to the target)."""
        capture = _CapturingStorage(self.storage)
        manager = self.manager_type(self.target_id, storage=capture)
        key, data = _run(_capture_orchestrator, manager, capture, orchestrator_id, state)
        entry = SnapshotEntry(kind="multiAgent", id=orchestrator_id, key=key, outcome="migrated", bytes=len(data))
        return _Prepared(entry, data, frozenset())

    async def apply_all(self, prepared: list[_Prepared]) -> list[SnapshotEntry]:
        entries = []
        for item in prepared:
            outcome, reason = await self.apply(item.entry.key, item.data, item.known_tracking_ids)
            entries.append(dataclasses.replace(item.entry, outcome=outcome, reason=reason))
        return entries

    async def apply(self, key: str, data: bytes, known: frozenset[str]) -> tuple[SnapshotOutcome, str | None]:
        """Compare with what the storage holds under ``key``; write unless equal, conflicting or a dry run."""
        existing = await self.storage.read(key)
        outcome: SnapshotOutcome
        reason: str | None = None
        if existing is None:
            outcome = "migrated"
        else:
            wanted = _comparable(data, known)
            try:
                stored = _comparable(existing, known)
            except (ValueError, UnicodeDecodeError):
                stored = None
            if stored == wanted:
                return "unchanged", None
            reason = _difference(stored, wanted)
            outcome = "replaced" if self.overwrite else "conflict"
        if outcome in _WRITES and not self.dry_run:
            await self.storage.write(key, data)
        return outcome, reason


# -- the source ---------------------------------------------------------------------------------


def _read_source(
    source: ValkeySessionRepository | str | os.PathLike[str], session_id: str, target_id: str, dry_run: bool
) -> tuple[SessionExport, SnapshotMigrationReport]:
    if isinstance(source, ValkeySessionRepository):
        report = SnapshotMigrationReport(f"valkey:{source.key_prefix}", session_id, target_id, dry_run)
        if source.read_session(session_id) is None:
            raise SourceNotFoundError(
                f"session_id=<{session_id}> | no such session in the repository (key prefix {source.key_prefix!r})"
            )
        return source.export_records(session_id), report
    if isinstance(source, (str, os.PathLike)):
        directory = Path(source)
        report = SnapshotMigrationReport(f"file:{directory}", session_id, target_id, dry_run)
        reader = FileStoreReader(directory)
        if "/" in session_id or os.sep in session_id or session_id in ("", ".", ".."):
            raise SourceNotFoundError(f"session_id=<{session_id}> | cannot be a FileSessionManager session id")
        session_file = directory / f"session_{session_id}" / "session.json"
        if not session_file.is_file():
            raise SourceNotFoundError(f"session_id=<{session_id}> | no such session in {directory} ({session_file})")
        notes = MigrationReport(dry_run=dry_run)
        export = reader.read(session_id, notes)
        report.skipped += [f"not part of the FileSessionManager layout: {name}" for name in notes.unrecognised_examples]
        if notes.unrecognised > len(notes.unrecognised_examples):
            report.skipped.append(f"... and {notes.unrecognised - len(notes.unrecognised_examples)} more such paths")
        return export, report
    raise TypeError(
        f"source must be a ValkeySessionRepository or a FileSessionManager directory, not {type(source).__name__}"
    )


def _select_agents(export: SessionExport, agent_ids: Collection[str] | None, report: SnapshotMigrationReport) -> None:
    if agent_ids is not None:
        present = {a.agent_id for a in export.agents}
        missing = sorted(set(agent_ids) - present)
        if missing:
            raise SourceNotFoundError(
                f"session_id=<{export.session.session_id}> | no agent {', '.join(map(repr, missing))} in the source "
                f"(agents: {', '.join(map(repr, sorted(present))) or 'none'})"
            )
        export.agents = [a for a in export.agents if a.agent_id in agent_ids]
    kept = []
    for agent in export.agents:
        if "__name__" not in agent.conversation_manager_state:
            # SessionAgent.from_agent writes no conversation-manager state for anything but a
            # strands.Agent (e.g. a BidiAgent): the message-log manager cannot restore it into one.
            report.skipped.append(f"agent {agent.agent_id!r}: not a strands.Agent record (no conversation manager)")
            continue
        kept.append(agent)
    export.agents = kept


def _note_not_carried(export: SessionExport, report: SnapshotMigrationReport) -> None:
    report.not_carried.append(
        f"session record timestamps (created {export.session.created_at}, updated {export.session.updated_at})"
    )
    if export.user_id is not None or export.tags:
        report.not_carried.append(f"catalog owner {export.user_id!r} and tags {list(export.tags)!r}")
    for agent in export.agents:
        messages = export.messages.get(agent.agent_id, [])
        redacted = sum(m.redact_message is not None for m in messages)
        if redacted:
            report.not_carried.append(
                f"agent {agent.agent_id!r}: original text of {redacted} redacted message(s) (the redaction is carried)"
            )
        trimmed = min(_removed_count(agent), len(messages))
        if trimmed:
            report.not_carried.append(
                f"agent {agent.agent_id!r}: {trimmed} message(s) the conversation manager had removed "
                "(a message-log restore skips them too)"
            )


def _removed_count(agent: SessionAgent) -> int:
    count = agent.conversation_manager_state.get("removed_message_count", 0)
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


class _ReadOnlyExport(SessionRepository):
    """The SDK's ``SessionRepository`` over one read session; every write raises."""

    def __init__(self, export: SessionExport) -> None:
        self._export = export
        self._agents = {a.agent_id: a for a in export.agents}
        self.session_id = export.session.session_id

    def source_messages(self, agent_id: str) -> list[SessionMessage]:
        return self._export.messages.get(agent_id, [])

    def _mine(self, session_id: str) -> bool:
        return session_id == self._export.session.session_id

    def read_session(self, session_id: str, **kwargs: Any) -> Session | None:
        return copy.deepcopy(self._export.session) if self._mine(session_id) else None

    def read_agent(self, session_id: str, agent_id: str, **kwargs: Any) -> SessionAgent | None:
        agent = self._agents.get(agent_id) if self._mine(session_id) else None
        return copy.deepcopy(agent)

    def read_message(self, session_id: str, agent_id: str, message_id: int, **kwargs: Any) -> SessionMessage | None:
        for message in self._messages(session_id, agent_id):
            if message.message_id == message_id:
                return copy.deepcopy(message)
        return None

    def list_messages(
        self, session_id: str, agent_id: str, limit: int | None = None, offset: int = 0, **kwargs: Any
    ) -> list[SessionMessage]:
        messages = sorted(self._messages(session_id, agent_id), key=lambda m: m.message_id)
        end = None if limit is None else offset + limit
        return copy.deepcopy(messages[offset:end])

    def read_multi_agent(self, session_id: str, multi_agent_id: str, **kwargs: Any) -> dict[str, Any] | None:
        state = self._export.multi_agents.get(multi_agent_id) if self._mine(session_id) else None
        return copy.deepcopy(state)

    def _messages(self, session_id: str, agent_id: str) -> list[SessionMessage]:
        return self._export.messages.get(agent_id, []) if self._mine(session_id) else []

    def _refuse(self, *_: Any, **__: Any) -> Any:
        raise SnapshotMigrationError("the migration source is read-only; restoring an agent tried to write to it")

    create_session = _refuse
    create_agent = _refuse
    update_agent = _refuse
    create_message = _refuse
    update_message = _refuse
    create_multi_agent = _refuse
    update_multi_agent = _refuse


# -- restoring through the message-log manager ---------------------------------------------------


def _restore_agent(
    repository: _ReadOnlyExport, record: SessionAgent, factory: ConversationManagerFactory | None
) -> Agent:
    """A real ``Agent`` restored by the SDK's ``RepositorySessionManager`` from the read-only source."""
    from strands.agent import Agent
    from strands.session.repository_session_manager import RepositorySessionManager

    from ..scripted_model import ScriptedModel

    state = copy.deepcopy(record.conversation_manager_state)
    manager_of_agent = factory(record.agent_id, state) if factory is not None else _default_manager(record)
    session_manager = RepositorySessionManager(session_id=repository.session_id, session_repository=repository)
    with warnings.catch_warnings():
        # The SDK warns that a conversation manager has no context_window_limit: irrelevant offline.
        warnings.filterwarnings("ignore", message=".*context_window_limit.*")
        try:
            return Agent(
                model=ScriptedModel(),
                agent_id=record.agent_id,
                session_manager=session_manager,
                conversation_manager=manager_of_agent,
                callback_handler=None,
            )
        except SnapshotMigrationError:
            raise
        except (ValueError, TypeError, KeyError) as error:
            raise SnapshotMigrationError(
                f"agent_id=<{record.agent_id}> | the message-log manager cannot restore this agent: {error}"
            ) from error


def _default_manager(record: SessionAgent) -> ConversationManager:
    from strands.agent import conversation_manager as managers

    name = record.conversation_manager_state.get("__name__")
    known: dict[str, Callable[[], ConversationManager]] = {
        "SlidingWindowConversationManager": managers.SlidingWindowConversationManager,
        "SummarizingConversationManager": managers.SummarizingConversationManager,
        "NullConversationManager": managers.NullConversationManager,
    }
    if name not in known:
        raise SnapshotMigrationError(
            f"agent_id=<{record.agent_id}> | conversation manager {name!r} is not one of the SDK's; pass "
            "conversation_manager=<factory returning the manager the agent runs with>"
        )
    return known[name]()


# -- capturing what SnapshotSessionManager writes -------------------------------------------------


class _CapturingStorage:
    """A ``Storage`` that keeps writes in memory and reads through to the target.

    Given to a ``SnapshotSessionManager`` so its save path (key layout, namespace, serialisation)
    runs unchanged, with the bytes handed back instead of stored.
    """

    def __init__(self, target: Any) -> None:
        self._target = target
        self.writes: list[tuple[str, bytes]] = []
        marker = getattr(target, "_namespaced", None)
        if marker is not None:  # a namespace() view: the manager uses it as given, so must we
            self._namespaced = marker

    async def write(self, key: str, data: bytes) -> None:
        self.writes.append((key, bytes(data)))

    async def read(self, key: str) -> bytes | None:
        result: bytes | None = await self._target.read(key)
        return result

    async def delete(self, key: str) -> None:
        raise SnapshotMigrationError(f"unexpected delete of {key!r} while capturing a snapshot")

    async def list(self, query: str = "") -> builtins.list[str]:
        result: builtins.list[str] = await self._target.list(query)
        return result

    async def search(self, query: str) -> Any:
        return await self._target.search(query)

    def only_write(self, what: str) -> tuple[str, bytes]:
        if len(self.writes) != 1:
            raise SnapshotMigrationError(f"expected SnapshotSessionManager to write one snapshot of {what}")
        return self.writes[0]


async def _capture_agent(
    manager: SnapshotSessionManager, capture: _CapturingStorage, agent: Agent
) -> tuple[str, bytes]:
    await manager.save_snapshot(agent, is_latest=True)
    return capture.only_write(f"agent {agent.agent_id!r}")


class _OrchestratorStandIn:
    """What ``SnapshotSessionManager`` reads of a Graph or Swarm when saving it: ``id`` and its state."""

    def __init__(self, orchestrator_id: str, state: dict[str, Any]) -> None:
        self.id = orchestrator_id
        self._state = state

    def serialize_state(self) -> dict[str, Any]:
        return copy.deepcopy(self._state)


async def _capture_orchestrator(
    manager: SnapshotSessionManager, capture: _CapturingStorage, orchestrator_id: str, state: dict[str, Any]
) -> tuple[str, bytes]:
    save = getattr(manager, "_save_multi_agent_latest", None)
    if save is None:
        raise SnapshotMigrationError(
            "this strands-agents version's SnapshotSessionManager has no orchestrator save; "
            "migrate agents only (the orchestrator state stays in the source)"
        )
    stand_in: MultiAgentBase = _OrchestratorStandIn(orchestrator_id, state)  # type: ignore[assignment]
    await save(stand_in)
    return capture.only_write(f"orchestrator {orchestrator_id!r}")


def _snapshot_manager_type() -> type[SnapshotSessionManager]:
    try:
        from strands.session import SnapshotSessionManager
    except ImportError as error:
        raise SnapshotMigrationError(
            "strands-agents has no SnapshotSessionManager in this version; upgrade it to migrate to snapshots"
        ) from error
    return SnapshotSessionManager


def _without_system_prompt(data: bytes) -> bytes:
    """The snapshot without ``system_prompt``, serialised as the SDK does (``ensure_ascii=False``).

    The message log never held a system prompt: the temporary agent had none, and a snapshot
    holding ``None`` would wipe the prompt of the agent that later restores it.
    """
    document = json.loads(data)
    if document.get("data", {}).pop("system_prompt", None) is not None:
        raise SnapshotMigrationError("the captured snapshot holds a system prompt; expected none")
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


# -- comparing and writing ---------------------------------------------------------------------------


def _known_tracking_ids(record: SessionAgent, messages: list[SessionMessage]) -> frozenset[str]:
    """Tracking ids that come from the source, as opposed to ones a restore made up.

    A message-log restore repairs broken tool-use pairs by inserting messages with fresh random
    tracking ids; comparing those would make every run differ from the last.
    """
    ids: set[str] = set()
    for message in messages:
        for shown in (message.message, message.redact_message):
            if isinstance(shown, dict) and isinstance(shown.get("tracking_id"), str):
                ids.add(shown["tracking_id"])
    summary = record.conversation_manager_state.get("summary_message")
    if isinstance(summary, dict) and isinstance(summary.get("tracking_id"), str):
        ids.add(summary["tracking_id"])
    return frozenset(ids)


def _comparable(raw: bytes, known: frozenset[str]) -> Any:
    """A snapshot's content for comparison: no creation time, no made-up tracking ids."""
    document = json.loads(raw)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    document.pop("created_at", None)
    data = document.get("data")
    if isinstance(data, dict) and isinstance(data.get("messages"), list):
        for message in data["messages"]:
            if isinstance(message, dict) and message.get("tracking_id") not in known:
                message.pop("tracking_id", None)
    return document


def _difference(existing: Any, wanted: Any) -> str:
    if not isinstance(existing, dict):
        return "the stored value is not a snapshot"
    if existing.get("scope") != wanted.get("scope") or existing.get("schema_version") != wanted.get("schema_version"):
        return f"stored scope/schema {existing.get('scope')!r}/{existing.get('schema_version')!r}"
    old, new = existing.get("data"), wanted.get("data") or {}
    if not isinstance(old, dict):
        return "the stored snapshot has no data object"
    fields = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if "messages" in fields and isinstance(old.get("messages"), list):
        fields[fields.index("messages")] = f"messages ({len(old['messages'])} stored, {len(new['messages'])} in source)"
    if existing.get("app_data") != wanted.get("app_data"):
        fields.append("app_data")
    return "stored snapshot differs in " + ", ".join(fields)


# -- helpers -------------------------------------------------------------------------------------------


def _usable_id(value: str) -> bool:
    """Whether ``value`` can be a ``SnapshotSessionManager`` session, agent or orchestrator id in a storage key."""
    return bool(value.strip()) and value not in (".", "..") and "/" not in value and "\\" not in value


def _check_id(value: str, what: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not _usable_id(value):
        hint = "pass target_session_id=..." if what == "target session id" else "leave it out with agent_ids=..."
        raise ValueError(
            f"{what} {value!r} cannot be a SnapshotSessionManager id (no '/', '\\', '.', '..' or blank ids); {hint}"
        )


def _run(function: Callable[..., Coroutine[Any, Any, _T]], *args: Any) -> _T:
    """Run a coroutine function from synchronous code, also when the caller is inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(function(*args))
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, function(*args)).result()
