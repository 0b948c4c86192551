"""``ValkeySessionRepository``: the SDK's ``SessionRepository`` on plain Valkey or Redis.

Each public method is one round trip (a single command or one Lua script) on the session's hash
slot; ``ARCHITECTURE.md`` lists which. Semantics follow the SDK's own ``FileSessionManager``:
creating an existing session raises, ``create_message`` overwrites, updates of missing records raise
and keep ``created_at``, ``list_messages`` sorts by id before slicing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from strands.session.session_repository import SessionRepository
from strands.types.exceptions import SessionException
from strands.types.session import Session, SessionAgent, SessionMessage

from . import _codec
from ._client import ClientAdapter, CommandCall, RetryPolicy, ScriptCall, retrying
from ._keys import (
    DEFAULT_KEY_PREFIX,
    KeyLayout,
    SessionKeys,
    agent_member_range,
    catalog_member,
    check_message_id,
    encode_id,
)
from ._keys import message_member as _member
from ._lifetime import Duration, created_ms, to_ms
from .catalog import CatalogMixin
from .exceptions import CorruptRecordError, SessionConflictError, SessionTooLargeError
from .transfer import TransferMixin

if TYPE_CHECKING:
    from strands.multiagent.base import MultiAgentBase

logger = logging.getLogger(__name__)

#: Default ceiling for one stored record. Far below the server's 512 MB value limit and small
#: enough for managed services' request limits; raise it with ``max_record_bytes``.
DEFAULT_MAX_RECORD_BYTES = 32 * 1024 * 1024

_T = TypeVar("_T")
# create_session.lua's DUMP payload arguments when the session is not a fork.
_NO_FORK = (b"", b"", b"", b"")


class ValkeySessionRepository(CatalogMixin, TransferMixin, SessionRepository):
    """Stores sessions, agents, messages and orchestrator state in five keys per session.

    Args:
        client: A configured synchronous client: ``valkey.Valkey``, ``redis.Redis``,
            ``valkey.cluster.ValkeyCluster`` or ``redis.cluster.RedisCluster``, with
            ``decode_responses`` either way.
        key_prefix: First component of every key (default ``"strands"``). No braces, glob
            characters or whitespace, so ACL patterns like ``~strands:*`` stay exact.
        max_record_bytes: Largest encoded record accepted; larger ones raise
            :class:`~strands_valkey_session_manager.exceptions.SessionTooLargeError` before any I/O.
        ttl: Sliding lifetime (seconds or ``timedelta``): every write extends every key of the
            session by this much. Stored with sessions this repository creates, so every writer
            slides them alike.
        max_age: Absolute lifetime of sessions this repository creates, counted from creation.
        touch_on_read: Reads (session, agent, message, list) extend the lifetime too.
        check_versions: Refuse a write to an agent that another writer has changed since this
            repository last read or wrote it (:class:`SessionConflictError`), instead of
            overwriting. Each agent carries a version in the session hash; the first read of an
            agent (``read_agent`` or ``list_messages``) or this repository's own writes set the
            version it expects.
        retries: How many times an operation is repeated when the server is unreachable or timed
            out (every operation is safe to repeat), before ``SessionStoreUnavailableError``.
        retry_backoff: First pause between attempts in seconds; doubles per attempt (max 1 s), jittered.
        user_id: Owner recorded in the catalog for sessions this repository creates.
        tags: Tags recorded in the catalog for sessions this repository creates.

    Raises:
        TypeError: If ``client`` is not a supported client.
        ValueError: If ``key_prefix`` or ``max_record_bytes`` is invalid.
    """

    def __init__(
        self,
        client: Any,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        ttl: Duration | None = None,
        max_age: Duration | None = None,
        touch_on_read: bool = False,
        user_id: str | None = None,
        tags: Sequence[str] = (),
        check_versions: bool = False,
        retries: int = 2,
        retry_backoff: float = 0.05,
    ) -> None:
        if not isinstance(max_record_bytes, int) or max_record_bytes <= 0:
            raise ValueError(f"max_record_bytes=<{max_record_bytes!r}> | must be a positive int")
        self._db = ClientAdapter(client, RetryPolicy(retries=retries, backoff=retry_backoff))
        self._layout = KeyLayout(key_prefix)
        self.max_record_bytes = max_record_bytes
        self._ttl_ms = to_ms(ttl, "ttl")
        self._max_age_ms = to_ms(max_age, "max_age")
        self._touch_on_read = bool(touch_on_read)
        self._user_id, self._tags = _check_owner(user_id, tags)
        # (session id, agent id) -> the agent version this repository's view is based on.
        self._versions: dict[tuple[str, str], int] | None = {} if check_versions else None

    @property
    def client(self) -> Any:
        """The client this repository sends commands on."""
        return self._db.client

    @property
    def key_prefix(self) -> str:
        """First component of every key this repository writes."""
        return self._layout.prefix

    def session_keys(self, session_id: str) -> SessionKeys:
        """The keys holding one session (for inspection, TTL or ACL tooling)."""
        return self._layout.session(session_id)

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
        _expect(session, Session, "session")
        if not self._create(session, user_id, tags):
            raise SessionException(f"Session {session.session_id} already exists")
        return session

    def _create(
        self,
        session: Session,
        user_id: str | None,
        tags: Sequence[str] | None,
        payloads: Sequence[bytes] = _NO_FORK,
        counters: Sequence[Any] = (),
    ) -> bool:
        """Run ``create_session.lua`` after listing the session in the catalog; False if it exists.

        For a fork, ``payloads`` are the source's DUMPed agents, messages, order and multi keys and
        ``counters`` its ``n:``/``v:`` fields as a flat field/value list.
        """
        owner, labels = _check_owner(
            self._user_id if user_id is None else user_id, self._tags if tags is None else tags
        )
        keys = self.session_keys(session.session_id)
        record = self._sized(_codec.encode_session(session), keys.session)
        created = created_ms(session.created_at)
        member = catalog_member(created, session.session_id)
        indexes = self._layout.catalog_indexes(session.session_id, owner, labels)
        deadline = created + self._max_age_ms if self._max_age_ms else 0
        args = (
            self._ttl_ms,
            record,
            created,
            deadline,
            owner or "",
            _codec.dumps_list(labels),
            member,
            *payloads,
            # The same call repeated (same record) carries the same nonce, so a retry after a lost
            # reply is recognised as our own create.
            hashlib.blake2b(record, digest_size=12).hexdigest(),
            *counters,
        )
        # The catalog entry goes first: if the script never runs, listing drops the entry as stale.
        calls = [CommandCall("zadd", (index, {member: 0})) for index in indexes]
        with self._db.errors("create_session", session.session_id, keys.session):
            *_, created_now = self._db.batch([*calls, ScriptCall("create_session", keys.all(), args)])
            if isinstance(created_now, Exception):
                raise created_now
            if created_now == -1:
                self._db.batch([CommandCall("zrem", (index, member)) for index in indexes])
        return bool(created_now == 1)

    @retrying
    def read_session(self, session_id: str, **kwargs: Any) -> Session | None:
        """The session record, or ``None``. One round trip (``HGET``)."""
        keys = self.session_keys(session_id)
        with self._db.errors("read_session", session_id, keys.session):
            raw = self._read_field(keys, 1, "record")
        return None if raw is None else self._decoded(_codec.decode_session, raw, session_id, keys.session)

    @retrying
    def delete_session(self, session_id: str, **kwargs: Any) -> None:
        """Delete the session with all its agents, messages and orchestrator state, and its
        catalog entries.

        Two round trips: one script deletes the five keys atomically, then the catalog entries it
        reported are removed. Other sessions are never touched, whatever their ids.

        Raises:
            SessionException: If the session does not exist.
        """
        keys = self.session_keys(session_id)
        with self._db.errors("delete_session", session_id, keys.session):
            entry = self._db.script("delete_session", keys.all(), ())
            if entry is not None:
                self._uncatalog(session_id, entry)
        if entry is None:
            raise SessionException(f"Session {session_id} does not exist")
        logger.debug("session_id=<%s> | deleted session", session_id)

    # -- agents -------------------------------------------------------------------------------

    @retrying
    def create_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        """Store an agent record (overwriting one with the same id). One round trip.

        Raises:
            SessionException: If the session does not exist.
        """
        _expect(session_agent, SessionAgent, "session_agent")
        agent_id = _check_id(session_agent.agent_id, "agent_id")
        keys = self.session_keys(session_id)
        record = self._sized(_codec.encode_agent(session_agent), keys.agents)
        with self._db.errors("create_agent", session_id, keys.agents):
            version = self._db.script("put_in_session", keys.all(), (self._ttl_ms, 2, agent_id, record))
        if not version:
            raise SessionException(f"Session {session_id} does not exist")
        self._saw(session_id, agent_id, version, wrote=True)

    @retrying
    def read_agent(self, session_id: str, agent_id: str, **kwargs: Any) -> SessionAgent | None:
        """The agent record, or ``None``. One round trip (``HGET``; with ``check_versions``, a
        pipeline that also reads the agent's version the first time)."""
        _check_id(agent_id, "agent_id")
        keys = self.session_keys(session_id)
        with self._db.errors("read_agent", session_id, keys.agents):
            if self._versions is None or (session_id, agent_id) in self._versions:
                raw = self._read_field(keys, 2, agent_id)
            else:
                raw, version = self._db.batch([self._read_call(keys, 2, agent_id), _version_call(keys, agent_id)])
                for item in (raw, version):
                    if isinstance(item, Exception):
                        raise item
                if raw is not None:
                    self._saw(session_id, agent_id, version or 0)
        return None if raw is None else self._decoded(_codec.decode_agent, raw, session_id, keys.agents)

    @retrying
    def update_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        """Replace an agent record, keeping its stored ``created_at``. One round trip.

        Raises:
            SessionException: If the agent does not exist.
        """
        _expect(session_agent, SessionAgent, "session_agent")
        agent_id = _check_id(session_agent.agent_id, "agent_id")
        keys = self.session_keys(session_id)
        body = self._sized(_codec.encode_agent_update(session_agent), keys.agents)
        with self._db.errors("update_agent", session_id, keys.agents):
            args = (self._ttl_ms, 2, agent_id, body, "1", agent_id, self._expected(session_id, agent_id))
            version = self._db.script("update_record", keys.all(), args)
        if not version:
            raise SessionException(f"Agent {agent_id} in session {session_id} does not exist")
        self._saw(session_id, agent_id, version, wrote=True)

    # -- messages -----------------------------------------------------------------------------

    @retrying
    def create_message(self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any) -> None:
        """Store a message (overwriting one with the same id) and index it. One round trip.

        Raises:
            SessionException: If the agent does not exist in the session.
            ValueError: If the message id is not an integer.
        """
        _expect(session_message, SessionMessage, "session_message")
        member = self._member(agent_id, session_message.message_id)
        keys = self.session_keys(session_id)
        record = self._sized(_codec.encode_message(session_message), keys.messages)
        with self._db.errors("create_message", session_id, keys.messages):
            args = (self._ttl_ms, agent_id, member, record, self._expected(session_id, agent_id))
            version = self._db.script("append_message", keys.all(), args)
        if not version:
            raise SessionException(f"Agent {agent_id} in session {session_id} does not exist")
        self._saw(session_id, agent_id, version, wrote=True)

    @retrying
    def read_message(self, session_id: str, agent_id: str, message_id: int, **kwargs: Any) -> SessionMessage | None:
        """One message, or ``None``. One round trip (``HGET``).

        Raises:
            ValueError: If the message id is not an integer.
        """
        member = self._member(agent_id, message_id)
        keys = self.session_keys(session_id)
        with self._db.errors("read_message", session_id, keys.messages):
            raw = self._read_field(keys, 3, member)
        return None if raw is None else self._decoded(_codec.decode_message, raw, session_id, keys.messages)

    @retrying
    def update_message(self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any) -> None:
        """Replace a message, keeping its stored ``created_at``. One round trip.

        Raises:
            SessionException: If the message does not exist.
            ValueError: If the message id is not an integer.
        """
        _expect(session_message, SessionMessage, "session_message")
        member = self._member(agent_id, session_message.message_id)
        keys = self.session_keys(session_id)
        body = self._sized(_codec.encode_message_update(session_message), keys.messages)
        with self._db.errors("update_message", session_id, keys.messages):
            args = (self._ttl_ms, 3, member, body, "1", agent_id, self._expected(session_id, agent_id))
            version = self._db.script("update_record", keys.all(), args)
        if not version:
            raise SessionException(f"Message {session_message.message_id} does not exist")
        self._saw(session_id, agent_id, version, wrote=True)

    @retrying
    def list_messages(
        self, session_id: str, agent_id: str, limit: int | None = None, offset: int = 0, **kwargs: Any
    ) -> list[SessionMessage]:
        """An agent's messages sorted by id, then sliced ``[offset:offset + limit]``.

        One round trip whatever the length: a script reads the id range from the index and the
        records from the hash. An unknown agent has no messages (empty list).

        Raises:
            ValueError: If ``limit`` or ``offset`` is not a non-negative integer.
        """
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise ValueError(f"limit=<{limit!r}> | limit must be None or a non-negative integer")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise ValueError(f"offset=<{offset!r}> | offset must be a non-negative integer")
        encoded_agent = encode_id(agent_id, "agent_id")
        keys = self.session_keys(session_id)
        if limit == 0:
            return []
        low, high = agent_member_range(encoded_agent)
        count = -1 if limit is None else limit
        with self._db.errors("list_messages", session_id, keys.messages):
            touch = self._ttl_ms if self._touch_on_read else -1
            version, *chunks = self._db.script("list_messages", keys.all(), (touch, low, high, offset, count, agent_id))
        if limit is None:
            self._saw(session_id, agent_id, version)
        messages: list[SessionMessage] = []
        for chunk in chunks:
            try:
                messages.extend(_codec.decode_message_array(chunk))
            except _codec.CodecError as e:
                raise CorruptRecordError(
                    f"session_id=<{session_id}>, agent_id=<{agent_id}>, key=<{keys.messages}> | "
                    f"a stored message is not a valid record: {e}"
                ) from e
        return messages

    # -- multi-agent orchestrators ------------------------------------------------------------

    @retrying
    def create_multi_agent(self, session_id: str, multi_agent: MultiAgentBase, **kwargs: Any) -> None:
        """Store an orchestrator's state (Graph, Swarm). One round trip.

        Raises:
            SessionException: If the session does not exist.
        """
        multi_agent_id = _check_id(multi_agent.id, "multi_agent_id")
        keys = self.session_keys(session_id)
        record = self._sized(_codec.encode_state(multi_agent.serialize_state()), keys.multi)
        with self._db.errors("create_multi_agent", session_id, keys.multi):
            written = self._db.script("put_in_session", keys.all(), (self._ttl_ms, 5, multi_agent_id, record))
        if not written:
            raise SessionException(f"Session {session_id} does not exist")

    @retrying
    def read_multi_agent(self, session_id: str, multi_agent_id: str, **kwargs: Any) -> dict[str, Any] | None:
        """An orchestrator's state, or ``None``. One round trip (``HGET``)."""
        _check_id(multi_agent_id, "multi_agent_id")
        keys = self.session_keys(session_id)
        with self._db.errors("read_multi_agent", session_id, keys.multi):
            raw = self._read_field(keys, 5, multi_agent_id)
        return None if raw is None else self._decoded(_codec.decode_state, raw, session_id, keys.multi)

    @retrying
    def update_multi_agent(self, session_id: str, multi_agent: MultiAgentBase, **kwargs: Any) -> None:
        """Replace an orchestrator's state. One round trip.

        Raises:
            SessionException: If no state for this orchestrator exists.
        """
        multi_agent_id = _check_id(multi_agent.id, "multi_agent_id")
        keys = self.session_keys(session_id)
        record = self._sized(_codec.encode_state(multi_agent.serialize_state()), keys.multi)
        with self._db.errors("update_multi_agent", session_id, keys.multi):
            args = (self._ttl_ms, 5, multi_agent_id, record, "0", "", "")
            updated = self._db.script("update_record", keys.all(), args)
        if not updated:
            raise SessionException(f"MultiAgent state {multi_agent_id} in session {session_id} does not exist")

    # -- helpers ------------------------------------------------------------------------------

    def _read_field(self, keys: SessionKeys, index: int, field: str) -> Any:
        """HGET on the session key at ``index`` (1-based, as in the scripts' KEYS); with
        ``touch_on_read`` a script that also extends the session's lifetime."""
        if self._touch_on_read:
            return self._db.script("read_field", keys.all(), (self._ttl_ms, index, field))
        return self._db.hget(keys.all()[index - 1], field)

    def _read_call(self, keys: SessionKeys, index: int, field: str) -> ScriptCall | CommandCall:
        """:meth:`_read_field` as a pipeline call."""
        if self._touch_on_read:
            return ScriptCall("read_field", keys.all(), (self._ttl_ms, index, field))
        return CommandCall("hget", (keys.all()[index - 1], field))

    def _expected(self, session_id: str, agent_id: str) -> str:
        """The version a write must find ('' when versions are not checked or not known yet)."""
        if self._versions is None:
            return ""
        version = self._versions.get((session_id, agent_id))
        return "" if version is None else str(version)

    def _saw(self, session_id: str, agent_id: str, version: Any, *, wrote: bool = False) -> None:
        """Record the version this repository's view of an agent is based on.

        A write's reply is the version after our own change. A read only sets the version the
        first time: a later read may include other writers' changes this repository's in-memory
        agent has not seen, and adopting its version would let our next write overwrite them.

        Raises:
            SessionConflictError: If a write found the agent changed by another writer.
        """
        version = int(version)
        if version == -1:
            raise SessionConflictError(
                f"session_id=<{session_id}>, agent_id=<{agent_id}> | another writer changed the agent after "
                f"this process read it (expected version {self._expected(session_id, agent_id)}); nothing was "
                "written. Restore the agent (new session manager) and retry."
            )
        if self._versions is not None and (wrote or (session_id, agent_id) not in self._versions):
            self._versions[(session_id, agent_id)] = version

    def _uncatalog(self, session_id: str, entry: Sequence[Any]) -> None:
        """Remove a deleted session's catalog entries, given the ``delete_session`` script's reply."""
        member, owner, labels = (_codec.text(v) for v in entry)
        if not member:
            return
        tags = tuple(_codec.loads(labels)) if labels else ()
        indexes = self._layout.catalog_indexes(session_id, owner or None, tags)
        self._db.batch([CommandCall("zrem", (index, member)) for index in indexes])

    @staticmethod
    def _member(agent_id: str, message_id: int) -> str:
        return _member(encode_id(agent_id, "agent_id"), check_message_id(message_id))

    def _sized(self, record: bytes, key: str) -> bytes:
        if len(record) > self.max_record_bytes:
            raise SessionTooLargeError(
                f"key=<{key}> | record of {len(record)} bytes exceeds max_record_bytes={self.max_record_bytes}; "
                "nothing was written"
            )
        return record

    @staticmethod
    def _decoded(decode: Callable[[Any], _T], raw: Any, session_id: str, key: str) -> _T:
        try:
            return decode(raw)
        except _codec.CodecError as e:
            raise CorruptRecordError(f"session_id=<{session_id}>, key=<{key}> | not a valid record: {e}") from e


def _expect(value: object, cls: type, name: str) -> None:
    if not isinstance(value, cls):
        raise TypeError(f"{name} must be a {cls.__name__}, not {type(value).__name__}")


def _check_id(value: str, kind: str) -> str:
    encode_id(value, kind)
    return value


def _check_owner(user_id: str | None, tags: Sequence[str]) -> tuple[str | None, tuple[str, ...]]:
    if user_id is not None:
        encode_id(user_id, "user_id")
    if isinstance(tags, str):
        raise ValueError(f"tags=<{tags!r}> | tags must be a sequence of str, not one str")
    for tag in tags:
        encode_id(tag, "tag")
    return user_id, tuple(dict.fromkeys(tags))


def _version_call(keys: SessionKeys, agent_id: str) -> CommandCall:
    return CommandCall("hget", (keys.session, f"v:{agent_id}"))
