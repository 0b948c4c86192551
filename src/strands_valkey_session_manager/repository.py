"""``ValkeySessionRepository``: the SDK's ``SessionRepository`` on plain Valkey or Redis.

The synchronous face: every method drives one plan of ``_core.py`` on the client; the SDK's
methods, ``session_info``, ``list_sessions`` and ``sweep_catalog`` are retried (``docs/concurrency.md``,
"Retries"). Most are one round trip (a single command, one Lua script or one pipeline) on the
session's hash slot; ``ARCHITECTURE.md`` ("Round trips per operation") lists each. Semantics follow the SDK's own
``FileSessionManager``: creating an existing session raises, ``create_message`` overwrites,
updates of missing records raise and keep ``created_at``, ``list_messages`` sorts by id before slicing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from strands.session.session_repository import SessionRepository
from strands.types.session import Session, SessionAgent, SessionMessage

from . import catalog, transfer
from ._client import adapter_for, is_repeat, retrying, run_plan
from ._core import SessionCore
from ._lifetime import Duration
from ._options import DEFAULT_MAX_RECORD_BYTES, RepositoryKwargs, RepositoryOptions, options_from
from .catalog import DamagedSession, SessionInfo, SessionPage
from .exceptions import CorruptRecordError, DamagedSessionError, ValkeySessionError
from .transfer import SessionExport, export_lines, parse_export

if TYPE_CHECKING:
    from strands.multiagent.base import MultiAgentBase
    from typing_extensions import Unpack

__all__ = ["DEFAULT_MAX_RECORD_BYTES", "ValkeySessionRepository"]


class ValkeySessionRepository(SessionCore, SessionRepository):
    """Stores sessions, agents, messages and orchestrator state in five keys per session.

    Args:
        client: A configured synchronous client: ``valkey.Valkey``, ``redis.Redis``,
            ``valkey.cluster.ValkeyCluster`` or ``redis.cluster.RedisCluster``, with
            ``decode_responses`` either way. (For asyncio clients see ``AsyncValkeySessionRepository``.)
        key_prefix: First component of every key (default ``"strands"``). No braces, glob
            characters or whitespace, so ACL patterns like ``~strands:*`` stay exact.
        max_record_bytes: Largest encoded record accepted; larger ones raise
            :class:`~strands_valkey_session_manager.exceptions.SessionTooLargeError` before any I/O.
        ttl: Sliding lifetime (seconds or ``timedelta``): every write extends every key of the
            session by this much. Stored with sessions this repository creates, so every writer
            slides them alike.
        max_age: Absolute lifetime of sessions this repository creates, counted from creation.
        touch_on_read: Reads (session, agent, message, list) extend the lifetime too.
        user_id: Owner recorded in the catalog for sessions this repository creates.
        tags: Tags recorded in the catalog for sessions this repository creates.
        check_versions: Refuse a write to an agent that another writer has changed since this
            repository last read or wrote it (:class:`SessionConflictError`), instead of
            overwriting. Each agent carries a version in the session hash; the first read of an
            agent (``read_agent`` or ``list_messages``) or this repository's own writes set the
            version it expects.
        retries: How many times an operation is repeated when the server is unreachable or timed
            out (every operation is safe to repeat), before ``SessionStoreUnavailableError``.
        retry_backoff: First pause between attempts in seconds; doubles per attempt (max 1 s), jittered.
        compress_threshold: Compress (zstd, extra ``compression``) a record's content when its JSON
            exceeds this many bytes and compression shrinks it; ``None`` (default) never compresses.
            Compressed records are read whatever this option says.
        key_provider: Encrypt every agent, message and orchestrator record (AES-256-GCM, extra
            ``encryption``) under a per-session data key wrapped by this
            :class:`~strands_valkey_session_manager.encryption.KeyProvider`; ``None`` (default)
            writes plaintext. Plaintext records stay readable either way.
        wait_for_replicas: Every write (create, append, update, delete, fork, import, lease) is
            acknowledged only once this many replicas hold it: ``WAIT`` rides in the write's own
            pipeline, on the same node and connection, so round trips do not change. Fewer
            replicas within ``wait_timeout`` raise
            :class:`~strands_valkey_session_manager.exceptions.ReplicationTimeoutError`: the
            primary applied the write, which is not acknowledged. It is not retried: a repeat that
            finds its own earlier write writes nothing, so its ``WAIT`` would prove nothing about
            the first attempt. ``0`` (default) sends no ``WAIT``. Reads never wait.
        wait_timeout: Seconds a write waits for its replicas (default 1.0; positive). A
            valkey-py/redis-py client whose ``socket_timeout`` is not above it is refused with
            ``ValueError`` (the socket would give up on the wait's reply first).
        wait_aof: Wait with ``WAITAOF 1 <wait_for_replicas> <timeout>`` instead of ``WAIT``: the
            write is also fsynced to the primary's AOF (and, with replicas, to theirs). Needs
            Valkey 8+ or Redis 7.2+ with ``appendonly yes``; otherwise the first write raises
            :class:`~strands_valkey_session_manager.exceptions.ValkeySessionError`.
        options: All of the above as one :class:`~strands_valkey_session_manager.RepositoryOptions`
            (shared by several repositories or managers); a keyword argument given as well
            replaces that option.

    Raises:
        TypeError: If a keyword argument is not an option (the message names the closest one), or
            ``client`` is not a supported client.
        ValueError: If an option is invalid.
    """

    def __init__(
        self, client: Any, *, options: RepositoryOptions | None = None, **kwargs: Unpack[RepositoryKwargs]
    ) -> None:
        opts = options_from(type(self).__name__, options, kwargs)
        SessionCore.__init__(self, opts)
        self._db = adapter_for(client, opts.retry_policy(), is_async=False, durability=opts.durability())

    @property
    def client(self) -> Any:
        """The client this repository sends commands on."""
        return self._db.client

    # -- sessions -----------------------------------------------------------------------------

    @retrying
    def create_session(
        self, session: Session, *, user_id: str | None = None, tags: Sequence[str] | None = None, **kwargs: Any
    ) -> Session:
        """Create a session and list it in the catalog. One round trip (catalog ``ZADD``s and the
        ``create_session`` script in one pipeline).

        Args:
            session: The session record.
            user_id: Owner for the catalog (default: the repository's ``user_id``).
            tags: Tags for the catalog (default: the repository's ``tags``).

        Raises:
            SessionException: If the session already exists.
        """
        return run_plan(self._db, self._p_create_session(session, user_id, tags))

    @retrying
    def read_session(self, session_id: str, **kwargs: Any) -> Session | None:
        """The session record, or ``None``. One round trip (``HGET``)."""
        return run_plan(self._db, self._p_read_session(session_id))

    @retrying
    def delete_session(self, session_id: str, **kwargs: Any) -> None:
        """Delete the session with all its agents, messages and orchestrator state, and its
        catalog entries.

        Two round trips: one script deletes the five keys atomically, then the catalog entries it
        reported are removed. Other sessions are never touched, whatever their ids.

        Raises:
            SessionNotFoundError: If the session does not exist (a ``SessionException``).
        """
        # A repeat after a lost reply finds the session gone because the first attempt deleted it.
        run_plan(self._db, self._p_delete_session(session_id, missing_ok=is_repeat()))

    # -- agents -------------------------------------------------------------------------------

    @retrying
    def create_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        """Store a new agent record. One round trip.

        An agent that exists is never overwritten: another process may have created it (and
        written messages) after this one read it as missing. A repeat of this same create after a
        lost reply is recognised and succeeds.

        Raises:
            AgentExistsError: If the agent exists; nothing is written (restore it instead).
            SessionNotFoundError: If the session does not exist (expired, deleted, lost).
            DamagedSessionError: If some of the session's keys are gone (eviction); nothing is written.
        """
        run_plan(self._db, self._p_create_agent(session_id, session_agent))

    @retrying
    def read_agent(self, session_id: str, agent_id: str, **kwargs: Any) -> SessionAgent | None:
        """The agent record, or ``None``. One round trip: a pipeline of its ``HGET``, the session
        hash's version, count and shape, and which of the session's keys exist.

        Raises:
            DamagedSessionError: If keys or the record the session hash counts are gone (eviction).
            CorruptRecordError: If the record or a field the check reads is not what this package writes.
        """
        try:
            return run_plan(self._db, self._p_read_agent(session_id, agent_id))
        except DamagedSessionError:
            raise
        except CorruptRecordError:
            # The pipeline's error does not say which key it met (a key of the wrong type, or a
            # record that is not ours): each hash read alone raises naming a key of the wrong type;
            # else the first error stands. Failure path only.
            run_plan(self._db, self._p_name_wrong_type(session_id, agent_id))
            raise

    @retrying
    def update_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        """Replace an agent record, keeping its stored ``created_at``. One round trip.

        Raises:
            SessionException: If the agent does not exist.
            SessionNotFoundError: If the session does not exist (expired, deleted, lost).
            DamagedSessionError: If some of the session's keys are gone (eviction); nothing is written.
            SessionConflictError: If another writer changed the agent (``check_versions``).
        """
        run_plan(self._db, self._p_update_agent(session_id, session_agent))

    # -- messages -----------------------------------------------------------------------------

    @retrying
    def create_message(self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any) -> None:
        """Store a message (overwriting one with the same id) and index it. One round trip.

        Raises:
            SessionException: If the agent does not exist in the session.
            SessionNotFoundError: If the session does not exist (expired, deleted, lost).
            DamagedSessionError: If some of the session's keys are gone (eviction); nothing is written.
            SessionConflictError: If another writer changed the agent (``check_versions``).
            ValueError: If the message id is not an integer.
        """
        run_plan(self._db, self._p_create_message(session_id, agent_id, session_message))

    @retrying
    def read_message(self, session_id: str, agent_id: str, message_id: int, **kwargs: Any) -> SessionMessage | None:
        """One message, or ``None``. One round trip (``HGET``).

        Raises:
            ValueError: If the message id is not an integer.
        """
        return run_plan(self._db, self._p_read_message(session_id, agent_id, message_id))

    @retrying
    def update_message(self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any) -> None:
        """Replace a message, keeping its stored ``created_at``. One round trip.

        Raises:
            SessionException: If the message does not exist.
            SessionNotFoundError: If the session does not exist (expired, deleted, lost).
            DamagedSessionError: If some of the session's keys are gone (eviction); nothing is written.
            SessionConflictError: If another writer changed the agent (``check_versions``).
            ValueError: If the message id is not an integer.
        """
        run_plan(self._db, self._p_update_message(session_id, agent_id, session_message))

    @retrying
    def list_messages(
        self, session_id: str, agent_id: str, limit: int | None = None, offset: int = 0, **kwargs: Any
    ) -> list[SessionMessage]:
        """An agent's messages sorted by id, then sliced ``[offset:offset + limit]``.

        One round trip whatever the length: a script reads the id range from the index and the
        records from the hash. An unknown agent has no messages (empty list).

        Raises:
            ValueError: If ``limit`` or ``offset`` is not a non-negative integer.
            DamagedSessionError: If the agent's index entries do not match its count, an entry has
                no record, or a key the session requires is gone (eviction): never a partial history.
        """
        return run_plan(self._db, self._p_list_messages(session_id, agent_id, limit, offset))

    # -- multi-agent orchestrators ------------------------------------------------------------

    @retrying
    def create_multi_agent(self, session_id: str, multi_agent: MultiAgentBase, **kwargs: Any) -> None:
        """Store an orchestrator's state (Graph, Swarm). One round trip.

        Raises:
            SessionException: If the session does not exist.
        """
        run_plan(self._db, self._p_create_multi_agent(session_id, multi_agent))

    @retrying
    def read_multi_agent(self, session_id: str, multi_agent_id: str, **kwargs: Any) -> dict[str, Any] | None:
        """An orchestrator's state, or ``None``. One round trip (``HGET``)."""
        return run_plan(self._db, self._p_read_multi_agent(session_id, multi_agent_id))

    @retrying
    def update_multi_agent(self, session_id: str, multi_agent: MultiAgentBase, **kwargs: Any) -> None:
        """Replace an orchestrator's state. One round trip.

        Raises:
            SessionException: If no state for this orchestrator exists.
        """
        run_plan(self._db, self._p_update_multi_agent(session_id, multi_agent))

    # -- catalog ------------------------------------------------------------------------------

    @retrying
    def session_info(self, session_id: str) -> SessionInfo | None:
        """Catalog view of one session, or ``None`` if it does not exist. One round trip."""
        return run_plan(self._db, catalog.p_session_info(self._layout, session_id))

    @retrying
    def list_sessions(
        self, user_id: str | None = None, tag: str | None = None, cursor: str | None = None, limit: int = 50
    ) -> SessionPage:
        """A page of sessions, newest first, optionally only one user's and/or one tag's.

        Two round trips per page in the usual case (one pipeline reads every catalog shard, one
        reads the candidates' metadata); entries of expired or deleted sessions are skipped and
        removed on the way. Cost grows with the page size, not with the keyspace.

        Raises:
            ValueError: If ``limit`` is not between 1 and 1000 or ``cursor`` is not a str.
        """
        return run_plan(self._db, catalog.p_list_sessions(self._layout, user_id, tag, cursor, limit))

    def iter_sessions(
        self, user_id: str | None = None, tag: str | None = None, page_size: int = 200
    ) -> Iterator[SessionInfo]:
        """Every listed session, newest first, fetched page by page."""
        cursor: str | None = None
        while True:
            page = self.list_sessions(user_id=user_id, tag=tag, cursor=cursor, limit=page_size)
            yield from page.sessions
            if page.cursor is None:
                return
            cursor = page.cursor

    def prune(
        self,
        older_than: Duration,
        *,
        dry_run: bool = False,
        on_session: Callable[[SessionInfo, bool], None] | None = None,
        on_damaged: Callable[[DamagedSession], None] | None = None,
    ) -> int:
        """Delete every session whose last write is older than ``older_than``.

        Each delete checks again, in the same atomic step, that the session has not been written
        since the listing (and is still the session listed): a write meanwhile keeps it. Damaged
        sessions are skipped and reported. Sweeps the catalog of expired sessions first.

        Args:
            older_than: Idle time (seconds or ``timedelta``).
            dry_run: Only count what would be deleted.
            on_session: Called with each visited session and whether it is (or would be) deleted.
            on_damaged: Called with each damaged session met (skipped, not deleted).

        Returns:
            The number of sessions deleted (or that would be).
        """
        return run_plan(self._db, catalog.p_prune(self, older_than, dry_run, on_session, on_damaged))

    @retrying
    def sweep_catalog(self) -> int:
        """Remove the catalog entries (and expiry entries) of every expired session, in all shards;
        returns how many sessions were unlisted. Creates sweep a few entries of their own shard
        each; this sweeps everything due at once. Three round trips per pass plus one read."""
        return run_plan(self._db, catalog.p_sweep_catalog(self._layout))

    # -- copies -------------------------------------------------------------------------------

    def fork_session(
        self, source_id: str, target_id: str, *, user_id: str | None = None, tags: Sequence[str] | None = None
    ) -> None:
        """Copy a session with all its agents, messages and orchestrator state to a new id.

        Two round trips whatever the size (an encrypted source is exported and written again under
        the target's own data key instead): ``DUMP`` of the source's keys (one slot), then one script
        that ``RESTORE``s them under the target (the other slot) and lists it in the catalog. The
        copy gets a new creation time and this repository's lifetime; owner and tags are the
        source's unless given.

        Raises:
            SessionNotFoundError: If the source does not exist (a ``SessionException``).
            SessionException: If the target already exists.
            ValueError: If the ids are the same.
        """
        run_plan(self._db, transfer.p_fork_session(self, source_id, target_id, user_id, tags))

    def export_records(self, session_id: str) -> SessionExport:
        """Read a whole session. Three round trips plus one per agent.

        Raises:
            SessionNotFoundError: If the session does not exist (a ``SessionException``).
        """
        return run_plan(self._db, transfer.p_export_records(self, session_id))

    def export_session(self, session_id: str) -> str:
        """A whole session as JSON Lines (see ``transfer.py``).

        Raises:
            SessionNotFoundError: If the session does not exist (a ``SessionException``).
        """
        return "".join(line + "\n" for line in export_lines(self.export_records(session_id)))

    def import_session(self, jsonl: str | bytes | Iterable[str], *, overwrite: bool = False) -> str:
        """Write a session from :meth:`export_session` output; returns its id.

        Everything is parsed, validated (every record as the SDK restores it) and size-checked
        before anything is written.

        Args:
            jsonl: The export (text, bytes or an iterable of lines).
            overwrite: Replace whatever the id holds (a session, a damaged one), all or nothing:
                the import is staged beside it and swapped in one atomic step, so a failure part
                way (out of memory, a lost connection) leaves the original as it was.

        Raises:
            ValueError: If the input is not a valid export (the message names the line).
            SessionTooLargeError: If a record exceeds ``max_record_bytes`` (nothing is written).
            SessionException: If the session exists and ``overwrite`` is false.
            DamagedSessionError: If keys of a damaged session remain and ``overwrite`` is false.
        """
        export = parse_export(jsonl)
        self.write_export(export, overwrite=overwrite)
        return export.session.session_id

    def write_export(self, export: SessionExport, *, overwrite: bool = False) -> None:
        """Write a parsed export into a new session, or (``overwrite``) in place of what the id
        holds, all or nothing (see :meth:`import_session`).

        Raises:
            SessionException: If the session already exists and ``overwrite`` is false.
            SessionTooLargeError: If a record exceeds ``max_record_bytes`` (nothing is written).
        """
        try:
            run_plan(self._db, transfer.p_write_export(self, export, overwrite))
        except ValkeySessionError:
            if overwrite:  # best effort: leftovers of the staging are unlisted and expire anyway
                with contextlib.suppress(ValkeySessionError):
                    run_plan(self._db, transfer.p_drop_staging(self, export.session.session_id))
            raise
