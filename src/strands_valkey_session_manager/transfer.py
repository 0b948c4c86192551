"""Copying sessions: fork on the server, export to JSON Lines, import from JSON Lines.

The export format is one JSON object per line, records in the SDK's ``to_dict()`` shape (bytes as
base64 wrappers), so an export reads like the SDK's own files. It is plaintext by design, also for
an encrypted session (records are opened on export and sealed again on import, under the target
session's own data key)::

    {"kind": "session", "format": 2, "session": {...}, "user_id": ..., "tags": [...],
     "ttl_ms": <sliding TTL, 0: none>, "deadline_ms": <unix ms the session ends at, 0: none>}
    {"kind": "agent", "agent": {...}}
    {"kind": "message", "agent_id": "...", "message": {...}}
    {"kind": "multi_agent", "id": "...", "state": {...}}
    {"kind": "end", "agents": n, "messages": n, "multi_agents": n, "records": n, "sha256": "<hex>"}

The end line counts the records above it and carries the SHA-256 of their lines (each line's text
and a newline), so an import refuses a truncated or altered file, naming the line, before it
writes anything. Exports of format 1 (before lifetime and end line) still import, unchecked.
"""

from __future__ import annotations

import copy
import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import cache, partial
from typing import TYPE_CHECKING, Any

from strands.types.exceptions import SessionException
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from . import _codec, _seal, catalog
from ._client import CommandCall, Plan, ScriptCall, Step
from ._keys import catalog_member, check_message_id, encode_id, message_member
from ._lifetime import created_ms, now_ms
from ._schema import (
    F_DEADLINE,
    F_DEK,
    F_RECORD,
    F_TAGS,
    F_TTL,
    F_USER,
    KEY_AGENTS,
    KEY_MULTI,
    R_STALE_DATA_KEY,
    named,
)
from .catalog import expected_expiry
from .exceptions import DecryptionError, SessionConflictError, SessionNotFoundError

if TYPE_CHECKING:
    from ._core import SessionCore

EXPORT_FORMAT = 2
#: Formats :func:`parse_export` reads (1: no lifetime and no end line).
_FORMATS = (1, 2)
# Writes per pipeline when importing: bounded so no request grows without limit.
_IMPORT_BATCH = 500
#: How long the staging keys of an import that overwrites may live (a failed import's leftovers).
STAGING_TTL_MS = 3_600_000


