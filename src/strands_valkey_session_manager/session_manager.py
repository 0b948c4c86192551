"""``ValkeySessionManager``: pass it to ``strands.Agent(session_manager=...)``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from strands.session.repository_session_manager import RepositorySessionManager

from ._keys import DEFAULT_KEY_PREFIX
from ._lifetime import Duration
from .repository import DEFAULT_MAX_RECORD_BYTES, ValkeySessionRepository


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
        )
        self._owns_client = False
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
        """Close the client if this manager created it (:meth:`from_url`); otherwise do nothing."""
        if self._owns_client:
            self.client.close()
            self._owns_client = False
