"""``ValkeySessionManager``: pass it to ``strands.Agent(session_manager=...)``."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from strands.hooks import AfterInvocationEvent, HookRegistry
from strands.session.repository_session_manager import RepositorySessionManager
from strands.types.session import Session, SessionAgent, SessionMessage

from ._client import DEFAULT_WAIT_TIMEOUT, run_plan
from ._keys import DEFAULT_KEY_PREFIX
from ._lease import Lease
from ._lifetime import Duration, to_ms
from ._seal import KeyProvider
from ._write_behind import WriteBehind
from .encryption import rotate_wrapping_key
from .repository import DEFAULT_MAX_RECORD_BYTES, ValkeySessionRepository

if TYPE_CHECKING:
    from strands.multiagent.base import MultiAgentBase


class ValkeySessionManager(RepositorySessionManager, ValkeySessionRepository):
    """Persists agents, their messages and state, and Graph/Swarm state in Valkey or Redis.

    The manager is its own repository (like the SDK's ``FileSessionManager``), so the repository
    methods (``list_messages``, ``read_agent``, ``delete_session``, ...) are available on it.
    On construction it reads the session and creates it when missing (two round trips at most).

    Args:
        session_id: Id of the session; any non-empty string.
        client: A configured synchronous client (``valkey.Valkey``, ``redis.Redis`` or their
            cluster clients). The manager never closes a client it was given.
        key_prefix: First component of every key (default ``"strands"``).
        max_record_bytes: Largest encoded message or agent record accepted.
        ttl: Sliding lifetime (seconds or ``timedelta``): every write extends the whole session.
        max_age: Absolute lifetime of a session this manager creates, from its creation.
        touch_on_read: Reads extend the lifetime too.
        user_id: Owner recorded in the catalog (``list_sessions(user_id=...)``) for a new session.
        tags: Tags recorded in the catalog for a new session.
        check_versions: Refuse (``SessionConflictError``) instead of overwriting when another
            process changed this agent since this manager restored or wrote it. On by default.
        retries: Repeats of an operation while the server is unreachable (all are safe to repeat).
        retry_backoff: First pause between repeats, in seconds (doubling, jittered, max 1 s).
        write_behind: Apply writes in order on a background thread, so an agent streaming in an
            event loop does not wait for a round trip per message. Every write is applied before
            an invocation returns (and by :meth:`flush`/:meth:`close`, or at normal interpreter
            exit); a failed write is raised at the next write or flush as ``WriteBehindError``.
        lock: Own each agent exclusively: initializing an agent takes a lease (a second owner gets
            ``SessionLockedError`` at once), renewed in the background every third of
            ``lock_ttl``; writes carry its fencing token, so once a crashed owner's lease has
            expired and been taken over, its late writes are refused. :meth:`close` releases.
        lock_ttl: Lease time (seconds or ``timedelta``): how long a crashed owner blocks others.
        compress_threshold: Compress records whose content exceeds this many bytes (zstd, when it
            shrinks them); ``None`` (default) never compresses.
        key_provider: Encrypt records under a per-session data key wrapped by this
            :class:`~strands_valkey_session_manager.encryption.KeyProvider`; ``None``: plaintext.
        wait_for_replicas: A write is acknowledged only once this many replicas hold it (``WAIT``
            in the write's pipeline, no extra round trip); fewer within ``wait_timeout`` raise
            :class:`~strands_valkey_session_manager.exceptions.ReplicationTimeoutError` (not
            retried). ``0`` (default): the primary's reply is the acknowledgement.
        wait_timeout: Seconds a write waits for its replicas (default 1.0).
        wait_aof: Wait with ``WAITAOF 1 <wait_for_replicas>`` instead: the primary's own AOF is
            fsynced too (Valkey 8+, Redis 7.2+, ``appendonly yes``).
        **kwargs: Passed on to ``RepositorySessionManager``.
    """

    def __init__(
        self,
        session_id: str,
        client: Any,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        ttl: Duration | None = None,
        max_age: Duration | None = None,
        touch_on_read: bool = False,
        user_id: str | None = None,
        tags: Sequence[str] = (),
        check_versions: bool = True,
        retries: int = 2,
        retry_backoff: float = 0.05,
        write_behind: bool = False,
        lock: bool = False,
        lock_ttl: Duration = 30.0,
        compress_threshold: int | None = None,
        key_provider: KeyProvider | None = None,
        wait_for_replicas: int = 0,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        wait_aof: bool = False,
        **kwargs: Any,
    ) -> None:
        ValkeySessionRepository.__init__(
            self,
            client,
            key_prefix=key_prefix,
            max_record_bytes=max_record_bytes,
            ttl=ttl,
            max_age=max_age,
            touch_on_read=touch_on_read,
            user_id=user_id,
            tags=tags,
            check_versions=check_versions,
            retries=retries,
            retry_backoff=retry_backoff,
            compress_threshold=compress_threshold,
            key_provider=key_provider,
            wait_for_replicas=wait_for_replicas,
            wait_timeout=wait_timeout,
            wait_aof=wait_aof,
        )
        self._owns_client = False
        self._write_behind = WriteBehind(session_id) if write_behind else None
        self._lease = Lease(self, session_id, to_ms(lock_ttl, "lock_ttl")) if lock else None
        RepositorySessionManager.__init__(self, session_id=session_id, session_repository=self, **kwargs)

    @classmethod
    def from_url(
        cls,
        url: str,
        session_id: str,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        cluster: bool = False,
        manager_kwargs: dict[str, Any] | None = None,
        **client_kwargs: Any,
    ) -> ValkeySessionManager:
        """Build a manager on a new valkey-py client for ``url`` (``valkey://``, ``valkeys://``,
        ``redis://``, ``rediss://``, ``unix://``). :meth:`close` closes that client.

        Args:
            url: Server URL, with credentials and database number as valkey-py accepts them.
            session_id: Id of the session.
            key_prefix: First component of every key.
            cluster: Connect with ``valkey.cluster.ValkeyCluster`` (ElastiCache Serverless, cluster mode).
            manager_kwargs: Further arguments of the manager (``ttl``, ``user_id``, ...).
            **client_kwargs: Passed to the client's ``from_url``.
        """
        import valkey
        import valkey.cluster

        client: Any = (
            valkey.cluster.ValkeyCluster.from_url(url, **client_kwargs)  # type: ignore[no-untyped-call]
            if cluster
            else valkey.Valkey.from_url(url, **client_kwargs)
        )
        try:
            manager = cls(session_id=session_id, client=client, key_prefix=key_prefix, **(manager_kwargs or {}))
        except BaseException:
            client.close()
            raise
        manager._owns_client = True
        return manager

    def close(self) -> None:
        """Apply queued writes (write-behind), release the agents' leases (``lock=True``), then close
        the client if this manager created it (:meth:`from_url`)."""
        if self._write_behind is not None:
            self._write_behind.close()
        if self._lease is not None:
            self._lease.release_all()
        if self._owns_client:
            self.client.close()
            self._owns_client = False

    def rotate_wrapping_key(self, session_id: str | None = None) -> bool:
        """Re-wrap a session's data key (default: this manager's session) under the key
        provider's current wrapping key; records are untouched. False if it has no data key.
        See :func:`~strands_valkey_session_manager.encryption.rotate_wrapping_key`."""
        self.flush()
        return rotate_wrapping_key(self, self.session_id if session_id is None else session_id)

    # -- write-behind -------------------------------------------------------------------------

    def flush(self) -> None:
        """Wait until every queued write is applied (write-behind); a no-op otherwise.

        Raises:
            WriteBehindError: If a queued write failed.
        """
        if self._write_behind is not None:
            self._write_behind.flush()

    def initialize(self, agent: Any, **kwargs: Any) -> None:
        """Restore or create the agent; with ``lock=True`` take its lease first (fails fast).

        Raises:
            SessionLockedError: If another manager holds the agent's lease.
        """
        if self._lease is not None:
            self._lease.acquire(agent.agent_id)
        super().initialize(agent, **kwargs)

    def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None:
        """The SDK's session hooks, plus a flush when an invocation ends (write-behind)."""
        super().register_hooks(registry, **kwargs)
        if self._write_behind is not None:
            registry.add_callback(AfterInvocationEvent, lambda event: self.flush())
            try:  # orchestrator events arrived after strands-agents 1.0
                from strands.hooks import AfterMultiAgentInvocationEvent
            except ImportError:
                return
            registry.add_callback(AfterMultiAgentInvocationEvent, lambda event: self.flush())

    def _later(self, write: Callable[[], None]) -> bool:
        """Queue ``write`` if write-behind is on; False if the caller must write now."""
        if self._write_behind is None:
            return False
        self._write_behind.submit(write)
        return True

    def create_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        agent = copy.deepcopy(session_agent)
        if not self._later(lambda: ValkeySessionRepository.create_agent(self, session_id, agent)):
            super().create_agent(session_id, session_agent, **kwargs)

    def update_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        agent = copy.deepcopy(session_agent)
        if not self._later(lambda: ValkeySessionRepository.update_agent(self, session_id, agent)):
            super().update_agent(session_id, session_agent, **kwargs)

    def create_message(self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any) -> None:
        message = copy.deepcopy(session_message)
        if not self._later(lambda: ValkeySessionRepository.create_message(self, session_id, agent_id, message)):
            super().create_message(session_id, agent_id, session_message, **kwargs)

    def update_message(self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any) -> None:
        message = copy.deepcopy(session_message)
        if not self._later(lambda: ValkeySessionRepository.update_message(self, session_id, agent_id, message)):
            super().update_message(session_id, agent_id, session_message, **kwargs)

    def update_multi_agent(self, session_id: str, multi_agent: MultiAgentBase, **kwargs: Any) -> None:
        multi_id, state = multi_agent.id, multi_agent.serialize_state()
        if not self._later(lambda: run_plan(self._db, self._p_replace_multi_agent(session_id, multi_id, state))):
            super().update_multi_agent(session_id, multi_agent, **kwargs)

    # Reads see every queued write first.

    def read_session(self, session_id: str, **kwargs: Any) -> Session | None:
        self.flush()
        return super().read_session(session_id, **kwargs)

    def delete_session(self, session_id: str, **kwargs: Any) -> None:
        self.flush()
        super().delete_session(session_id, **kwargs)

    def read_agent(self, session_id: str, agent_id: str, **kwargs: Any) -> SessionAgent | None:
        self.flush()
        return super().read_agent(session_id, agent_id, **kwargs)

    def read_message(self, session_id: str, agent_id: str, message_id: int, **kwargs: Any) -> SessionMessage | None:
        self.flush()
        return super().read_message(session_id, agent_id, message_id, **kwargs)

    def list_messages(
        self, session_id: str, agent_id: str, limit: int | None = None, offset: int = 0, **kwargs: Any
    ) -> list[SessionMessage]:
        self.flush()
        return super().list_messages(session_id, agent_id, limit, offset, **kwargs)

    def read_multi_agent(self, session_id: str, multi_agent_id: str, **kwargs: Any) -> dict[str, Any] | None:
        self.flush()
        return super().read_multi_agent(session_id, multi_agent_id, **kwargs)
