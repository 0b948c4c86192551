"""``ValkeySessionManager``: pass it to ``strands.Agent(session_manager=...)``."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from strands.hooks import AfterInvocationEvent, HookRegistry
from strands.session.repository_session_manager import RepositorySessionManager
from strands.types.exceptions import SessionException
from strands.types.session import Session, SessionAgent, SessionMessage

from . import _codec
from ._client import retrying, run_plan
from ._keys import check_message_id
from ._lease import Lease
from ._lifetime import Duration, to_ms
from ._options import OPTION_NAMES, RepositoryKwargs, RepositoryOptions, options_from, unexpected_arguments
from ._write_behind import WriteBehind
from .encryption import rotate_wrapping_key
from .exceptions import AgentExistsError, SessionNotFoundError
from .repository import ValkeySessionRepository

if TYPE_CHECKING:
    from strands.multiagent.base import MultiAgentBase
    from strands.types.content import Message
    from typing_extensions import Unpack

logger = logging.getLogger(__name__)

# How often the manager re-reads a session or agent that another process created between its read
# and its create (each attempt is one more race lost, which needs a delete in between).
_ADOPT_ATTEMPTS = 3


class ValkeySessionManager(RepositorySessionManager, ValkeySessionRepository):
    """Persists agents, their messages and state, and Graph/Swarm state in Valkey or Redis.

    The manager is its own repository (like the SDK's ``FileSessionManager``), so the repository
    methods (``list_messages``, ``read_agent``, ``delete_session``, ...) are available on it.
    On construction it reads the session and creates it when missing (two round trips at most).
    When another process creates the same session between that read and the create (two requests
    of one chat at once, a retry), the manager adopts the session the other one created (one more
    read) instead of failing; a direct :meth:`create_session` of an existing session still raises.
    Likewise, an agent another process created after this manager found it missing is restored
    as stored (messages, state, conversation manager state), never started afresh over it.

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
            Queued writes are retried like direct ones. An agent's creation is not queued.
        lock: Own each agent exclusively: initializing an agent takes a lease (a second owner gets
            ``SessionLockedError`` at once), renewed in the background every third of
            ``lock_ttl``; writes carry its fencing token, so once a crashed owner's lease has
            expired and been taken over, its late writes are refused. :meth:`close` releases.
            A lease lost for good (the session vanished, or it expired and was taken over) is
            no longer renewed and is listed in :attr:`lost_leases`.
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
        options: The repository options above as one
            :class:`~strands_valkey_session_manager.RepositoryOptions` (its ``check_versions=None``
            means on); a keyword argument given as well replaces that option.

    Raises:
        TypeError: If an argument is not one of the above (a misspelled option is never ignored),
            or ``client`` is not a supported client.
        ValueError: If an option is invalid.
    """

    # The manager checks agent versions unless told not to (``check_versions=False``).
    _check_versions_default = True

    def __init__(
        self,
        session_id: str,
        client: Any,
        *,
        options: RepositoryOptions | None = None,
        write_behind: bool = False,
        lock: bool = False,
        lock_ttl: Duration = 30.0,
        **kwargs: Unpack[RepositoryKwargs],
    ) -> None:
        # RepositorySessionManager takes **kwargs "for future extensibility" and ignores them all
        # (strands-agents 1.0 to 1.62): an unknown name here is a mistake, never an SDK option.
        unknown = kwargs.keys() - OPTION_NAMES
        if unknown:
            raise unexpected_arguments(type(self).__name__, unknown, _manager_options(type(self)))
        ValkeySessionRepository.__init__(self, client, options=options_from(type(self).__name__, options, kwargs))
        self._owns_client = False
        self._lease = Lease(self, session_id, to_ms(lock_ttl, "lock_ttl")) if lock else None
        self._write_behind = WriteBehind(session_id) if write_behind else None
        # Set while the SDK's constructor reads and creates the session (see create_session).
        self._opening = True
        self._adopted: Session | None = None
        try:
            RepositorySessionManager.__init__(self, session_id=session_id, session_repository=self)
        except BaseException:
            if self._write_behind is not None:
                self._write_behind.close()
            raise
        finally:
            self._opening = False
        if self._adopted is not None:
            # Another process created the session between our read and our create: it is not new
            # to us, so agents and orchestrators are read before being created.
            self.session = self._adopted
            self._is_new_session = False

    @classmethod
    def from_url(
        cls,
        url: str,
        session_id: str,
        *,
        key_prefix: str | None = None,
        cluster: bool = False,
        manager_kwargs: dict[str, Any] | None = None,
        **client_kwargs: Any,
    ) -> ValkeySessionManager:
        """Build a manager on a new valkey-py client for ``url`` (``valkey://``, ``valkeys://``,
        ``redis://``, ``rediss://``, ``unix://``). :meth:`close` closes that client.

        Manager options may be given flat (``from_url(url, session_id=sid, ttl=3600)``) or in
        ``manager_kwargs``; every other keyword goes to the client.

        Args:
            url: Server URL, with credentials and database number as valkey-py accepts them.
            session_id: Id of the session.
            key_prefix: First component of every key.
            cluster: Connect with ``valkey.cluster.ValkeyCluster`` (ElastiCache Serverless, cluster mode).
            manager_kwargs: Further arguments of the manager (``ttl``, ``user_id``, ...).
            **client_kwargs: Manager options (any argument of the constructor), and the rest passed
                to the client's ``from_url``.

        Raises:
            TypeError: If a keyword is neither a manager option nor a client option (a misspelled
                ``tll``), ``manager_kwargs`` names something that is not a manager option, or an
                option is given both flat and in ``manager_kwargs`` (checked before connecting).
            ValueError: If the URL cannot be parsed (a ``/``, ``?``, ``#`` or ``@`` in the password must
                be percent-encoded); the message shows the URL with its password as ``***``.
            SessionStoreUnavailableError: If a cluster client cannot reach any node (it connects at once).
        """
        import valkey
        import valkey.cluster

        known = _manager_options(cls)
        options = dict(manager_kwargs or {})
        unknown = {name: value for name, value in options.items() if name not in known}
        if unknown:
            raise unexpected_arguments(f"{cls.__name__}.from_url manager_kwargs", unknown, known)
        for name in [name for name in client_kwargs if name in known]:
            if name in options:
                raise TypeError(f"{cls.__name__}.from_url got {name!r} twice: flat and in manager_kwargs")
            options[name] = client_kwargs.pop(name)

        from ._redact import check_client_options, client_from_url

        check_client_options(f"{cls.__name__}.from_url", client_kwargs, cluster=cluster, own=known)
        from .exceptions import SessionStoreUnavailableError

        # Errors name the URL without its password, and hold it nowhere (see _redact.py).
        factory: Any = valkey.cluster.ValkeyCluster.from_url if cluster else valkey.Valkey.from_url
        try:
            client: Any = client_from_url(factory, url, unavailable=SessionStoreUnavailableError, **client_kwargs)
        finally:
            del url, client_kwargs  # tracebacks keep this frame: no password among its locals
        try:
            if key_prefix is not None:
                options["key_prefix"] = key_prefix
            manager = cls(session_id=session_id, client=client, **options)
        except BaseException:
            client.close()
            raise
        manager._owns_client = True
        return manager

    def close(self) -> None:
        """Apply queued writes (write-behind), release the agents' leases (``lock=True``), then close
        the client if this manager created it (:meth:`from_url`).

        Every step runs whatever the others do: a client made by :meth:`from_url` is closed even
        when a queued write failed. A lease that cannot be released is logged (it expires after
        ``lock_ttl``); a failed queued write is raised after the cleanup.

        Raises:
            WriteBehindError: If a queued write failed and was not reported yet.
        """
        error: BaseException | None = None
        try:
            if self._write_behind is not None:
                self._write_behind.close()
        except BaseException as e:
            error = e
        try:
            if self._lease is not None:
                self._lease.release_all()
        finally:
            if self._owns_client:
                self._owns_client = False
                self.client.close()
        if error is not None:
            raise error

    @property
    def lost_leases(self) -> dict[str, SessionException]:
        """Agents whose lease this manager lost while holding it (``lock=True``), with the error the
        renewal met: ``SessionNotFoundError`` (the session vanished) or ``SessionLockedError`` (the
        lease expired and another owner took it). Their writes are refused; empty otherwise."""
        return {} if self._lease is None else dict(self._lease.lost)

    def rotate_wrapping_key(self, session_id: str | None = None) -> bool:
        """Re-wrap a session's data key (default: this manager's session) under the key
        provider's current wrapping key; records are untouched. False if it has no data key.
        See :func:`~strands_valkey_session_manager.encryption.rotate_wrapping_key`."""
        self.flush()
        return rotate_wrapping_key(self, self.session_id if session_id is None else session_id)

    # -- opening a session and an agent -------------------------------------------------------

    def create_session(
        self, session: Session, *, user_id: str | None = None, tags: Sequence[str] | None = None, **kwargs: Any
    ) -> Session:
        """Create a session (see :meth:`ValkeySessionRepository.create_session`).

        Raises:
            SessionException: If the session already exists, except during the manager's own
                construction, which adopts a session created meanwhile by another process.
        """
        if not getattr(self, "_opening", False) or session.session_id != self.session_id:
            return super().create_session(session, user_id=user_id, tags=tags, **kwargs)
        for _ in range(_ADOPT_ATTEMPTS):
            if self._create_if_missing(session):
                return session
            stored = ValkeySessionRepository.read_session(self, session.session_id)
            if stored is not None:
                logger.info("session_id=<%s> | created meanwhile by another process, adopted", session.session_id)
                self._adopted = stored
                return stored
        raise SessionException(
            f"session_id=<{session.session_id}> | the session exists whenever it is created and is gone "
            "whenever it is read (created and deleted by others over and over)"
        )

    @retrying
    def _create_if_missing(self, session: Session) -> bool:
        """Create the session; False (nothing written) if it exists."""
        return run_plan(self._db, self._p_create(session, None, None))

    def initialize(self, agent: Any, **kwargs: Any) -> None:
        """Restore or create the agent; with ``lock=True`` take its lease first (fails fast).

        When another process creates the agent after this manager found it missing
        (``AgentExistsError``), the stored agent is restored exactly as if it had been found:
        messages, state, conversation manager state; nothing of it is overwritten.

        Raises:
            SessionLockedError: If another manager holds the agent's lease.
        """
        if self._lease is not None:
            self._lease.acquire(agent.agent_id)
        for attempt in range(_ADOPT_ATTEMPTS):
            try:
                super().initialize(agent, **kwargs)
                return
            except AgentExistsError:
                if attempt == _ADOPT_ATTEMPTS - 1:
                    raise
                # Nothing of ours was written (create_agent came first and wrote nothing) and the
                # agent object is untouched: forget the attempt and restore what is stored.
                logger.info(
                    "agent_id=<%s>, session_id=<%s> | created meanwhile by another process, restoring it",
                    agent.agent_id,
                    self.session_id,
                )
                self._latest_agent_message.pop(agent.agent_id, None)
                getattr(self, "_held_records", {}).pop(agent.agent_id, None)
                self._is_new_session = False

    def initialize_multi_agent(self, source: MultiAgentBase, **kwargs: Any) -> None:
        """Restore a Graph or Swarm's state, or create it when the session has none.

        When another process creates the same orchestrator's state between this manager's finding
        it missing and its create (``AgentExistsError``), the stored state is restored instead:
        nodes it already ran are not run again from scratch over it.
        """
        for attempt in range(_ADOPT_ATTEMPTS):
            try:
                super().initialize_multi_agent(source, **kwargs)
                return
            except AgentExistsError:
                if attempt == _ADOPT_ATTEMPTS - 1:
                    raise
                logger.info(
                    "multi_agent_id=<%s>, session_id=<%s> | created meanwhile by another process, restoring it",
                    source.id,
                    self.session_id,
                )
                self._is_new_session = False

    def append_message(self, message: Message, agent: Any, **kwargs: Any) -> None:
        """Store a message the agent just appended (the SDK's ``MessageAddedEvent``).

        Raises:
            SessionNotFoundError: If the session no longer exists. The message was not stored and
                is taken back out of ``agent.messages`` (the SDK appends it before storing it), so
                the agent holds only what the store held.
        """
        previous = self._latest_agent_message.get(agent.agent_id)
        try:
            super().append_message(message, agent, **kwargs)
        except SessionNotFoundError as e:
            self._latest_agent_message[agent.agent_id] = previous
            _take_back(agent, message, previous)
            raise self._gone(agent, "The message was not stored and was taken out of agent.messages.") from e

    def sync_agent(self, agent: Any, **kwargs: Any) -> None:
        """Store the agent's state if it changed (the SDK's hooks call it after each message and
        at the end of each invocation).

        Raises:
            SessionNotFoundError: If the session no longer exists (nothing was written).
        """
        try:
            super().sync_agent(agent, **kwargs)
        except SessionNotFoundError as e:
            raise self._gone(agent, "The agent's state was not stored.") from e

    def _gone(self, agent: Any, what: str) -> SessionNotFoundError:
        return SessionNotFoundError(
            f"session_id=<{self.session_id}>, agent_id=<{agent.agent_id}> | the session no longer exists: it "
            "expired (ttl, max_age), was deleted or pruned, or the server lost it (a restart without "
            f"persistence, a failover). {what} Build a new session manager and agent to start the session "
            "again (replay agent.messages into it if they are still needed)."
        )

    # -- write-behind -------------------------------------------------------------------------

    def flush(self) -> None:
        """Wait until every queued write is applied (write-behind); a no-op otherwise.

        Raises:
            WriteBehindError: If a queued write failed.
        """
        if self._write_behind is not None:
            self._write_behind.flush()

    def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None:
        """The SDK's session hooks; with write-behind, every write is applied before an invocation
        returns, whatever order the registry runs its callbacks in.

        The SDK runs ``AfterInvocationEvent`` callbacks in reverse registration order, so a flush
        registered after the SDK's ``sync_agent`` would run before it and leave that update queued.
        Each callback the SDK registers for an event that ends an invocation is therefore followed
        by a flush of its own, and one more flush is registered for the event itself.
        """
        if self._write_behind is None:
            super().register_hooks(registry, **kwargs)
            return
        events = _invocation_end_events()
        super().register_hooks(cast(HookRegistry, _FlushingRegistry(registry, events, self.flush)), **kwargs)
        for event in events:
            registry.add_callback(event, lambda event: self.flush())

    def create_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        # Never queued: initialize needs its outcome (AgentExistsError means restore instead).
        self.flush()
        super().create_agent(session_id, session_agent, **kwargs)

    def update_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        if self._write_behind is None:
            super().update_agent(session_id, session_agent, **kwargs)
            return
        raw = _codec.encode_agent(session_agent)
        self._write_behind.submit(
            lambda: ValkeySessionRepository.update_agent(self, session_id, _codec.decode_agent(raw))
        )

    def create_message(self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any) -> None:
        if self._write_behind is None:
            super().create_message(session_id, agent_id, session_message, **kwargs)
            return
        check_message_id(session_message.message_id)
        raw = _codec.encode_message(session_message)
        self._write_behind.submit(
            lambda: ValkeySessionRepository.create_message(self, session_id, agent_id, _codec.decode_message(raw))
        )

    def update_message(self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any) -> None:
        if self._write_behind is None:
            super().update_message(session_id, agent_id, session_message, **kwargs)
            return
        check_message_id(session_message.message_id)
        raw = _codec.encode_message(session_message)
        self._write_behind.submit(
            lambda: ValkeySessionRepository.update_message(self, session_id, agent_id, _codec.decode_message(raw))
        )

    def update_multi_agent(self, session_id: str, multi_agent: MultiAgentBase, **kwargs: Any) -> None:
        if self._write_behind is None:
            super().update_multi_agent(session_id, multi_agent, **kwargs)
            return
        multi_id, raw = multi_agent.id, _codec.dumps(multi_agent.serialize_state())
        self._write_behind.submit(lambda: self._replace_multi_agent(session_id, multi_id, _codec.loads(raw)))

    @retrying
    def _replace_multi_agent(self, session_id: str, multi_agent_id: str, state: dict[str, Any]) -> None:
        run_plan(self._db, self._p_replace_multi_agent(session_id, multi_agent_id, state))

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


def _manager_options(cls: type[ValkeySessionManager]) -> frozenset[str]:
    """The keyword options of a manager class's constructor (``ttl``, ``lock``, ``options``, ...)."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    own = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
    return frozenset(own | OPTION_NAMES)


def _take_back(agent: Any, message: Message, previous: SessionMessage | None) -> None:
    """Remove ``message`` from ``agent.messages`` when it is the one the SDK just appended.

    The SDK appends a message, then fires ``MessageAddedEvent``, whose first callback stores it.
    A message the SDK merged into the previous one (a continuation of the same role) replaces
    that stored message and carries its tracking id; removing it would drop the stored content
    too, so it stays.
    """
    messages = agent.messages
    if not messages or messages[-1] is not message:
        return
    tracking = message.get("tracking_id")
    if tracking is not None and previous is not None and previous.message.get("tracking_id") == tracking:
        return
    messages.pop()


def _invocation_end_events() -> tuple[type[Any], ...]:
    """The events after which an invocation returns: the agent's and (SDK > 1.0) the orchestrators'."""
    try:
        from strands.hooks import AfterMultiAgentInvocationEvent
    except ImportError:  # orchestrator events arrived after strands-agents 1.0
        return (AfterInvocationEvent,)
    return (AfterInvocationEvent, AfterMultiAgentInvocationEvent)


class _FlushingRegistry:
    """A view of a ``HookRegistry`` for the SDK's own session hooks: a callback registered for an
    event that ends an invocation is followed by ``flush``, so the writes it queued are applied
    before the invocation returns, whatever order the registry runs callbacks in."""

    def __init__(self, registry: HookRegistry, events: tuple[type[Any], ...], flush: Callable[[], None]) -> None:
        self._registry = registry
        self._events = events
        self._flush = flush

    def add_callback(self, event_type: Any, callback: Callable[[Any], Any], **kwargs: Any) -> None:
        types = event_type if isinstance(event_type, list) else [event_type]
        if any(t in self._events for t in types):
            callback = _then(callback, self._flush)
        self._registry.add_callback(event_type, callback, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)


def _then(callback: Callable[[Any], Any], after: Callable[[], None]) -> Callable[[Any], Any]:
    if inspect.iscoroutinefunction(callback):

        @functools.wraps(callback)
        async def run_async(event: Any) -> None:
            await callback(event)
            after()

        return run_async

    @functools.wraps(callback)
    def run(event: Any) -> None:
        callback(event)
        after()

    return run
