"""``ValkeySessionRepository``: the SDK's ``SessionRepository`` on plain Valkey or Redis.

Each public method is one round trip (a single command or one Lua script) on the session's hash
slot; ``ARCHITECTURE.md`` lists which. Semantics follow the SDK's own ``FileSessionManager``:
creating an existing session raises, ``create_message`` overwrites, updates of missing records raise
and keep ``created_at``, ``list_messages`` sorts by id before slicing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from strands.session.session_repository import SessionRepository
from strands.types.exceptions import SessionException
from strands.types.session import Session, SessionAgent, SessionMessage

from . import _codec
from ._client import ClientAdapter
from ._keys import DEFAULT_KEY_PREFIX, KeyLayout, SessionKeys, agent_member_range, check_message_id, encode_id
from ._keys import message_member as _member
from .exceptions import CorruptRecordError, SessionTooLargeError

if TYPE_CHECKING:
    from strands.multiagent.base import MultiAgentBase

logger = logging.getLogger(__name__)

#: Default ceiling for one stored record. Far below the server's 512 MB value limit and small
#: enough for managed services' request limits; raise it with ``max_record_bytes``.
DEFAULT_MAX_RECORD_BYTES = 32 * 1024 * 1024

_T = TypeVar("_T")


class ValkeySessionRepository(SessionRepository):
    """Stores sessions, agents, messages and orchestrator state in five keys per session.

    Args:
        client: A configured synchronous client: ``valkey.Valkey``, ``redis.Redis``,
            ``valkey.cluster.ValkeyCluster`` or ``redis.cluster.RedisCluster``, with
            ``decode_responses`` either way.
        key_prefix: First component of every key (default ``"strands"``). No braces, glob
            characters or whitespace, so ACL patterns like ``~strands:*`` stay exact.
        max_record_bytes: Largest encoded record accepted; larger ones raise
            :class:`~strands_valkey_session_manager.exceptions.SessionTooLargeError` before any I/O.

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
    ) -> None:
        if not isinstance(max_record_bytes, int) or max_record_bytes <= 0:
            raise ValueError(f"max_record_bytes=<{max_record_bytes!r}> | must be a positive int")
        self._db = ClientAdapter(client)
        self._layout = KeyLayout(key_prefix)
        self.max_record_bytes = max_record_bytes

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

    def create_session(self, session: Session, **kwargs: Any) -> Session:
        """Create a session record. One round trip (``SET NX``).

        Raises:
            SessionException: If the session already exists.
        """
        _expect(session, Session, "session")
        keys = self.session_keys(session.session_id)
        record = self._sized(_codec.encode_session(session), keys.session)
        with self._db.errors("create_session", session.session_id, keys.session):
            created = self._db.set_nx(keys.session, record)
        if not created:
            raise SessionException(f"Session {session.session_id} already exists")
        return session

    def read_session(self, session_id: str, **kwargs: Any) -> Session | None:
        """The session record, or ``None``. One round trip (``GET``)."""
        keys = self.session_keys(session_id)
        with self._db.errors("read_session", session_id, keys.session):
            raw = self._db.get(keys.session)
        return None if raw is None else self._decoded(_codec.decode_session, raw, session_id, keys.session)

    def delete_session(self, session_id: str, **kwargs: Any) -> None:
        """Delete the session with all its agents, messages and orchestrator state.

        One round trip (one script deletes the five keys atomically). Other sessions are never
        touched, whatever their ids.

        Raises:
            SessionException: If the session does not exist.
        """
        keys = self.session_keys(session_id)
        with self._db.errors("delete_session", session_id, keys.session):
            deleted = self._db.script("delete_session", keys.all(), ())
        if not deleted:
            raise SessionException(f"Session {session_id} does not exist")
        logger.debug("session_id=<%s> | deleted session", session_id)

    # -- agents -------------------------------------------------------------------------------

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
            written = self._db.script("put_in_session", (keys.session, keys.agents), (agent_id, record))
        if not written:
            raise SessionException(f"Session {session_id} does not exist")

    def read_agent(self, session_id: str, agent_id: str, **kwargs: Any) -> SessionAgent | None:
        """The agent record, or ``None``. One round trip (``HGET``)."""
        _check_id(agent_id, "agent_id")
        keys = self.session_keys(session_id)
        with self._db.errors("read_agent", session_id, keys.agents):
            raw = self._db.hget(keys.agents, agent_id)
        return None if raw is None else self._decoded(_codec.decode_agent, raw, session_id, keys.agents)

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
            updated = self._db.script("update_record", (keys.agents,), (agent_id, body, "1"))
        if not updated:
            raise SessionException(f"Agent {agent_id} in session {session_id} does not exist")

    # -- messages -----------------------------------------------------------------------------

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
            written = self._db.script(
                "append_message", (keys.agents, keys.messages, keys.order), (agent_id, member, record)
            )
        if not written:
            raise SessionException(f"Agent {agent_id} in session {session_id} does not exist")

    def read_message(self, session_id: str, agent_id: str, message_id: int, **kwargs: Any) -> SessionMessage | None:
        """One message, or ``None``. One round trip (``HGET``).

        Raises:
            ValueError: If the message id is not an integer.
        """
        member = self._member(agent_id, message_id)
        keys = self.session_keys(session_id)
        with self._db.errors("read_message", session_id, keys.messages):
            raw = self._db.hget(keys.messages, member)
        return None if raw is None else self._decoded(_codec.decode_message, raw, session_id, keys.messages)

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
            updated = self._db.script("update_record", (keys.messages,), (member, body, "1"))
        if not updated:
            raise SessionException(f"Message {session_message.message_id} does not exist")

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
            chunks = self._db.script("list_messages", (keys.order, keys.messages), (low, high, offset, count))
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

    def create_multi_agent(self, session_id: str, multi_agent: MultiAgentBase, **kwargs: Any) -> None:
        """Store an orchestrator's state (Graph, Swarm). One round trip.

        Raises:
            SessionException: If the session does not exist.
        """
        multi_agent_id = _check_id(multi_agent.id, "multi_agent_id")
        keys = self.session_keys(session_id)
        record = self._sized(_codec.encode_state(multi_agent.serialize_state()), keys.multi)
        with self._db.errors("create_multi_agent", session_id, keys.multi):
            written = self._db.script("put_in_session", (keys.session, keys.multi), (multi_agent_id, record))
        if not written:
            raise SessionException(f"Session {session_id} does not exist")

    def read_multi_agent(self, session_id: str, multi_agent_id: str, **kwargs: Any) -> dict[str, Any] | None:
        """An orchestrator's state, or ``None``. One round trip (``HGET``)."""
        _check_id(multi_agent_id, "multi_agent_id")
        keys = self.session_keys(session_id)
        with self._db.errors("read_multi_agent", session_id, keys.multi):
            raw = self._db.hget(keys.multi, multi_agent_id)
        return None if raw is None else self._decoded(_codec.decode_state, raw, session_id, keys.multi)

    def update_multi_agent(self, session_id: str, multi_agent: MultiAgentBase, **kwargs: Any) -> None:
        """Replace an orchestrator's state. One round trip.

        Raises:
            SessionException: If no state for this orchestrator exists.
        """
        multi_agent_id = _check_id(multi_agent.id, "multi_agent_id")
        keys = self.session_keys(session_id)
        record = self._sized(_codec.encode_state(multi_agent.serialize_state()), keys.multi)
        with self._db.errors("update_multi_agent", session_id, keys.multi):
            updated = self._db.script("update_record", (keys.multi,), (multi_agent_id, record, "0"))
        if not updated:
            raise SessionException(f"MultiAgent state {multi_agent_id} in session {session_id} does not exist")

    # -- helpers ------------------------------------------------------------------------------

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
