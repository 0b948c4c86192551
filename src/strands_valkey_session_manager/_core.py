"""The repository's operations as plans: one body per operation, no I/O.

Each ``_p_<operation>`` is a generator that validates and encodes, yields the round trips it needs
(:class:`~._client.Step`) and receives their replies, then decodes. The synchronous face
(``repository.py``) and the asyncio face (``aio.py``) only drive these plans on their client, so
keys, encoding, scripts and semantics exist once. ``ARCHITECTURE.md`` lists each plan's round trips.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from strands.types.exceptions import SessionException
from strands.types.session import Session, SessionAgent, SessionMessage

from . import _codec
from ._client import CommandCall, Plan, ScriptCall, Step
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
from .catalog import CatalogPlans
from .exceptions import CorruptRecordError, SessionConflictError, SessionTooLargeError
from .transfer import TransferPlans

if TYPE_CHECKING:
    from strands.multiagent.base import MultiAgentBase

logger = logging.getLogger(__name__)

#: Default ceiling for one stored record. Far below the server's 512 MB value limit and small
#: enough for managed services' request limits; raise it with ``max_record_bytes``.
DEFAULT_MAX_RECORD_BYTES = 32 * 1024 * 1024

_T = TypeVar("_T")
# create_session.lua's DUMP payload arguments when the session is not a fork.
_NO_FORK = (b"", b"", b"", b"")


class SessionCore(CatalogPlans, TransferPlans):
    """Configuration and plans shared by :class:`ValkeySessionRepository` and its asyncio twin."""

    def __init__(
        self,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        ttl: Duration | None = None,
        max_age: Duration | None = None,
        touch_on_read: bool = False,
        user_id: str | None = None,
        tags: Sequence[str] = (),
        check_versions: bool = False,
    ) -> None:
        if not isinstance(max_record_bytes, int) or isinstance(max_record_bytes, bool) or max_record_bytes <= 0:
            raise ValueError(f"max_record_bytes=<{max_record_bytes!r}> | must be a positive int")
        self._layout = KeyLayout(key_prefix)
        self.max_record_bytes = max_record_bytes
        self._ttl_ms = to_ms(ttl, "ttl")
        self._max_age_ms = to_ms(max_age, "max_age")
        self._touch_on_read = bool(touch_on_read)
        self._user_id, self._tags = _check_owner(user_id, tags)
        # (session id, agent id) -> the agent version this repository's view is based on.
        self._versions: dict[tuple[str, str], int] | None = {} if check_versions else None

    @property
    def key_prefix(self) -> str:
        """First component of every key this repository writes."""
        return self._layout.prefix

    def session_keys(self, session_id: str) -> SessionKeys:
        """The keys holding one session (for inspection, TTL or ACL tooling)."""
        return self._layout.session(session_id)

    # -- sessions -----------------------------------------------------------------------------

    def _p_create_session(self, session: Session, user_id: str | None, tags: Sequence[str] | None) -> Plan[Session]:
        _expect(session, Session, "session")
        if not (yield from self._p_create(session, user_id, tags)):
            raise SessionException(f"Session {session.session_id} already exists")
        logger.info("session_id=<%s> | created session", session.session_id)
        return session

    def _p_create(
        self,
        session: Session,
        user_id: str | None,
        tags: Sequence[str] | None,
        payloads: Sequence[bytes] = _NO_FORK,
        session_payload: bytes = b"",
    ) -> Plan[bool]:
        """Run ``create_session.lua`` after listing the session in the catalog; False if it exists.

        For a fork, ``payloads`` are the source's DUMPed agents, messages, order and multi keys and
        ``session_payload`` its DUMPed session hash (for the per-agent counters and versions).
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
            session_payload,
        )
        # The catalog entry goes first: if the script never runs, listing drops the entry as stale.
        calls: list[CommandCall | ScriptCall] = [CommandCall("zadd", (index, {member: 0})) for index in indexes]
        calls.append(ScriptCall("create_session", keys.all(), args))
        *_, created_now = yield Step("create_session", session.session_id, keys.session, calls)
        if created_now == -1:
            unlist = [CommandCall("zrem", (index, member)) for index in indexes]
            yield Step("create_session", session.session_id, keys.session, unlist)
        return bool(created_now == 1)

    def _p_read_session(self, session_id: str) -> Plan[Session | None]:
        keys = self.session_keys(session_id)
        raw = yield Step("read_session", session_id, keys.session, self._read_call(keys, 1, "record"))
        return None if raw is None else self._decoded(_codec.decode_session, raw, session_id, keys.session)

    def _p_delete_session(self, session_id: str) -> Plan[None]:
        keys = self.session_keys(session_id)
        entry = yield Step("delete_session", session_id, keys.session, ScriptCall("delete_session", keys.all()))
        if entry is None:
            raise SessionException(f"Session {session_id} does not exist")
        member, owner, labels = (_codec.text(v) for v in entry)
        if member:
            tags = tuple(_codec.loads(labels)) if labels else ()
            indexes = self._layout.catalog_indexes(session_id, owner or None, tags)
            unlist = [CommandCall("zrem", (index, member)) for index in indexes]
            yield Step("delete_session", session_id, indexes[0], unlist)
        logger.info("session_id=<%s> | deleted session", session_id)

    # -- agents -------------------------------------------------------------------------------

    def _p_create_agent(self, session_id: str, session_agent: SessionAgent) -> Plan[None]:
        _expect(session_agent, SessionAgent, "session_agent")
        agent_id = _check_id(session_agent.agent_id, "agent_id")
        keys = self.session_keys(session_id)
        record = self._sized(_codec.encode_agent(session_agent), keys.agents)
        call = ScriptCall("put_in_session", keys.all(), (self._ttl_ms, 2, agent_id, record))
        version = yield Step("create_agent", session_id, keys.agents, call)
        if not version:
            raise SessionException(f"Session {session_id} does not exist")
        self._saw(session_id, agent_id, version, wrote=True)

    def _p_read_agent(self, session_id: str, agent_id: str) -> Plan[SessionAgent | None]:
        _check_id(agent_id, "agent_id")
        keys = self.session_keys(session_id)
        read = self._read_call(keys, 2, agent_id)
        if self._versions is None or (session_id, agent_id) in self._versions:
            raw = yield Step("read_agent", session_id, keys.agents, read)
        else:
            version_call = CommandCall("hget", (keys.session, f"v:{agent_id}"))
            raw, version = yield Step("read_agent", session_id, keys.agents, [read, version_call])
            if raw is not None:
                self._saw(session_id, agent_id, version or 0)
        return None if raw is None else self._decoded(_codec.decode_agent, raw, session_id, keys.agents)

    def _p_update_agent(self, session_id: str, session_agent: SessionAgent) -> Plan[None]:
        _expect(session_agent, SessionAgent, "session_agent")
        agent_id = _check_id(session_agent.agent_id, "agent_id")
        keys = self.session_keys(session_id)
        body = self._sized(_codec.encode_agent_update(session_agent), keys.agents)
        args = (self._ttl_ms, 2, agent_id, body, "1", agent_id, self._expected(session_id, agent_id))
        version = yield Step("update_agent", session_id, keys.agents, ScriptCall("update_record", keys.all(), args))
        if not version:
            raise SessionException(f"Agent {agent_id} in session {session_id} does not exist")
        self._saw(session_id, agent_id, version, wrote=True)

    # -- messages -----------------------------------------------------------------------------

    def _p_create_message(self, session_id: str, agent_id: str, session_message: SessionMessage) -> Plan[None]:
        _expect(session_message, SessionMessage, "session_message")
        member = self._member(agent_id, session_message.message_id)
        keys = self.session_keys(session_id)
        record = self._sized(_codec.encode_message(session_message), keys.messages)
        args = (self._ttl_ms, agent_id, member, record, self._expected(session_id, agent_id))
        version = yield Step(
            "create_message", session_id, keys.messages, ScriptCall("append_message", keys.all(), args)
        )
        if not version:
            raise SessionException(f"Agent {agent_id} in session {session_id} does not exist")
        self._saw(session_id, agent_id, version, wrote=True)

    def _p_read_message(self, session_id: str, agent_id: str, message_id: int) -> Plan[SessionMessage | None]:
        member = self._member(agent_id, message_id)
        keys = self.session_keys(session_id)
        raw = yield Step("read_message", session_id, keys.messages, self._read_call(keys, 3, member))
        return None if raw is None else self._decoded(_codec.decode_message, raw, session_id, keys.messages)

    def _p_update_message(self, session_id: str, agent_id: str, session_message: SessionMessage) -> Plan[None]:
        _expect(session_message, SessionMessage, "session_message")
        member = self._member(agent_id, session_message.message_id)
        keys = self.session_keys(session_id)
        body = self._sized(_codec.encode_message_update(session_message), keys.messages)
        args = (self._ttl_ms, 3, member, body, "1", agent_id, self._expected(session_id, agent_id))
        version = yield Step("update_message", session_id, keys.messages, ScriptCall("update_record", keys.all(), args))
        if not version:
            raise SessionException(f"Message {session_message.message_id} does not exist")
        self._saw(session_id, agent_id, version, wrote=True)

    def _p_list_messages(
        self, session_id: str, agent_id: str, limit: int | None, offset: int
    ) -> Plan[list[SessionMessage]]:
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
        touch = self._ttl_ms if self._touch_on_read else -1
        call = ScriptCall("list_messages", keys.all(), (touch, low, high, offset, count, agent_id))
        version, *chunks = yield Step("list_messages", session_id, keys.messages, call)
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

    def _p_put_multi_agent(self, session_id: str, multi_agent_id: str, state: dict[str, Any]) -> Plan[None]:
        _check_id(multi_agent_id, "multi_agent_id")
        keys = self.session_keys(session_id)
        record = self._sized(_codec.encode_state(state), keys.multi)
        call = ScriptCall("put_in_session", keys.all(), (self._ttl_ms, 5, multi_agent_id, record))
        if not (yield Step("create_multi_agent", session_id, keys.multi, call)):
            raise SessionException(f"Session {session_id} does not exist")

    def _p_create_multi_agent(self, session_id: str, multi_agent: MultiAgentBase) -> Plan[None]:
        yield from self._p_put_multi_agent(session_id, multi_agent.id, multi_agent.serialize_state())

    def _p_read_multi_agent(self, session_id: str, multi_agent_id: str) -> Plan[dict[str, Any] | None]:
        _check_id(multi_agent_id, "multi_agent_id")
        keys = self.session_keys(session_id)
        raw = yield Step("read_multi_agent", session_id, keys.multi, self._read_call(keys, 5, multi_agent_id))
        return None if raw is None else self._decoded(_codec.decode_state, raw, session_id, keys.multi)

    def _p_update_multi_agent(self, session_id: str, multi_agent: MultiAgentBase) -> Plan[None]:
        yield from self._p_replace_multi_agent(session_id, multi_agent.id, multi_agent.serialize_state())

    def _p_replace_multi_agent(self, session_id: str, multi_agent_id: str, state: dict[str, Any]) -> Plan[None]:
        _check_id(multi_agent_id, "multi_agent_id")
        keys = self.session_keys(session_id)
        record = self._sized(_codec.encode_state(state), keys.multi)
        call = ScriptCall("update_record", keys.all(), (self._ttl_ms, 5, multi_agent_id, record, "0", "", ""))
        if not (yield Step("update_multi_agent", session_id, keys.multi, call)):
            raise SessionException(f"MultiAgent state {multi_agent_id} in session {session_id} does not exist")

    # -- helpers ------------------------------------------------------------------------------

    def _read_call(self, keys: SessionKeys, index: int, field: str) -> ScriptCall | CommandCall:
        """HGET on the session key at ``index`` (1-based, as in the scripts' KEYS); with
        ``touch_on_read`` a script that also extends the session's lifetime."""
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