@dataclass
class SessionExport:
    """A parsed, validated export."""

    session: Session
    user_id: str | None = None
    tags: tuple[str, ...] = ()
    agents: list[SessionAgent] = field(default_factory=list)
    messages: dict[str, list[SessionMessage]] = field(default_factory=dict)
    multi_agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The session's sliding TTL and deadline (unix ms), 0 for none; ``None``: not known (an export
    #: of format 1), so the importing repository's own lifetime applies.
    ttl_ms: int | None = None
    deadline_ms: int | None = None
    #: Whether the export ended with its end line, counts and checksum checked (format 2).
    checked: bool = False
    #: Message ids met per agent while parsing (duplicates are refused).
    message_ids: dict[str, set[int]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def message_count(self) -> int:
        """Messages over all agents."""
        return sum(len(m) for m in self.messages.values())


# -- plans (see ``_core.py``): functions of the repository core, run by the sync and asyncio faces


def p_fork_session(
    core: SessionCore, source_id: str, target_id: str, user_id: str | None, tags: Sequence[str] | None
) -> Plan[None]:
    """Copy a session to a new id (see ``ValkeySessionRepository.fork_session``).

    Raises:
        SessionNotFoundError: If the source does not exist (a ``SessionException``).
        SessionException: If the target exists.
    """
    if source_id == target_id:
        raise ValueError(f"session_id=<{source_id}> | cannot fork a session onto itself")
    source = core.session_keys(source_id)
    encode_id(target_id, "session_id")
    # HGETALL for the fields read here, then DUMPs of the four data keys and the session hash.
    dumped = (source.agents, source.messages, source.order, source.multi, source.session)
    reads = [CommandCall("hgetall", (source.session,))] + [CommandCall("dump", (k,)) for k in dumped]
    reply = yield Step("fork_session", source_id, source.session, reads)
    fields = {_codec.text(k): v for k, v in reply[0].items()}
    if F_RECORD not in fields:
        raise SessionNotFoundError(f"Session {source_id} does not exist")
    origin = core._decoded(_codec.decode_session, fields[F_RECORD], source_id, source.session)
    now = datetime.now(timezone.utc).isoformat()
    session = Session(session_id=target_id, session_type=origin.session_type, created_at=now, updated_at=now)
    payloads = [b"" if p is None else p for p in reply[1:5]]
    if user_id is None and F_USER in fields:
        user_id = _codec.text(fields[F_USER])
    if tags is None and fields.get(F_TAGS):
        tags = tuple(_codec.loads(fields[F_TAGS]))
    if F_DEK in fields:
        # Encrypted records are bound to their session: copy them by opening and sealing again.
        yield from _p_reseal_fork(core, source_id, session, user_id, tags)
        return
    if not (yield from core._p_create(session, user_id, tags, payloads, reply[5])):
        raise SessionException(f"Session {target_id} already exists")


def _p_reseal_fork(
    core: SessionCore, source_id: str, session: Session, user_id: str | None, tags: Sequence[str] | None
) -> Plan[None]:
    """Fork of an encrypted session: read it whole, write it under the target's own data key."""
    if core._sealer.key_provider is None:
        raise DecryptionError(
            f"session_id=<{source_id}>, key=<{core.session_keys(source_id).session}> | the session is "
            "encrypted: fork it with a repository that has its key_provider"
        )
    source = yield from p_export_records(core, source_id)
    target = SessionExport(
        session=session,
        agents=source.agents,
        messages=source.messages,
        multi_agents=source.multi_agents,
    )
    calls = _import_calls(core, target)
    if not (yield from core._p_create(session, user_id, tags)):
        raise SessionException(f"Session {session.session_id} already exists")
    yield from _p_write_batches(core, session.session_id, calls)


def p_export_records(core: SessionCore, session_id: str) -> Plan[SessionExport]:
    """A whole session, records opened (see ``ValkeySessionRepository.export_records``).

    Raises:
        SessionNotFoundError: If the session does not exist (a ``SessionException``).
    """
    info = yield from catalog.p_session_info(core._layout, session_id)
    session = yield from core._p_read_session(session_id)
    if info is None or session is None:
        raise SessionNotFoundError(f"Session {session_id} does not exist")
    keys = core.session_keys(session_id)
    reads = [
        CommandCall("hgetall", (keys.agents,)),
        CommandCall("hgetall", (keys.multi,)),
        CommandCall("hmget", (keys.session, F_TTL, F_DEADLINE)),
    ]
    agents_raw, multi_raw, lifetime = yield Step("export_session", session_id, f"{keys.agents}, {keys.multi}", reads)
    ttl_ms, deadline_ms = (int(_codec.text(v)) if v not in (None, b"", "") else 0 for v in lifetime)
    agents = sorted(
        (
            core._decoded(
                partial(_codec.decode_agent, open_=core._opener(session_id, keys.agents, _seal.agent_field(k))),
                v,
                session_id,
                keys.agents,
            )
            for k, v in agents_raw.items()
        ),
        key=lambda a: a.agent_id,
    )
    messages = {}
    for agent in agents:
        messages[agent.agent_id] = yield from core._p_list_messages(session_id, agent.agent_id, None, 0)
    return SessionExport(
        session=session,
        user_id=info.user_id,
        tags=info.tags,
        ttl_ms=ttl_ms,
        deadline_ms=deadline_ms,
        agents=agents,
        messages=messages,
        multi_agents={
            _codec.text(k): core._decoded(
                partial(
                    _codec.decode_state,
                    open_=core._opener(session_id, keys.multi, _seal.fixed_field(_codec.text(k))),
                ),
                v,
                session_id,
                keys.multi,
            )
            for k, v in sorted(multi_raw.items())
        },
    )


def p_import_session(core: SessionCore, jsonl: str | bytes | Iterable[str], overwrite: bool) -> Plan[str]:
    """Parse an export and write it (see :func:`p_write_export`); the session's id."""
    export = parse_export(jsonl)
    yield from p_write_export(core, export, overwrite)
    return export.session.session_id


def p_write_export(core: SessionCore, export: SessionExport, overwrite: bool = False) -> Plan[None]:
    """Write an export into a new session, or (``overwrite``) in place of whatever the id holds:
    staged beside it, then swapped in one atomic step."""
    writes = _import_calls(core, export)  # sizes checked before anything is written
    if overwrite:
        yield from _p_staged_import(core, export, writes)
        return
    session_id = export.session.session_id
    if (yield from core._p_read_session(session_id)) is not None:
        raise SessionException(f"Session {session_id} already exists; pass overwrite=True to replace it")
    yield from _p_write_calls(core, export, writes)


def _p_staged_import(core: SessionCore, export: SessionExport, writes: list[ScriptCall]) -> Plan[None]:
    """Import that overwrites, all or nothing: the records are written under the staging keys
    (``KeyLayout.staging``: the session's slot, not listed, expiring within ``STAGING_TTL_MS``),
    then ``swap_session.lua`` replaces the session's keys by them in one step. A failure before
    the swap leaves the original untouched; leftovers are removed by the next staging (or by
    :func:`p_drop_staging`) and expire anyway. Round trips: 1 + writes/500 + 1 (+1 to unlist the
    replaced session's entries when they differ)."""
    session = export.session
    session_id = session.session_id
    keys, stage = core.session_keys(session_id), core._layout.staging(session_id)
    owner = core._user_id if export.user_id is None else export.user_id
    labels = tuple(dict.fromkeys(export.tags))
    indexes = core._layout.catalog_indexes(session_id, owner, labels)  # checks the ids
    record = core._sized(_codec.encode_session(session), keys.session)
    fresh = core._fresh_key(session_id)
    created = created_ms(session.created_at)
    member = catalog_member(created, session_id)
    nonce = secrets.token_hex(12)
    ttl_ms, deadline = _lifetime_of(export, created, core._ttl_ms, core._max_age_ms)
    expiry, expiry_entry = catalog.expiry_calls(
        core._layout, session_id, member, owner, labels, expires_ms=expected_expiry(ttl_ms, deadline)
    )
    args = named(
        "create_session",
        ttl=0,
        record=record,
        created=created,
        deadline=now_ms() + STAGING_TTL_MS,  # staging keys never outlive a failed import by long
        user=owner or "",
        tags=_codec.dumps_list(labels),
        member=member,
        dump_agents=b"",
        dump_messages=b"",
        dump_order=b"",
        dump_multi=b"",
        dump_session=b"",
        nonce=nonce,
        dek="" if fresh is None else fresh.stored,
        clear="1",  # leftovers of an earlier failed staging first
        expiry=expiry_entry,
    )
    staged = yield Step("import_session", session_id, stage.session, ScriptCall("create_session", stage.all(), args))
    if staged != 1:
        raise SessionException(f"session_id=<{session_id}>, key=<{stage.session}> | import could not stage")
    yield from _p_write_batches(core, session_id, [ScriptCall(c.name, stage.all(), c.args) for c in writes])
    calls: list[CommandCall | ScriptCall] = [
        *expiry,
        *(CommandCall("zadd", (index, {member: 0})) for index in indexes),
        ScriptCall("swap_session", [*keys.all(), *stage.all()], (ttl_ms, deadline, nonce)),
    ]
    due, *_, swapped = yield Step("import_session", session_id, keys.session, calls)
    if int(swapped[0]) != 1:
        raise SessionException(
            f"session_id=<{session_id}>, key=<{stage.session}> | import interrupted: its staged copy was "
            "replaced by another import or expired; the session was not changed"
        )
    core._pending_keys.pop(session_id, None)
    core._data_keys.pop(session_id, None)
    if fresh is not None:
        core._data_keys[session_id] = fresh
    old_member, old_owner, old_labels, old_dek, old_expiry = (_codec.text(v) for v in swapped[1:])
    if old_expiry and old_expiry != expiry_entry:
        expiry_index = core._layout.catalog_expiry(core._layout.catalog_shard(session_id))
        yield Step("import_session", session_id, expiry_index, CommandCall("zrem", (expiry_index, old_expiry)))
    if old_member:
        old_tags = tuple(_codec.loads(old_labels)) if old_labels else ()
        kept = set(indexes) if old_member == member else set()
        unlist = [
            CommandCall("zrem", (index, old_member))
            for index in core._layout.catalog_indexes(session_id, old_owner or None, old_tags)
            if index not in kept
        ]
        if unlist:
            yield Step("import_session", session_id, keys.session, unlist)
    if due:
        yield from catalog.p_sweep_due(core._layout, due)
    provider = core._sealer.key_provider
    if old_dek and isinstance(provider, _seal.ShreddingKeyProvider):
        # The replaced session's data keys open nothing stored any more: destroy its key set.
        core._shred(session_id, old_dek, deleted=True)


def p_drop_staging(core: SessionCore, session_id: str) -> Plan[None]:
    """Remove what a failed import left under the staging keys (harmless: unlisted, expiring)."""
    stage = core._layout.staging(session_id)
    yield Step("import_session", session_id, stage.session, ScriptCall("delete_session", stage.all()))


def _import_calls(core: SessionCore, export: SessionExport) -> list[ScriptCall]:
    """The writes of an export, encoded, sealed and size-checked (raises before any I/O).

    Records are sealed (when this repository seals) under the data key the session's create
    will store, so the same fresh key serves the records and ``create_session.lua``; each write
    names that key, and the scripts refuse it if the session holds another by then (re-encrypted
    meanwhile: see :func:`_p_write_batches`).
    """
    session_id = export.session.session_id
    keys = core.session_keys(session_id)
    fresh = core._fresh_key(session_id)
    cipher = None if fresh is None else fresh.cipher(None, {})
    dek = "" if fresh is None else fresh.stored

    def seal(key: str, field: str) -> _codec.Seal | None:
        return core._seal_with(cipher, session_id, key, field) if core._sealer.active else None

    calls: list[ScriptCall] = []
    for agent in export.agents:
        record = core._sized(_codec.encode_agent(agent, seal(keys.agents, agent.agent_id)), keys.agents)
        calls.append(ScriptCall("put_in_session", keys.all(), (core._ttl_ms, KEY_AGENTS, agent.agent_id, record, dek)))
    for agent_id, messages in export.messages.items():
        encoded_agent = encode_id(agent_id, "agent_id")
        for message in messages:
            member = message_member(encoded_agent, check_message_id(message.message_id))
            record = core._sized(_codec.encode_message(message, seal(keys.messages, member)), keys.messages)
            calls.append(
                ScriptCall("append_message", keys.all(), (core._ttl_ms, agent_id, member, record, "", "", dek))
            )
    for multi_id, state in export.multi_agents.items():
        record = core._sized(_codec.encode_state(state, seal(keys.multi, multi_id)), keys.multi)
        calls.append(ScriptCall("put_in_session", keys.all(), (core._ttl_ms, KEY_MULTI, multi_id, record, dek)))
    return calls


def _p_write_calls(core: SessionCore, export: SessionExport, calls: list[ScriptCall]) -> Plan[None]:
    session_id = export.session.session_id
    # The export's lifetime instead of this repository's (an export of format 1 carries none).
    lifetime = None if export.ttl_ms is None else _lifetime_of(export, created_ms(export.session.created_at), 0, 0)
    if not (yield from core._p_create(export.session, export.user_id, export.tags, lifetime=lifetime)):
        raise SessionException(f"Session {session_id} already exists")
    yield from _p_write_batches(core, session_id, calls)


def _p_write_batches(core: SessionCore, session_id: str, calls: list[ScriptCall]) -> Plan[None]:
    keys = core.session_keys(session_id)
    for start in range(0, len(calls), _IMPORT_BATCH):
        results = yield Step("import_session", session_id, keys.session, calls[start : start + _IMPORT_BATCH])
        for result in results:
            if result == R_STALE_DATA_KEY:
                raise SessionConflictError(
                    f"session_id=<{session_id}>, key=<{keys.session}> | copy interrupted: the session was "
                    "re-encrypted by another process while its records were written; the records written "
                    "before are readable, none is stored under a retired key. Delete it and copy again."
                )
            if not isinstance(result, int) or result <= 0:
                raise SessionException(f"session_id=<{session_id}> | import interrupted: session vanished")


def _lifetime_of(export: SessionExport, created: int, ttl_ms: int, max_age_ms: int) -> tuple[int, int]:
    """TTL and deadline (ms, 0: none) an imported session gets: the export's when it carries them,
    else the importing repository's (``ttl_ms``, ``max_age_ms`` from creation)."""
    if export.ttl_ms is not None:
        return export.ttl_ms, export.deadline_ms or 0
    return ttl_ms, created + max_age_ms if max_age_ms else 0


def export_lines(export: SessionExport) -> Iterable[str]:
    """The JSON Lines of an export, one object per line, the end line last."""
    digest = hashlib.sha256()
    records = 0

    def counted(line: str) -> str:
        nonlocal records
        digest.update(line.encode("utf-8", "surrogatepass") + b"\n")
        records += 1
        return line

    yield counted(
        _line(
            {
                "kind": "session",
                "format": EXPORT_FORMAT,
                "session": export.session.to_dict() | {"session_type": export.session.session_type.value},
                "user_id": export.user_id,
                "tags": list(export.tags),
                "ttl_ms": export.ttl_ms or 0,
                "deadline_ms": export.deadline_ms or 0,
            }
        )
    )
    for agent in export.agents:
        yield counted(_line({"kind": "agent", "agent": agent}))
        for message in export.messages.get(agent.agent_id, []):
            yield counted(_line({"kind": "message", "agent_id": agent.agent_id, "message": message}))
    for multi_id, state in export.multi_agents.items():
        yield counted(_line({"kind": "multi_agent", "id": multi_id, "state": state}))
    yield _end(export.message_count, len(export.agents), len(export.multi_agents), records, digest.hexdigest())


def _end(messages: int, agents: int, multi_agents: int, records: int, sha256: str) -> str:
    return _codec.dumps(
        {
            "kind": "end",
            "agents": agents,
            "messages": messages,
            "multi_agents": multi_agents,
            "records": records,
            "sha256": sha256,
        }
    ).decode()


def end_line(records: Sequence[str], *, agents: int, messages: int, multi_agents: int) -> str:
    """The end line for record lines written by hand (tests, tools that edit an export)."""
    digest = hashlib.sha256()
    for line in records:
        digest.update(line.encode("utf-8", "surrogatepass") + b"\n")
    return _end(messages, agents, multi_agents, len(records), digest.hexdigest())


def renamed_export(export: SessionExport, session_id: str) -> SessionExport:
    """The same export under another session id (records carry no session id; timestamps, owner,
    tags and lifetime stay as exported).

    Raises:
        ValueError: If ``session_id`` is not a valid session id.
    """
    encode_id(session_id, "session_id")
    session = copy.copy(export.session)
    session.session_id = session_id
    return replace(export, session=session)


def _line(obj: dict[str, Any]) -> str:
    value = {k: (v.to_dict() if isinstance(v, (SessionAgent, SessionMessage)) else v) for k, v in obj.items()}
    return _codec.dumps(value).decode()


def parse_export(jsonl: str | bytes | Iterable[str]) -> SessionExport:
    """Parse and validate an export.

    Raises:
        ValueError: If a line is not JSON or not a valid record; the message names the line.
    """
    if isinstance(jsonl, bytes):
        jsonl = jsonl.decode("utf-8")
    lines = jsonl.splitlines() if isinstance(jsonl, str) else list(jsonl)
    export: SessionExport | None = None
    digest = hashlib.sha256()
    records = 0
    number = 0
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        try:
            if export is not None and export.checked:
                raise ValueError("a record after the end line")
            obj = _codec.loads(line)
            if not isinstance(obj, dict):
                raise _codec.CodecError("not a JSON object")
            if obj.get("kind") == "end" and export is not None:
                _check_end(export, obj, records, digest.hexdigest())
                export.checked = True
                continue
            export = _apply(export, obj)
        except (_codec.CodecError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"line {number}: not a valid export record: {e}") from e
        digest.update(line.encode("utf-8", "surrogatepass") + b"\n")
        records += 1
    if export is None:
        raise ValueError("empty export: no session line")
    if export.ttl_ms is not None and not export.checked:  # format 2 ends with its end line
        raise ValueError(
            f"line {number + 1}: the export ends without its end line: the file is truncated (or not an export)"
        )
    return export


def _check_end(export: SessionExport, obj: dict[str, Any], records: int, sha256: str) -> None:
    """Compare the end line with what was read above it."""
    found = {
        "records": records,
        "agents": len(export.agents),
        "messages": export.message_count,
        "multi_agents": len(export.multi_agents),
    }
    for name, count in found.items():
        if obj.get(name) != count:
            raise ValueError(
                f"the end line counts {obj.get(name)!r} {name.replace('_', ' ')}, the file holds {count}: "
                "lines are missing or were added"
            )
    if obj.get("sha256") != sha256:
        raise ValueError("the checksum of the end line does not match the lines above it: the file was changed")


def _session_line(obj: dict[str, Any]) -> SessionExport:
    """The export a session line starts (format 1 or 2)."""
    if obj.get("format") not in _FORMATS:
        raise ValueError(f"unsupported format {obj.get('format')!r}")
    data = obj["session"]
    session = Session(
        session_id=data["session_id"],
        session_type=SessionType(data["session_type"]),
        created_at=data["created_at"],
        updated_at=data["updated_at"],
    )
    encode_id(session.session_id, "session_id")
    _check_time(session.created_at, "session created_at")
    _check_time(session.updated_at, "session updated_at")
    user_id = obj.get("user_id")
    tags = obj.get("tags") or []
    if user_id is not None and not isinstance(user_id, str):
        raise TypeError("user_id must be a str")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise TypeError("tags must be a list of str")
    if obj["format"] == 1:
        return SessionExport(session=session, user_id=user_id, tags=tuple(tags))
    ttl_ms, deadline_ms = obj["ttl_ms"], obj["deadline_ms"]
    for name, value in (("ttl_ms", ttl_ms), ("deadline_ms", deadline_ms)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise TypeError(f"{name} must be a non-negative integer (ms)")
    if deadline_ms and deadline_ms <= now_ms():
        ended = datetime.fromtimestamp(deadline_ms / 1000, timezone.utc).isoformat(timespec="seconds")
        raise ValueError(f"the session's deadline ({ended}) has passed: it would expire at once")
    return SessionExport(session=session, user_id=user_id, tags=tuple(tags), ttl_ms=ttl_ms, deadline_ms=deadline_ms)


def _apply(export: SessionExport | None, obj: dict[str, Any]) -> SessionExport:
    kind = obj.get("kind")
    if kind == "session":
        if export is not None:
            raise ValueError("a second session line")
        return _session_line(obj)
    if export is None:
        raise ValueError("the first line must be the session line")
    if kind == "agent":
        agent = _codec.agent_from_dict(_record(obj, "agent", SessionAgent))
        encode_id(agent.agent_id, "agent_id")
        _check_agent(agent)
        if agent.agent_id in export.messages:
            raise ValueError(f"a second agent line for agent {agent.agent_id!r}")
        export.agents.append(agent)
        export.messages.setdefault(agent.agent_id, [])
    elif kind == "message":
        agent_id = obj["agent_id"]
        if not isinstance(agent_id, str) or agent_id not in export.messages:
            raise ValueError(f"message for agent {agent_id!r} before its agent line")
        message = _codec.message_from_dict(_record(obj, "message", SessionMessage))
        _check_message(message)
        seen = export.message_ids.setdefault(agent_id, set())
        if message.message_id in seen:
            raise ValueError(f"a second message with id {message.message_id} for agent {agent_id!r}")
        seen.add(message.message_id)
        export.messages[agent_id].append(message)
    elif kind == "multi_agent":
        state = obj["state"]
        if not isinstance(state, dict):
            raise TypeError("multi_agent state must be an object")
        export.multi_agents[encode_id(obj["id"], "multi_agent_id") and obj["id"]] = state
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return export


# -- validation: every record as the SDK restores it ----------------------------------------------


def _record(obj: dict[str, Any], name: str, cls: type[SessionAgent] | type[SessionMessage]) -> dict[str, Any]:
    """The record under ``name``, after the SDK's own ``from_dict`` accepted it (required fields)."""
    data = obj[name]
    if not isinstance(data, dict):
        raise TypeError(f"{name} must be an object")
    cls.from_dict(data)  # TypeError on a missing required field, as the SDK's own stores would raise
    return data


def _check_time(value: Any, what: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be an ISO timestamp string, not {type(value).__name__}")
    datetime.fromisoformat(value)  # ValueError names the text


def _check_agent(agent: SessionAgent) -> None:
    """What ``RepositorySessionManager`` needs to restore the agent."""
    for name in ("state", "conversation_manager_state", "_internal_state"):
        if not isinstance(getattr(agent, name), dict):
            raise TypeError(f"agent {name} must be an object")
    # An Agent's record (the SDK writes its interrupt state) restores its conversation manager, which
    # refuses a state without its class name; other records (written through a repository directly,
    # or by non-Agent LocalAgents) hold whatever state their writer gave, and import as exported.
    restores_manager = "interrupt_state" in agent._internal_state
    manager = agent.conversation_manager_state.get("__name__")
    if restores_manager and (not isinstance(manager, str) or not manager):
        raise ValueError(
            "agent conversation_manager_state has no '__name__' (the conversation manager's class): "
            "the SDK cannot restore it"
        )
    _check_time(agent.created_at, "agent created_at")
    _check_time(agent.updated_at, "agent updated_at")


def _check_message(message: SessionMessage) -> None:
    """The SDK's ``Message`` type (role, content blocks), checked by pydantic as the SDK declares it."""
    if not isinstance(message.message_id, int) or isinstance(message.message_id, bool):
        raise ValueError(f"message id {message.message_id!r} is not an integer")
    check_message_id(message.message_id)
    adapter = _message_adapter()
    for name in ("message", "redact_message"):
        value = getattr(message, name)
        if value is None and name == "redact_message":
            continue
        try:
            adapter.validate_python(value)
        except ValueError as e:  # pydantic's ValidationError
            first = str(e).splitlines()
            raise ValueError(f"{name} is not a Strands Message: {' '.join(first[:3])}") from e
    _check_time(message.created_at, "message created_at")
    _check_time(message.updated_at, "message updated_at")


@cache
def _message_adapter() -> Any:
    from pydantic import TypeAdapter
    from strands.types.content import Message

    return TypeAdapter(Message)
