"""The repository's operations as plans: one body per operation, no I/O.

Each ``_p_<operation>`` is a generator that validates and encodes, yields the round trips it needs
(:class:`~._client.Step`) and receives their replies, then decodes. The synchronous face
(``repository.py``) and the asyncio face (``aio.py``) only drive these plans on their client, so
keys, encoding, scripts and semantics exist once. ``ARCHITECTURE.md`` ("Round trips per operation")
lists each plan's round trips.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from strands.types.exceptions import SessionException
from strands.types.session import Session, SessionAgent, SessionMessage

from . import _codec, _seal, catalog
from ._client import Call, CommandCall, Plan, ScriptCall, Step
from ._keys import (
    KeyLayout,
    SessionKeys,
    agent_member_range,
    catalog_member,
    check_message_id,
    encode_id,
    message_members,
)
from ._keys import message_member as _member
from ._lifetime import created_ms, to_ms
from ._options import RepositoryOptions
from ._schema import (
    F_CREATED,
    F_DEK,
    F_RECORD,
    F_SHAPE,
    KEY_AGENTS,
    KEY_MESSAGES,
    KEY_MULTI,
    KEY_SESSION,
    R_AGENT_EXISTS,
    R_CONFLICT,
    R_CREATE_EXISTS,
    R_DAMAGED,
    R_LEASE_HELD,
    R_LEASE_NO_SESSION,
    R_LOCKED,
    R_NEEDS_ALL_KEYS,
    R_SESSION_GONE,
    R_STALE_DATA_KEY,
    SHAPE_AGENTS,
    SHAPE_MESSAGES,
    SHAPE_MULTI,
    count_field,
    named,
    version_field,
)
from .catalog import damaged_leftovers, expected_expiry
from .exceptions import (
    AgentExistsError,
    CorruptRecordError,
    DamagedSessionError,
    DecryptionError,
    SessionConflictError,
    SessionLockedError,
    SessionNotFoundError,
    SessionStoreUnavailableError,
    SessionTooLargeError,
)

if TYPE_CHECKING:
    from strands.multiagent.base import MultiAgentBase

logger = logging.getLogger(__name__)


_T = TypeVar("_T")
# create_session.lua's DUMP payload arguments when the session is not a fork.
_NO_FORK = (b"", b"", b"", b"")


class SessionCore:
    """Configuration and plans shared by :class:`ValkeySessionRepository` and its asyncio twin."""

    # What ``check_versions=None`` means for this face (the session manager: on).
    _check_versions_default = False

    def __init__(self, options: RepositoryOptions) -> None:
        """``options`` checked themselves when made (``RepositoryOptions``)."""
        self.options = options
        self._layout = KeyLayout(options.key_prefix)
        self.max_record_bytes = options.max_record_bytes
        self._ttl_ms = to_ms(options.ttl, "ttl")
        self._max_age_ms = to_ms(options.max_age, "max_age")
        self._touch_on_read = bool(options.touch_on_read)
        self._user_id, self._tags = _check_owner(options.user_id, options.tags)
        # (session id, agent id) -> the agent version this repository's view is based on.
        checked = options.versions_checked(self._check_versions_default)
        self._versions: dict[tuple[str, str], int] | None = {} if checked else None
        # (session id, agent id) -> fencing token of a lease this repository holds (lock=True).
        self._lease_tokens: dict[tuple[str, str], int] = {}
        # Sealing (_seal.py): compression and encryption options; per-session data keys known to
        # this repository, and fresh ones waiting for their create_session to succeed.
        self._sealer = _seal.Sealer(options.compress_threshold, options.key_provider)
        self._data_keys: dict[str, _seal.DataKey] = {}
        self._pending_keys: dict[str, _seal.DataKey] = {}
        # Sessions known to hold orchestrator state: their agents' scripts declare all five keys.
        self._with_multi: dict[str, None] = {}

    @property
    def key_prefix(self) -> str:
        """First component of every key this repository writes."""
        return self._layout.prefix

    def session_keys(self, session_id: str) -> SessionKeys:
        """The keys holding one session (for inspection, TTL or ACL tooling)."""
        return self._layout.session(session_id)

    def _agent_keys(self, session_id: str, keys: SessionKeys) -> list[str]:
        """KEYS of an agent's script (create, append, update, restore): without the multi key
        unless the session is known to have one. While a cluster moves a slot, a script declaring
        a key that the source node lacks is refused (``TRYAGAIN``) until the whole slot has moved,
        and an agent-only session has no multi key; a session that has one answers
        ``R_NEEDS_ALL_KEYS`` (nothing written) and the script is sent again with all five."""
        return keys.all() if session_id in self._with_multi else keys.without_multi()

    def _has_multi(self, session_id: str) -> None:
        """Remember that the session holds orchestrator state (bounded: forgetting costs one round trip)."""
        if len(self._with_multi) >= 4096:
            self._with_multi.clear()
        self._with_multi[session_id] = None

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
        *,
        lifetime: tuple[int, int] | None = None,
    ) -> Plan[bool]:
        """Run ``create_session.lua`` after listing the session in the catalog; False if it exists.

        For a fork, ``payloads`` are the source's DUMPed agents, messages, order and multi keys and
        ``session_payload`` its DUMPed session hash (for the per-agent counters and versions).
        ``lifetime``: the sliding TTL and deadline (ms, unix ms; 0: none) instead of this
        repository's ``ttl`` and ``max_age`` (an import keeps the exported session's).
        """
        owner, labels = _check_owner(
            self._user_id if user_id is None else user_id, self._tags if tags is None else tags
        )
        keys = self.session_keys(session.session_id)
        record = self._sized(_codec.encode_session(session), keys.session)
        fresh = self._fresh_key(session.session_id)
        dek = "" if fresh is None else fresh.stored
        created = created_ms(session.created_at)
        member = catalog_member(created, session.session_id)
        indexes = self._layout.catalog_indexes(session.session_id, owner, labels)
        if lifetime is None:
            ttl_ms, deadline = self._ttl_ms, created + self._max_age_ms if self._max_age_ms else 0
        else:
            ttl_ms, deadline = lifetime
        expiry, expiry_entry = catalog.expiry_calls(
            self._layout, session.session_id, member, owner, labels, expires_ms=expected_expiry(ttl_ms, deadline)
        )
        dump_agents, dump_messages, dump_order, dump_multi = payloads
        args = named(
            "create_session",
            ttl=ttl_ms,
            record=record,
            created=created,
            deadline=deadline,
            user=owner or "",
            tags=_codec.dumps_list(labels),
            member=member,
            dump_agents=dump_agents,
            dump_messages=dump_messages,
            dump_order=dump_order,
            dump_multi=dump_multi,
            dump_session=session_payload,
            # The same call repeated (same record, same data key) carries the same nonce, so a
            # retry after a lost reply is recognised as our own create.
            nonce=hashlib.blake2b(record + dek.encode(), digest_size=12).hexdigest(),
            dek=dek,
            expiry=expiry_entry,
        )
        # The catalog entry goes first: if the script never runs, listing drops the entry as stale.
        # First of all, the read of due expiry entries of the shard, swept below (catalog.py).
        calls: list[CommandCall | ScriptCall] = [*expiry]
        calls.extend(CommandCall("zadd", (index, {member: 0})) for index in indexes)
        calls.append(ScriptCall("create_session", keys.all(), args))
        script_at = len(calls) - 1
        shredding = fresh is not None and isinstance(self._sealer.key_provider, _seal.ShreddingKeyProvider)
        if shredding:
            # The session's dek after the script: whether a refused create's fresh key is in use.
            calls.append(CommandCall("hget", (keys.session, F_DEK)))
        replies = yield Step("create_session", session.session_id, keys.session, calls)
        due, created_now = replies[0], replies[script_at]
        self._pending_keys.pop(session.session_id, None)
        if created_now == 1 and fresh is not None:
            self._data_keys[session.session_id] = fresh
        elif shredding and fresh is not None and _codec.text(replies[-1] or "") != fresh.stored:
            self._discard_fresh_key(session.session_id, fresh)
        if isinstance(created_now, list) or created_now == R_CREATE_EXISTS:
            unlist = [CommandCall("zrem", (index, member)) for index in indexes]
            yield Step("create_session", session.session_id, keys.session, unlist)
        if due:
            yield from catalog.p_sweep_due(self._layout, due)
        if isinstance(created_now, list):
            raise damaged_leftovers(session.session_id, keys, created_now[1:])
        return bool(created_now == 1)

    def _p_read_session(self, session_id: str) -> Plan[Session | None]:
        keys = self.session_keys(session_id)
        (raw,) = yield from self._p_read(
            "read_session", session_id, keys.session, [self._read_call(keys, KEY_SESSION, F_RECORD)]
        )
        return None if raw is None else self._decoded(_codec.decode_session, raw, session_id, keys.session)

    def _p_delete_session(self, session_id: str, missing_ok: bool = False) -> Plan[None]:
        keys = self.session_keys(session_id)
        if isinstance(self._sealer.key_provider, _seal.ShreddingKeyProvider):
            entry = yield from self._p_shred_and_delete(session_id, keys)
        else:
            entry = yield Step("delete_session", session_id, keys.session, ScriptCall("delete_session", keys.all()))
        # Its data key went with the session hash (crypto-shredding): forget it here too.
        self._data_keys.pop(session_id, None)
        if entry is None:
            if missing_ok:
                return
            raise SessionNotFoundError(f"Session {session_id} does not exist")
        unlist = catalog.unlist_calls(self._layout, session_id, entry)
        if unlist:
            yield Step("delete_session", session_id, str(unlist[0].args[0]), unlist)
        logger.info("session_id=<%s> | deleted session", session_id)

    def _p_shred_and_delete(self, session_id: str, keys: SessionKeys) -> Plan[Any]:
        """Destroy the key set of the session's ``dek`` in the key store, then delete the session
        only if its ``dek`` is still that one (``delete_session.lua`` ARGV[3]); if it is not (re-
        encrypted, or deleted and created again by another process), destroy the set of the one
        it holds and try again. Keys are destroyed first, so no copy opens once this returns and a
        failed destroy deletes nothing; only the deleted generation's set is destroyed, never the
        set of a session created again under the same id after this delete (its create may have
        put its key already). The first attempt uses the ``dek`` this repository holds for the
        session (a destroy of a set no live session uses is harmless); without one it costs one
        round trip more. The reply of the delete that happened (or None: no session)."""
        known = self._data_keys.get(session_id)
        expected = "\0" if known is None else known.stored  # "\0": never stored, so the reply names it
        for _ in range(_SHRED_ATTEMPTS):
            if expected != "\0":
                self._shred(session_id, expected)
            call = ScriptCall("delete_session", keys.all(), ("", "", expected))
            entry = yield Step("delete_session", session_id, keys.session, call)
            if not isinstance(entry, (str, bytes)):
                return entry
            expected = _codec.text(entry)
        raise SessionConflictError(
            f"session_id=<{session_id}>, key=<{keys.session}> | the session's data key changed during each of "
            f"{_SHRED_ATTEMPTS} attempts to delete it (re-encrypted, or deleted and created again each time); "
            "nothing was deleted"
        )

    # -- agents -------------------------------------------------------------------------------

    def _p_create_agent(self, session_id: str, session_agent: SessionAgent) -> Plan[None]:
        _expect(session_agent, SessionAgent, "session_agent")
        agent_id = _check_id(session_agent.agent_id, "agent_id")
        keys = self.session_keys(session_id)

        def call(seal: _codec.Seal | None, dek: str) -> ScriptCall:
            record = self._sized(_codec.encode_agent(session_agent, seal), keys.agents)
            return ScriptCall(
                "put_in_session", self._agent_keys(session_id, keys), (self._ttl_ms, KEY_AGENTS, agent_id, record, dek)
            )

        version = yield from self._p_sealed_write("create_agent", session_id, keys.agents, agent_id, call)
        try:
            _check_written(version, session_id, keys, agent_id, "create_agent")
        except AgentExistsError:
            # This process has not seen the stored agent: its writes are conflicts until it
            # restores the agent (whose first read then sets the version).
            # A process that already restored the agent keeps the view it has.
            if self._versions is not None:
                self._versions.setdefault((session_id, agent_id), _NOT_SEEN)
            raise
        self._saw(session_id, agent_id, version, wrote=True)

    def _p_read_agent(self, session_id: str, agent_id: str) -> Plan[SessionAgent | None]:
        _check_id(agent_id, "agent_id")
        keys = self.session_keys(session_id)
        # One round trip: the record, with what the session hash says of the agent and the session
        # (version, count, shape, created) and which of the other keys exist, to notice a damaged
        # session (some keys evicted) instead of restoring it as new or partial.
        calls: list[Call] = [
            self._read_call(keys, KEY_AGENTS, agent_id),
            CommandCall("hmget", (keys.session, version_field(agent_id), count_field(agent_id), F_SHAPE, F_CREATED)),
            *(CommandCall("exists", (key,)) for key in keys.all()[1:]),
        ]
        raw, state, *present = yield from self._p_read("read_agent", session_id, keys.agents, calls)
        version = self._checked_agent(session_id, agent_id, keys, raw=raw, state=state, present=present)
        if raw is None:
            return None
        self._saw(session_id, agent_id, version or 0)
        open_ = self._opener(session_id, keys.agents, _seal.agent_field(agent_id))
        return self._decoded(partial(_codec.decode_agent, open_=open_), raw, session_id, keys.agents)

    def _p_name_wrong_type(self, session_id: str, agent_id: str) -> Plan[None]:
        """After ``read_agent``'s pipeline met a key of the wrong type (the server's error names no
        key, and the pipeline reads two hashes): each hash read on its own, so the error raised
        names the key that holds the wrong type. Only on that failure path."""
        keys = self.session_keys(session_id)
        yield Step("read_agent", session_id, keys.agents, CommandCall("hget", (keys.agents, agent_id)))
        yield Step(
            "read_agent", session_id, keys.session, CommandCall("hmget", (keys.session, version_field(agent_id)))
        )

    def _checked_agent(
        self,
        session_id: str,
        agent_id: str,
        keys: SessionKeys,
        *,
        raw: Any,
        state: Sequence[Any],
        present: Sequence[Any],
    ) -> int | None:
        """The agent's version (None when absent), after checking that the session hash and the
        surviving keys agree: the same rule as the write scripts' ``damaged()`` (``_prelude.lua``).

        Raises:
            DamagedSessionError: If a key the session's shape requires, or the agent's record, is gone.
            CorruptRecordError: If the version, count or shape field is not an integer.
        """
        version_raw, count_raw, shape_raw, created = state
        version = _integer(version_raw, version_field(agent_id), session_id, keys.session)
        count = _integer(count_raw, count_field(agent_id), session_id, keys.session) or 0
        shape = _integer(shape_raw, F_SHAPE, session_id, keys.session) or 0
        if shape & SHAPE_MULTI:  # the restore that follows declares the multi key (see _agent_keys)
            self._has_multi(session_id)
        where = f"session_id=<{session_id}>, agent_id=<{agent_id}>"
        if created is None:
            if raw is not None:
                raise DamagedSessionError(
                    f"{where}, key=<{keys.session}> | the session hash is gone (evicted or deleted) while the "
                    f"agent's record remains in {keys.agents}"
                )
            return None
        if version is not None:
            shape |= SHAPE_AGENTS | SHAPE_MESSAGES if count > 0 else SHAPE_AGENTS
        missing = [key for bit, names in _shape_keys(keys) if shape & bit for key in names if not present[key[1]]]
        if missing:
            gone = ", ".join(key for key, _ in missing)
            raise DamagedSessionError(
                f"{where}, key=<{missing[0][0]}> | keys of the session are gone (evicted or deleted): {gone}"
            )
        if raw is None and version is not None:
            raise DamagedSessionError(
                f"{where}, key=<{keys.agents}> | the session hash holds the agent's version but its record is gone"
            )
        return version

    def _p_update_agent(self, session_id: str, session_agent: SessionAgent) -> Plan[None]:
        _expect(session_agent, SessionAgent, "session_agent")
        agent_id = _check_id(session_agent.agent_id, "agent_id")
        keys = self.session_keys(session_id)
        missing = f"Agent {agent_id} in session {session_id} does not exist"
        body = partial(_codec.encode_agent_update, session_agent)
        yield from self._p_update_record(
            "update_agent", session_id, agent_id, keys, index=KEY_AGENTS, field=agent_id, body=body, missing=missing
        )

    # -- messages -----------------------------------------------------------------------------

    def _p_create_message(self, session_id: str, agent_id: str, session_message: SessionMessage) -> Plan[None]:
        _expect(session_message, SessionMessage, "session_message")
        member = self._member(agent_id, session_message.message_id)
        keys = self.session_keys(session_id)

        def call(seal: _codec.Seal | None, dek: str) -> ScriptCall:
            record = self._sized(_codec.encode_message(session_message, seal), keys.messages)
            guards = (self._expected(session_id, agent_id), self._token(session_id, agent_id), dek)
            keys_ = self._agent_keys(session_id, keys)
            return ScriptCall("append_message", keys_, (self._ttl_ms, agent_id, member, record, *guards))

        if self._sealer.active:
            version = yield from self._p_sealed_write("create_message", session_id, keys.messages, member, call)
        else:  # the hot path: no nested plan
            version = yield Step("create_message", session_id, keys.messages, call(None, ""))
            if version == R_NEEDS_ALL_KEYS:
                self._has_multi(session_id)
                version = yield Step("create_message", session_id, keys.messages, call(None, ""))
        _check_written(version, session_id, keys, agent_id, "create_message")
        if not version:
            raise SessionException(f"Agent {agent_id} in session {session_id} does not exist")
        self._saw(session_id, agent_id, version, wrote=True)

    def _p_read_message(self, session_id: str, agent_id: str, message_id: int) -> Plan[SessionMessage | None]:
        member = self._member(agent_id, message_id)
        keys = self.session_keys(session_id)
        (raw,) = yield from self._p_read(
            "read_message", session_id, keys.messages, [self._read_call(keys, KEY_MESSAGES, member)]
        )
        if raw is None:
            return None
        open_ = self._opener(session_id, keys.messages, _seal.message_field(member, message_id))
        return self._decoded(partial(_codec.decode_message, open_=open_), raw, session_id, keys.messages)

    def _p_update_message(self, session_id: str, agent_id: str, session_message: SessionMessage) -> Plan[None]:
        _expect(session_message, SessionMessage, "session_message")
        member = self._member(agent_id, session_message.message_id)
        keys = self.session_keys(session_id)
        body = partial(_codec.encode_message_update, session_message)
        missing = f"Message {session_message.message_id} does not exist"
        yield from self._p_update_record(
            "update_message", session_id, agent_id, keys, index=KEY_MESSAGES, field=member, body=body, missing=missing
        )

    def _p_update_record(
        self,
        operation: str,
        session_id: str,
        agent_id: str,
        keys: SessionKeys,
        *,
        index: int,
        field: str,
        body: Callable[[_codec.Seal | None], bytes],
        missing: str,
    ) -> Plan[None]:
        """Replace an agent's record or message (``update_record.lua``), keeping ``created_at`` and
        checking the agent's version and lease; ``body`` encodes the record with a seal;
        ``missing`` is the error when the field is absent."""
        key = keys.all()[index - 1]

        def call(seal: _codec.Seal | None, dek: str) -> ScriptCall:
            args = named(
                "update_record",
                ttl=self._ttl_ms,
                index=index,
                field=field,
                value=self._sized(body(seal), key),
                keep_created="1",
                agent=agent_id,
                expected=self._expected(session_id, agent_id),
                token=self._token(session_id, agent_id),
                dek=dek,
            )
            return ScriptCall("update_record", self._agent_keys(session_id, keys), args)

        version = yield from self._p_sealed_write(operation, session_id, key, field, call)
        _check_written(version, session_id, keys, agent_id, operation)
        if not version:
            raise SessionException(missing)
        self._saw(session_id, agent_id, version, wrote=True)

    #: Bounds of one restore step: records the first step (``list_messages.lua``) returns and
    #: members each later step reads with one ``HMGET`` (at most 1,000); bytes of records a step
    #: reads (the first stops about one record past them, later ones are sized by the mean size
    #: of the records read last).
    restore_step_records = 1000
    restore_step_bytes = 1 << 20
    #: Bytes of records the first step reads: it copies them through Lua (about 2 µs of server time
    #: per KiB), where later steps use a plain ``HMGET``.
    restore_first_step_bytes = 256 << 10
    #: Reads of a restore started again when another writer rewrote messages meanwhile.
    restore_attempts = 3

    def _p_list_messages(
        self, session_id: str, agent_id: str, limit: int | None, offset: int
    ) -> Plan[list[SessionMessage]]:
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise ValueError(f"limit=<{limit!r}> | limit must be None or a non-negative integer")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise ValueError(f"offset=<{offset!r}> | offset must be a non-negative integer")
        encode_id(agent_id, "agent_id")
        if limit == 0:
            return []
        for _ in range(self.restore_attempts):
            messages = yield from self._p_list_attempt(session_id, agent_id, limit, offset)
            if messages is not None:
                return messages
        raise SessionConflictError(
            f"session_id=<{session_id}>, agent_id=<{agent_id}> | another writer rewrote the agent's messages "
            f"while they were read, {self.restore_attempts} times in a row"
        )

    def _p_list_first_step(self, session_id: str, keys: SessionKeys, args: tuple[Any, ...]) -> Plan[Any]:
        """The reply of ``list_messages.lua``'s first step (sent again with all five keys when the
        session turns out to have a multi key, see :meth:`_agent_keys`)."""
        (reply,) = yield from self._p_read(
            "list_messages",
            session_id,
            keys.messages,
            [ScriptCall("list_messages", self._agent_keys(session_id, keys), args)],
        )
        if int(reply[0]) == R_NEEDS_ALL_KEYS:
            self._has_multi(session_id)
            (reply,) = yield from self._p_read(
                "list_messages", session_id, keys.messages, [ScriptCall("list_messages", keys.all(), args)]
            )
        return reply

    def _continued(self, session_id: str, agent_id: str, keys: SessionKeys, status: int, reason: Any) -> bool:
        """Whether a restore's continuation step may go on (1); False: read again from the first
        step; a damaged session raises."""
        if status == R_DAMAGED:
            raise self._damaged_listing(session_id, agent_id, keys, reason)
        if status == R_NEEDS_ALL_KEYS:  # orchestrator state created meanwhile (see _agent_keys)
            self._has_multi(session_id)
        if status != 1:
            logger.debug("session_id=<%s>, agent_id=<%s> | read again: %s", session_id, agent_id, _codec.text(reason))
        return status == 1

    def _p_list_attempt(
        self, session_id: str, agent_id: str, limit: int | None, offset: int
    ) -> Plan[list[SessionMessage] | None]:
        """One read of an agent's messages: None when another writer rewrote some meanwhile.

        The first step (``list_messages.lua``) checks the session, reads the agent's version ``v``,
        its count ``n`` and up to ``restore_step_bytes`` of records, and lists the members of the
        next step. Each further step is one pipeline: ``HMGET`` of the members listed, then the
        script again, which lists the next members and checks that nothing read so far can have
        changed since the first step (see the script). So the result is the slice of the agent's
        messages as they stood at the first step; messages appended since are not included.
        """
        encoded_agent = encode_id(agent_id, "agent_id")
        keys = self.session_keys(session_id)
        low, high = agent_member_range(encoded_agent)
        count = -1 if limit is None else limit
        touch = self._ttl_ms if self._touch_on_read else -1
        most = max(1, min(int(self.restore_step_records), 1000))
        step_bytes = max(1, int(self.restore_step_bytes))
        first_bytes = max(1, min(step_bytes, int(self.restore_first_step_bytes)))
        args = (touch, low, high, offset, count, agent_id, "", most, first_bytes)
        reply = yield from self._p_list_first_step(session_id, keys, args)
        if int(reply[0]) == R_DAMAGED:
            raise self._damaged_listing(session_id, agent_id, keys, reply[1])
        version, stored, stamp, members, *records = reply
        decoder = _MessageDecoder(self, session_id, agent_id, keys)
        decoder.add(records)
        # The slice as the first step counted it: messages appended since are not included.
        end = offset + (max(int(stored) - offset, 0) if limit is None else min(max(int(stored) - offset, 0), limit))
        members = _codec.text(members)
        done = offset + len(records)
        # '+<member>': the agent's ids run on without a gap after that member, so each step's members
        # are named here and the script lists none (the usual case: the SDK numbers messages 0, 1, ...).
        next_id = int(members[1:].rpartition(":")[2]) - (1 << 63) + 1 if members.startswith("+") else None
        if next_id is not None:
            fit = max(1, min(most, step_bytes // max(decoder.mean_size, 1)))
            listed: list[Any] = message_members(encoded_agent, next_id, min(fit, end - done))
        else:
            listed = members.split()
        while listed:
            done += len(listed)
            last = listed[-1]
            # The next step's members: as many as fit the byte budget at the last records' mean size.
            fit = max(1, min(most, step_bytes // max(decoder.mean_size, 1)))
            check = (
                -1,
                low,
                high,
                offset,
                count,
                agent_id,
                last,
                0 if next_id is not None else fit,
                0,
                stamp,
                done,
                version,
            )
            read = CommandCall("hmget", (keys.messages, *listed))
            records, (status, following) = yield Step(
                "list_messages",
                session_id,
                keys.messages,
                [read, ScriptCall("list_messages", self._agent_keys(session_id, keys), check)],
            )
            if not self._continued(session_id, agent_id, keys, int(status), following):
                return None
            if None in records:
                member = next(m for m, r in zip(listed, records, strict=True) if r is None)
                reason = (
                    f"SVSM-MISSING the order index names {_codec.text(member)} "
                    f"but {keys.messages} holds no record for it"
                )
                raise self._damaged_listing(session_id, agent_id, keys, reason)
            decoder.add(records)
            if next_id is not None:
                next_id += len(listed)
                fit = max(1, min(most, step_bytes // max(decoder.mean_size, 1)))
                listed = message_members(encoded_agent, next_id, min(fit, end - done))
            else:
                listed = _codec.text(following).split()[: end - done]
        if limit is None:
            self._saw(session_id, agent_id, version)
        return decoder.messages()

    def _damaged_listing(self, session_id: str, agent_id: str, keys: SessionKeys, reason: Any) -> DamagedSessionError:
        return DamagedSessionError(
            f"session_id=<{session_id}>, agent_id=<{agent_id}>, key=<{keys.messages}> | {_codec.text(reason)}"
        )

    # -- multi-agent orchestrators ------------------------------------------------------------

    def _p_put_multi_agent(self, session_id: str, multi_agent_id: str, state: dict[str, Any]) -> Plan[None]:
        _check_id(multi_agent_id, "multi_agent_id")
        keys = self.session_keys(session_id)
        self._has_multi(session_id)  # its agents' scripts declare the multi key from now on

        def call(seal: _codec.Seal | None, dek: str) -> ScriptCall:
            record = self._sized(_codec.encode_state(state, seal), keys.multi)
            return ScriptCall("put_in_session", keys.all(), (self._ttl_ms, KEY_MULTI, multi_agent_id, record, dek))

        done = yield from self._p_sealed_write("create_multi_agent", session_id, keys.multi, multi_agent_id, call)
        _check_written(done, session_id, keys, "", "create_multi_agent", multi_agent_id=multi_agent_id)

    def _p_create_multi_agent(self, session_id: str, multi_agent: MultiAgentBase) -> Plan[None]:
        yield from self._p_put_multi_agent(session_id, multi_agent.id, multi_agent.serialize_state())

    def _p_read_multi_agent(self, session_id: str, multi_agent_id: str) -> Plan[dict[str, Any] | None]:
        _check_id(multi_agent_id, "multi_agent_id")
        keys = self.session_keys(session_id)
        read = self._read_call(keys, KEY_MULTI, multi_agent_id)
        (raw,) = yield from self._p_read("read_multi_agent", session_id, keys.multi, [read])
        if raw is None:
            return None
        self._has_multi(session_id)
        open_ = self._opener(session_id, keys.multi, _seal.fixed_field(multi_agent_id))
        return self._decoded(partial(_codec.decode_state, open_=open_), raw, session_id, keys.multi)

    def _p_update_multi_agent(self, session_id: str, multi_agent: MultiAgentBase) -> Plan[None]:
        yield from self._p_replace_multi_agent(session_id, multi_agent.id, multi_agent.serialize_state())

    def _p_replace_multi_agent(self, session_id: str, multi_agent_id: str, state: dict[str, Any]) -> Plan[None]:
        _check_id(multi_agent_id, "multi_agent_id")
        keys = self.session_keys(session_id)
        self._has_multi(session_id)

        def call(seal: _codec.Seal | None, dek: str) -> ScriptCall:
            record = self._sized(_codec.encode_state(state, seal), keys.multi)
            args = named(
                "update_record",
                ttl=self._ttl_ms,
                index=KEY_MULTI,
                field=multi_agent_id,
                value=record,
                keep_created="0",
                agent="",
                expected="",
                token="",
                dek=dek,
            )
            return ScriptCall("update_record", keys.all(), args)

        done = yield from self._p_sealed_write("update_multi_agent", session_id, keys.multi, multi_agent_id, call)
        _check_written(done, session_id, keys, "", "update_multi_agent")
        if not done:
            raise SessionException(f"MultiAgent state {multi_agent_id} in session {session_id} does not exist")

    # -- sealing ------------------------------------------------------------------------------

    def _key_context(self, session_id: str) -> dict[str, str]:
        """What a session's wrapped data key is bound to (the key provider's ``context``)."""
        return {"session_id": session_id}

    def _fresh_key(self, session_id: str) -> _seal.DataKey | None:
        """The data key a new session gets (None when not encrypting); the same one until its
        create has an answer, so a repeated create sends the same wrapped key."""
        provider = self._sealer.key_provider
        if provider is None:
            return None
        fresh = self._pending_keys.get(session_id)
        if fresh is None:
            fresh = self._pending_keys[session_id] = _seal.DataKey.fresh(provider, self._key_context(session_id))
        return fresh

    def _discard_fresh_key(self, session_id: str, fresh: _seal.DataKey) -> None:
        """Destroy the key set of a fresh key no session holds (its create was refused): it is the
        set's only key. A key store out of reach leaves it, logged: no stored record or ``dek``
        ever named it, so it opens nothing any copy of the dataset holds."""
        provider = self._sealer.key_provider
        if not isinstance(provider, _seal.ShreddingKeyProvider):
            return
        try:
            provider.destroy(fresh.wrapped, self._key_context(session_id))
        except Exception as e:
            logger.warning(
                "session_id=<%s> | the unused data key of a refused create stays in the key store: %s",
                session_id,
                type(e).__name__,
            )

    def _shred(self, session_id: str, dek: str, *, deleted: bool = False) -> None:
        """Destroy the key set of the session generation ``dek`` (the session hash's field, base64)
        names, when the key provider keeps keys (``encryption.py``); nothing for ``''``. A fresh
        key this repository holds for a create of the session that may have succeeded with that
        very key (its reply lost) is dropped: a later create makes a new one.

        ``deleted``: the session's records are already gone (``prune``), so a failure here leaves
        keys no later listing finds: the error names the session, its ``dek`` and the way to
        destroy them.
        """
        provider = self._sealer.key_provider
        if not dek or not isinstance(provider, _seal.ShreddingKeyProvider):
            return
        pending = self._pending_keys.get(session_id)
        if pending is not None and pending.stored == dek:
            del self._pending_keys[session_id]
        try:
            wrapped = _seal.DataKey.from_stored(dek).wrapped
            provider.destroy(wrapped, self._key_context(session_id))
        except Exception as e:
            if not deleted:
                raise
            raise SessionStoreUnavailableError(
                f"session_id=<{session_id}> | the session was deleted but its data keys could not be destroyed "
                f"in the key store ({type(e).__name__}: {e}); until they are, backups of the dataset still open "
                f"it. Once the key store is reachable, call encryption.destroy_data_keys(repository, "
                f"{session_id!r}, {dek!r}) (the session's dek, a key name: no key material)"
            ) from e

    def _p_read(self, operation: str, session_id: str, key: str, calls: list[Call]) -> Plan[list[Any]]:
        """One round trip of read ``calls``, with ``HGET dek`` added when this repository encrypts:
        the session's data key is learnt from the reply, and a key cached earlier is replaced when
        the session holds another one by now (re-encrypted, re-wrapped, or deleted and created
        again by another process). Returns the replies of ``calls``."""
        if self._sealer.key_provider is None:
            if len(calls) == 1:
                return [(yield Step(operation, session_id, key, calls[0]))]
            return list((yield Step(operation, session_id, key, calls)))
        keys = self.session_keys(session_id)
        *replies, stored = yield Step(operation, session_id, key, [*calls, CommandCall("hget", (keys.session, F_DEK))])
        known = self._data_keys.get(session_id)
        if stored is None:
            self._data_keys.pop(session_id, None)
        elif known is None or known.stored != _codec.text(stored):
            self._data_keys[session_id] = self._stored_key(session_id, stored)
        return list(replies)

    def _stored_key(self, session_id: str, stored: Any) -> _seal.DataKey:
        try:
            return _seal.DataKey.from_stored(stored)
        except _seal.UnsealError as e:
            key = self.session_keys(session_id).session
            raise DecryptionError(f"session_id=<{session_id}>, key=<{key}> | field dek: {e}") from e

    def _p_data_key(self, operation: str, session_id: str) -> Plan[_seal.DataKey]:
        """The session's data key for a write: cached, else read (``HGET dek``), else a new one
        stored by ``session_dek.lua`` (a session created before encryption was turned on).

        Raises:
            SessionException: If the session does not exist.
        """
        known = self._data_keys.get(session_id)
        if known is not None:
            return known
        keys = self.session_keys(session_id)
        stored = yield Step(operation, session_id, keys.session, CommandCall("hget", (keys.session, F_DEK)))
        if stored is None:
            provider = self._sealer.key_provider
            assert provider is not None
            fresh = _seal.DataKey.fresh(provider, self._key_context(session_id))
            call = ScriptCall("session_dek", [keys.session], (fresh.stored, ""))
            stored = yield Step(operation, session_id, keys.session, call)
            if stored is None:
                _check_written(R_SESSION_GONE, session_id, keys, "", operation)
            if _codec.text(stored) == fresh.stored:
                self._data_keys[session_id] = fresh
                return fresh
        data_key = self._data_keys[session_id] = self._stored_key(session_id, stored)
        return data_key

    def _cipher(self, session_id: str) -> _seal.Cipher:
        """The session's cipher for reading (its data key came with the read, see :meth:`_p_read`)."""
        provider = self._sealer.key_provider
        if provider is None:
            raise _seal.UnsealError("the record is encrypted and this repository has no key_provider")
        data_key = self._data_keys.get(session_id)
        if data_key is None:
            raise _seal.UnsealError(
                "the record is encrypted and the session holds no data key (field dek): "
                "the session it was written in was deleted"
            )
        return data_key.cipher(provider, self._key_context(session_id))

    def _p_seal(self, operation: str, session_id: str, key: str, field: str) -> Plan[_codec.Seal | None]:
        """What seals a record stored at ``key``/``field`` (None when sealing is off); fetches the
        session's data key on the first encrypted write of the session."""
        if not self._sealer.active:
            return None
        cipher = None
        if self._sealer.key_provider is not None:
            data_key = yield from self._p_data_key(operation, session_id)
            try:
                cipher = data_key.cipher(self._sealer.key_provider, self._key_context(session_id))
            except _seal.UnsealError as e:
                raise DecryptionError(
                    f"session_id=<{session_id}>, key=<{self.session_keys(session_id).session}> | {e}"
                ) from e
        return self._seal_with(cipher, session_id, key, field)

    def _seal_with(self, cipher: _seal.Cipher | None, session_id: str, key: str, field: str) -> _codec.Seal:
        sealer, binding = self._sealer, _seal.Binding(session_id, key)
        return lambda inner: sealer.seal(inner, cipher, binding, field)

    def _p_sealed_write(
        self,
        operation: str,
        session_id: str,
        key: str,
        field: str,
        call: Callable[[_codec.Seal | None, str], ScriptCall],
    ) -> Plan[Any]:
        """Send the write ``call(seal, dek)`` builds: its record sealed under the session's data key,
        and ``dek`` the wrapped key it was sealed under ('' when not encrypting), which the script
        checks against the session's. When the session holds another key (another process
        re-encrypted it, or deleted and created it again, since this one learnt the key), the
        script refuses (-6): the key is read again and the record sealed again, so no record is
        ever stored under a key the session does not have. Returns the script's reply."""
        if not self._sealer.active:  # the common case: nothing to seal, no data key to check
            reply = yield Step(operation, session_id, key, call(None, ""))
            if reply == R_NEEDS_ALL_KEYS:  # sent again with the multi key (see _agent_keys)
                self._has_multi(session_id)
                reply = yield Step(operation, session_id, key, call(None, ""))
            return reply
        for _ in range(_SEAL_ATTEMPTS):
            seal = yield from self._p_seal(operation, session_id, key, field)
            data_key = self._data_keys.get(session_id) if self._sealer.key_provider is not None else None
            reply = yield Step(operation, session_id, key, call(seal, "" if data_key is None else data_key.stored))
            if reply == R_NEEDS_ALL_KEYS:
                self._has_multi(session_id)
                reply = yield Step(operation, session_id, key, call(seal, "" if data_key is None else data_key.stored))
            if reply is None or int(reply) != R_STALE_DATA_KEY:
                return reply
            self._data_keys.pop(session_id, None)
        return reply  # _check_written raises

    def _opener(self, session_id: str, key: str, field_of: Callable[[dict[str, Any]], str]) -> _codec.Open:
        """What opens sealed records read from ``key``; ``field_of`` names the hash field a
        record's envelope must have been sealed for (raising ``UnsealError`` if it cannot be)."""
        binding = _seal.Binding(session_id, key)
        ciphers: list[_seal.Cipher] = []

        def cipher_for() -> _seal.Cipher:
            if not ciphers:
                ciphers.append(self._cipher(session_id))
            return ciphers[0]

        def open_(blob: Any, envelope: dict[str, Any]) -> bytes:
            return _seal.open_blob(blob, cipher_for, binding, field_of(envelope))

        return open_

    def _p_rotate_wrapping_key(self, session_id: str) -> Plan[bool]:
        """Re-wrap the session's data key with the key provider's current wrapping key; records
        are not touched. False when the session has no data key.

        Raises:
            SessionException: If the session does not exist.
            DecryptionError: If the provider cannot unwrap the stored data key.
        """
        provider = self._sealer.key_provider
        if provider is None:
            raise ValueError("rotate_wrapping_key needs a repository with a key_provider")
        keys = self.session_keys(session_id)
        reads = [CommandCall("hget", (keys.session, F_RECORD)), CommandCall("hget", (keys.session, F_DEK))]
        record, stored = yield Step("rotate_wrapping_key", session_id, keys.session, reads)
        if record is None:
            raise SessionException(f"Session {session_id} does not exist")
        if stored is None:
            return False
        old = self._stored_key(session_id, stored)
        context = self._key_context(session_id)
        try:
            old.cipher(provider, context)
        except _seal.UnsealError as e:
            raise DecryptionError(f"session_id=<{session_id}>, key=<{keys.session}> | {e}") from e
        assert old.key is not None
        new = _seal.DataKey(wrapped=_seal.wrap_beside(provider, old.key, old.wrapped, context), key=old.key)
        call = ScriptCall("session_dek", [keys.session], (new.stored, old.stored))
        now = yield Step("rotate_wrapping_key", session_id, keys.session, call)
        if now is None:
            raise SessionException(f"Session {session_id} does not exist")
        if _codec.text(now) != new.stored:
            raise SessionConflictError(
                f"session_id=<{session_id}>, key=<{keys.session}> | the data key was re-wrapped or replaced "
                "by another writer meanwhile; nothing was written"
            )
        self._data_keys[session_id] = new
        if isinstance(provider, _seal.ShreddingKeyProvider):
            provider.retire(old.wrapped, context)
        logger.info("session_id=<%s> | re-wrapped the session's data key", session_id)
        return True

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
        first time (or the first time after ``AgentExistsError``): a later read may include other
        writers' changes this repository's in-memory agent has not seen, and adopting its version
        would let our next write overwrite them.

        Raises:
            SessionConflictError: If a write found the agent changed by another writer.
        """
        version = int(version)
        if version == R_LOCKED:
            raise SessionLockedError(
                f"session_id=<{session_id}>, agent_id=<{agent_id}> | another owner holds this agent's lease; "
                "nothing was written"
            )
        if version == R_CONFLICT:
            raise SessionConflictError(
                f"session_id=<{session_id}>, agent_id=<{agent_id}> | another writer changed the agent after "
                f"this process read it (expected version {self._expected(session_id, agent_id)}); nothing was "
                "written. Restore the agent (new session manager) and retry."
            )
        if self._versions is not None and (wrote or self._versions.get((session_id, agent_id), _NOT_SEEN) == _NOT_SEEN):
            self._versions[(session_id, agent_id)] = version

    def _token(self, session_id: str, agent_id: str) -> str:
        """The fencing token of our lease on the agent, or '' when we hold none."""
        token = self._lease_tokens.get((session_id, agent_id))
        return "" if token is None else str(token)

    def _p_lease(self, session_id: str, agent_id: str, owner: str, lease_ms: int, op: str) -> Plan[int]:
        """Acquire, renew or release an agent's lease; returns the fencing token.

        Raises:
            SessionLockedError: If another owner holds a live lease (or, renewing, ours was lost).
            SessionException: If the session does not exist.
        """
        _check_id(agent_id, "agent_id")
        keys = self.session_keys(session_id)
        args = (agent_id, owner, lease_ms, op, self._token(session_id, agent_id))
        reply = yield Step(f"{op}_lease", session_id, keys.session, ScriptCall("lease", [keys.session], args))
        code = int(reply[0])
        if code == R_LEASE_NO_SESSION:
            _check_written(R_SESSION_GONE, session_id, keys, agent_id, f"{op}_lease")
        if code == R_LEASE_HELD:
            holder = _codec.text(reply[1])
            self._lease_tokens.pop((session_id, agent_id), None)
            raise SessionLockedError(
                f"session_id=<{session_id}>, agent_id=<{agent_id}> | the agent is locked by owner <{holder}> for "
                f"another {int(reply[2]) / 1000:.1f} s" + (" (our lease was lost)" if op == "renew" else "")
            )
        if op == "release":
            self._lease_tokens.pop((session_id, agent_id), None)
        else:
            self._lease_tokens[(session_id, agent_id)] = code
        return code

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
        except _seal.UnsealError as e:
            raise DecryptionError(f"session_id=<{session_id}>, key=<{key}> | cannot open a sealed record: {e}") from e
        except _codec.CodecError as e:
            raise CorruptRecordError(f"session_id=<{session_id}>, key=<{key}> | not a valid record: {e}") from e


# The version of an agent this repository found created by another process (AgentExistsError):
# no stored version equals it, so writes are refused until a read of the agent sets the version.
_NOT_SEEN = -1
_SEAL_ATTEMPTS = 3
_SHRED_ATTEMPTS = 5


class _MessageDecoder:
    """Decodes the records of one restore step by step (one JSON parse per step), opening sealed
    records. The members are not in the replies: each sealed blob is bound to the member its
    envelope names and ids must rise, so a sealed record copied to another position is refused."""

    def __init__(self, core: SessionCore, session_id: str, agent_id: str, keys: SessionKeys) -> None:
        self._core, self._session_id, self._agent_id, self._keys = core, session_id, agent_id, keys
        self._encoded_agent = encode_id(agent_id, "agent_id")
        self._binding = _seal.Binding(session_id, keys.messages)
        self._cipher: _seal.Cipher | None = None
        self._sealed = False
        self._messages: list[SessionMessage] = []
        #: Mean size in bytes of the last step's records.
        self.mean_size = 0

    def _open_many(self, envelopes: list[dict[str, Any]]) -> list[bytes]:
        fields = []
        for envelope in envelopes:
            message_id = envelope.get("message_id")
            try:
                fields.append(_member(self._encoded_agent, check_message_id(message_id)))
            except ValueError as e:
                raise _seal.UnsealError(f"sealed record with message id {message_id!r}") from e
        self._sealed = True
        return _seal.open_many([e[_codec.SEALED_MARKER] for e in envelopes], fields, self._cipher_for, self._binding)

    def _cipher_for(self) -> _seal.Cipher:
        if self._cipher is None:
            # Called while a step decodes: the key provider may wait on the network.
            with _codec.collector_resumed():
                self._cipher = self._core._cipher(self._session_id)
        return self._cipher

    def _where(self) -> str:
        return f"session_id=<{self._session_id}>, agent_id=<{self._agent_id}>, key=<{self._keys.messages}>"

    @property
    def count(self) -> int:
        """Messages decoded so far."""
        return len(self._messages)

    def add(self, records: Sequence[Any]) -> None:
        """Decode one step's records (bytes, or str from a decoding client) with one JSON parse."""
        if not records:
            return
        raw = "[" + ",".join(records) + "]" if isinstance(records[0], str) else b"[" + b",".join(records) + b"]"
        self.mean_size = len(raw) // len(records)
        try:
            with _codec.collector_paused():
                self._messages.extend(_codec.decode_message_array(raw, self._open_many))
        except _seal.UnsealError as e:
            raise DecryptionError(f"{self._where()} | a stored message cannot be opened: {e}") from e
        except _codec.CodecError as e:
            raise CorruptRecordError(f"{self._where()} | a stored message is not a valid record: {e}") from e

    def messages(self) -> list[SessionMessage]:
        """Every message decoded, after checking that sealed records' ids rise."""
        messages = self._messages
        if self._sealed and any(a.message_id >= b.message_id for a, b in itertools.pairwise(messages)):
            raise DecryptionError(
                f"{self._where()} | message ids do not rise: a sealed record was copied to another position"
            )
        return messages


def _check_written(
    code: Any, session_id: str, keys: SessionKeys, agent_id: str, operation: str, *, multi_agent_id: str = ""
) -> None:
    """Raise the typed error for a write script's refusal codes (-2, -4, -5); nothing was written."""
    code = int(code)
    if code == R_SESSION_GONE:
        raise SessionNotFoundError(
            f"session_id=<{session_id}>, key=<{keys.session}> | {operation}: the session does not exist (it "
            "expired, was deleted or pruned, or the server lost it); nothing was written. Create it again "
            "(a new session manager) to continue."
        )
    where = f"session_id=<{session_id}>" + (f", agent_id=<{agent_id}>" if agent_id else "")
    if code == R_DAMAGED:
        raise DamagedSessionError(
            f"{where}, key=<{keys.session}> | {operation}: the session is damaged: a key it requires (agents, "
            "messages, order or multi) or the agent's record is gone (evicted or deleted); nothing was written. "
            "Inspect it (session_info, svsm show), then delete it or import it again from an export."
        )
    if code == R_STALE_DATA_KEY:
        raise SessionConflictError(
            f"{where}, key=<{keys.session}> | {operation}: the session's data key changed during each attempt "
            "to write (re-encryption, or the session deleted and created again); nothing was written"
        )
    if code == R_AGENT_EXISTS and operation == "create_agent":
        raise AgentExistsError(
            f"{where}, key=<{keys.agents}> | the agent already exists (another process created it after this "
            "one found it missing); nothing was written. Restore it instead."
        )
    if code == R_AGENT_EXISTS and operation == "create_multi_agent":
        raise AgentExistsError(
            f"{where}, multi_agent_id=<{multi_agent_id}>, key=<{keys.multi}> | the multi-agent state already "
            "exists (another process created it "
            "after this one found it missing); nothing was written. Restore it instead."
        )


def _integer(value: Any, field: str, session_id: str, key: str) -> int | None:
    """An integer field of the session hash as read by a client (None when absent).

    Raises:
        CorruptRecordError: If the field holds anything but an integer.
    """
    if value is None:
        return None
    try:
        text = _codec.text(value)
        if not text.lstrip("-").isdigit() or not text.isascii():
            raise ValueError(text)
        return int(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptRecordError(f"session_id=<{session_id}>, key=<{key}> | field {field} is not an integer") from e


def _shape_keys(keys: SessionKeys) -> tuple[tuple[int, tuple[tuple[str, int], ...]], ...]:
    """The bits of the session hash field ``shape`` and the keys each requires, with their index
    among the four keys after the session hash (as ``lua/_prelude.lua`` defines them)."""
    return (
        (SHAPE_AGENTS, ((keys.agents, 0),)),
        (SHAPE_MESSAGES, ((keys.messages, 1), (keys.order, 2))),
        (SHAPE_MULTI, ((keys.multi, 3),)),
    )


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
