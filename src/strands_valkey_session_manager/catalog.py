"""The session catalog: listing sessions newest-first, by owner or tag, without SCAN.

Each session is listed in a few lexicographic zsets (see ``_keys.KeyLayout.catalog_index``) whose
members are ``<created ms, 15 digits>:<encoded session id>``, so reverse lex order is newest-first
and a member is its own cursor. The entries are written in the same pipeline as the session and
removed when it is deleted; an entry whose session has expired (or never got written) is
dropped when a listing meets it.

Sessions with a lifetime are also filed in their shard's expiry index (``catalog_expiry``, same
slot as the shard) under the expiry known at create. Every create sweeps up to
``SWEEP_PER_CREATE`` due entries of its own shard (checking that each session is really gone, and
filing a session that lives on under its current expiry), and ``sweep_catalog``/``prune`` sweep
every shard, so the catalog of expired sessions empties without anyone listing it.

A damaged session (a key of the wrong type, leftover keys after its session hash was evicted) is
skipped by listings and reported in :attr:`SessionPage.damaged`; it never fails the listing.

The operations are plans (see ``_core.py``): functions of the key layout (or, for deletes, of the
repository core, whose data-key caches they update) returning generators of round trips, which
the synchronous and asyncio repositories run.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from . import _codec
from ._client import CommandCall, Plan, ScriptCall, Step
from ._keys import (
    CATALOG_SHARDS,
    KeyLayout,
    SessionKeys,
    expiry_member,
    parse_expiry_member,
    session_id_of_member,
)
from ._lifetime import Duration, now_ms, to_ms
from ._schema import F_CATALOG, F_CREATED, F_TAGS, F_UPDATED, F_USER, count_field
from .exceptions import CorruptRecordError, DamagedSessionError

if TYPE_CHECKING:
    from ._core import SessionCore

MAX_PAGE = 1000
#: Due expiry entries a create sweeps in its own shard.
SWEEP_PER_CREATE = 8
# Due expiry entries read per shard and pass by sweep_catalog.
_SWEEP_PAGE = 100


@dataclass(frozen=True)
class SessionInfo:
    """What the catalog knows of one session."""

    session_id: str
    created_at: datetime
    updated_at: datetime
    user_id: str | None
    tags: tuple[str, ...]
    #: Messages stored per agent id (agents without messages count 0).
    message_counts: dict[str, int] = field(default_factory=dict)
    #: Seconds until the session expires, or ``None`` when it does not expire.
    expires_in: float | None = None
    #: The session's catalog member (``<created ms>:<encoded id>``), as stored in its hash.
    catalog_member: str = field(default="", compare=False, repr=False)

    @property
    def agent_ids(self) -> list[str]:
        """Ids of the session's agents, sorted."""
        return sorted(self.message_counts)

    @property
    def message_count(self) -> int:
        """Messages stored over all agents."""
        return sum(self.message_counts.values())


@dataclass(frozen=True)
class DamagedSession:
    """A listed session whose keys cannot be read as a session: skipped, reported."""

    session_id: str
    #: The key at fault (the session hash when it is missing and other keys remain).
    key: str
    #: What is wrong: the server's error for a key of the wrong type, or which keys are left over.
    reason: str


@dataclass(frozen=True)
class SessionPage:
    """One page of ``list_sessions``."""

    sessions: list[SessionInfo]
    #: Pass to ``list_sessions(cursor=...)`` for the next page; ``None`` when there is none.
    cursor: str | None
    #: Damaged sessions met on this page, skipped (delete them with ``delete_session``).
    damaged: list[DamagedSession] = field(default_factory=list)


def damaged_leftovers(session_id: str, keys: SessionKeys, indexes: Sequence[Any]) -> DamagedSessionError:
    """The error of a create refused because keys of a session whose hash is gone remain."""
    left = [keys.all()[int(i) - 1] for i in indexes]
    return DamagedSessionError(
        f"session_id=<{session_id}>, key=<{keys.session}> | the session hash is missing but other keys of the "
        f"session remain ({', '.join(left)}): they hold the rest of a conversation, so nothing was written. "
        "Delete the session (delete_session, svsm delete) or import over it (import_session overwrite=True)"
    )


# -- plans (see ``_core.py``): generators of round trips, run by the sync and asyncio faces --------


def p_session_info(layout: KeyLayout, session_id: str) -> Plan[SessionInfo | None]:
    """The catalog view of one session (None when it does not exist). One round trip.

    Raises:
        DamagedSessionError: If keys of the session are gone or of the wrong type.
        CorruptRecordError: If a field of the session hash is not what this package writes.
    """
    keys = layout.session(session_id)
    reply = yield Step("session_info", session_id, keys.session, ScriptCall("session_info", keys.all()))
    if reply is None:
        return None
    damaged = _damage(session_id, keys, reply)
    if damaged is not None:
        raise DamagedSessionError(f"session_id=<{session_id}>, key=<{damaged.key}> | {damaged.reason}")
    try:
        return _fields(session_id, reply)
    except _BAD_FIELDS as e:
        raise CorruptRecordError(f"session_id=<{session_id}>, key=<{keys.session}> | {_invalid(e)}") from e


def p_list_sessions(
    layout: KeyLayout, user_id: str | None, tag: str | None, cursor: str | None, limit: int
) -> Plan[SessionPage]:
    """A page of sessions, newest first (see ``ValkeySessionRepository.list_sessions``)."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit=<{limit!r}> | limit must be an int from 1 to {MAX_PAGE}")
    if cursor is not None and not isinstance(cursor, str):
        raise ValueError(f"cursor=<{cursor!r}> | cursor must be a str from a previous page")
    index_tag = None if user_id is not None else tag
    indexes = [layout.catalog_index(s, user_id=user_id, tag=index_tag) for s in range(CATALOG_SHARDS)]
    start = "+" if cursor is None else f"({cursor}"
    found: list[SessionInfo] = []
    damaged: list[DamagedSession] = []
    candidates: list[str] = []
    while len(found) < limit:
        want = limit - len(found)
        reads = [CommandCall("zrevrangebylex", (i, start, "-", 0, want)) for i in indexes]
        replies = yield Step("list_sessions", "*", indexes[0], reads)
        shards = [[_codec.text(m) for m in reply] for reply in replies]
        candidates = list(heapq.merge(*shards, reverse=True))[:want]
        if not candidates:
            return SessionPage(found, None, damaged)
        tag_filter = tag if user_id is not None else None
        found.extend((yield from _p_resolve(layout, candidates, indexes, tag_filter, damaged)))
        start = f"({candidates[-1]}"
        if len(candidates) < want:  # every shard is exhausted
            return SessionPage(found, None, damaged)
    return SessionPage(found, candidates[-1], damaged)


def p_prune(
    core: SessionCore,
    older_than: Duration,
    dry_run: bool,
    on_session: Callable[[SessionInfo, bool], None] | None,
    on_damaged: Callable[[DamagedSession], None] | None = None,
) -> Plan[int]:
    """Delete every session idle for ``older_than`` (see ``ValkeySessionRepository.prune``)."""
    cutoff = now_ms() - to_ms(older_than, "older_than")
    layout = core._layout
    if not dry_run:
        yield from p_sweep_catalog(layout)
    doomed = 0
    cursor: str | None = None
    while True:
        page = yield from p_list_sessions(layout, None, None, cursor, 200)
        for info in page.sessions:
            stale = _ms(info.updated_at) < cutoff
            if stale and not dry_run:
                # The delete checks again, in its own atomic step, that the session is still
                # idle and still the one listed: a write after the listing keeps it.
                stale = yield from p_delete_idle(core, info, cutoff)
            doomed += stale
            if on_session is not None:
                on_session(info, stale)
        if on_damaged is not None:
            for entry in page.damaged:
                on_damaged(entry)
        if page.cursor is None:
            return doomed
        cursor = page.cursor


def p_delete_idle(core: SessionCore, info: SessionInfo, cutoff: int) -> Plan[bool]:
    """Delete a session only if it is still idle since before ``cutoff`` and still listed under
    the same member; True when deleted. Its data keys kept outside the dataset are destroyed
    after the delete (a session kept must keep them)."""
    session_id = info.session_id
    keys = core.session_keys(session_id)
    call = ScriptCall("delete_session", keys.all(), (cutoff, info.catalog_member))
    entry = yield Step("delete_session", session_id, keys.session, call)
    if entry is None or entry == 0:
        return False  # gone meanwhile, or written since the listing
    core._data_keys.pop(session_id, None)
    core._shred(session_id, _codec.text(entry[4]) if len(entry) > 4 else "", deleted=True)
    unlist = unlist_calls(core._layout, session_id, entry)
    if unlist:
        yield Step("delete_session", session_id, str(unlist[0].args[0]), unlist)
    return True


def unlist_calls(layout: KeyLayout, session_id: str, entry: Sequence[Any]) -> list[CommandCall]:
    """The ZREMs of a deleted session's catalog entries (and expiry entry), from
    ``delete_session.lua``'s reply."""
    member, owner, labels, *rest = (_codec.text(v) for v in entry)
    calls = []
    if rest and rest[0]:
        index = layout.catalog_expiry(layout.catalog_shard(session_id))
        calls.append(CommandCall("zrem", (index, rest[0])))
    if member:
        tags = tuple(_codec.loads(labels)) if labels else ()
        indexes = layout.catalog_indexes(session_id, owner or None, tags)
        calls.extend(CommandCall("zrem", (index, member)) for index in indexes)
    return calls


def _p_resolve(
    layout: KeyLayout,
    candidates: Sequence[str],
    indexes: Sequence[str],
    tag: str | None,
    damaged: list[DamagedSession],
) -> Plan[list[SessionInfo]]:
    """Read the candidates' metadata; drop (and unlist) entries whose session is gone, report
    (in ``damaged``) and skip damaged sessions."""
    session_ids = [session_id_of_member(m) for m in candidates]
    reads = [ScriptCall("session_info", layout.session(s).all()) for s in session_ids]
    replies = yield Step("list_sessions", "*", indexes[0], reads)
    found: list[SessionInfo] = []
    stale: list[CommandCall] = []
    for member, session_id, reply in zip(candidates, session_ids, replies, strict=True):
        if reply is None:
            stale.append(CommandCall("zrem", (indexes[layout.catalog_shard(session_id)], member)))
            continue
        keys = layout.session(session_id)
        hurt = _damage(session_id, keys, reply)
        if hurt is None:
            try:
                info = _fields(session_id, reply)
            except _BAD_FIELDS as e:
                hurt = DamagedSession(session_id, keys.session, _invalid(e))
        if hurt is not None:
            damaged.append(hurt)
        elif info.catalog_member != member:  # a duplicate entry left by a create that lost a race
            stale.append(CommandCall("zrem", (indexes[layout.catalog_shard(session_id)], member)))
        elif tag is None or tag in info.tags:
            found.append(info)
    if stale:
        yield Step("list_sessions", "*", indexes[0], stale)
    return found


# -- expiry index -----------------------------------------------------------------------------


def expiry_calls(
    layout: KeyLayout, session_id: str, member: str, user_id: str | None, tags: tuple[str, ...], *, expires_ms: int
) -> tuple[list[CommandCall], str]:
    """What a create adds to its pipeline: the read of up to ``SWEEP_PER_CREATE`` due entries of
    its shard (first), and its own expiry entry when the session has a lifetime; and that entry
    ('' none), which the session hash keeps (field ``expiry``) so a delete can remove it."""
    index = layout.catalog_expiry(layout.catalog_shard(session_id))
    calls = [CommandCall("zrangebylex", (index, "-", f"({now_ms():015d}", 0, SWEEP_PER_CREATE))]
    entry = expiry_member(expires_ms, member, user_id, tags) if expires_ms else ""
    if entry:
        calls.append(CommandCall("zadd", (index, {entry: 0})))
    return calls, entry


def p_sweep_catalog(layout: KeyLayout) -> Plan[int]:
    """Remove the catalog entries of every expired session (all shards); returns how many."""
    indexes = [layout.catalog_expiry(s) for s in range(CATALOG_SHARDS)]
    removed = 0
    for _ in range(1000):  # each pass removes or refiles what it read: bounded in practice
        reads = [CommandCall("zrangebylex", (i, "-", f"({now_ms():015d}", 0, _SWEEP_PAGE)) for i in indexes]
        replies = yield Step("sweep_catalog", "*", indexes[0], reads)
        due = [_codec.text(m) for reply in replies for m in reply]
        if not due:
            break
        removed += yield from p_sweep_due(layout, due)
    return removed


def p_sweep_due(layout: KeyLayout, due: Sequence[Any]) -> Plan[int]:
    """Check the sessions of due expiry entries and act: a session gone (or replaced under the
    same id) is unlisted, one that lives on is filed again under its current expiry, a damaged
    one keeps its catalog entry (listings report it). Returns the sessions unlisted."""
    entries: list[tuple[str, str, str, str | None, tuple[str, ...]]] = []
    for raw in due:
        entry = _codec.text(raw)
        try:
            _, member, user_id, tags = parse_expiry_member(entry)
            session_id = session_id_of_member(member)
            index = layout.catalog_expiry(layout.catalog_shard(session_id))
        except (ValueError, IndexError):
            continue  # not ours: left alone
        entries.append((entry, index, member, user_id, tags))
    if not entries:
        return 0
    ids = [session_id_of_member(e[2]) for e in entries]
    reads = [ScriptCall("session_info", layout.session(s).all()) for s in ids]
    replies = yield Step("sweep_catalog", "*", entries[0][1], reads)
    now = now_ms()
    writes: list[CommandCall] = []
    removed = 0
    for (entry, index, member, user_id, tags), session_id, reply in zip(entries, ids, replies, strict=True):
        writes.append(CommandCall("zrem", (index, entry)))
        if reply is None or (len(reply) == 3 and _listed_as(reply) != member):
            removed += 1
            for catalog in layout.catalog_indexes(session_id, user_id, tags):
                writes.append(CommandCall("zrem", (catalog, member)))
        elif len(reply) == 3 and int(reply[2]) >= 0:
            refiled = expiry_member(now + int(reply[2]), member, user_id, tags)
            writes.append(CommandCall("zadd", (index, {refiled: 0})))
    yield Step("sweep_catalog", "*", entries[0][1], writes)
    return removed


def expected_expiry(ttl_ms: int, deadline_ms: int) -> int:
    """When a session created now expires (unix ms; 0: never), as ``touch`` in the create computes
    it, by this client's clock: now + ttl, capped by the deadline."""
    expires = now_ms() + ttl_ms if ttl_ms else 0
    if deadline_ms and (not expires or deadline_ms < expires):
        expires = deadline_ms
    return expires


def _listed_as(reply: Sequence[Any]) -> str:
    """The ``catalog`` field in a ``session_info`` reply of an undamaged session."""
    flat = reply[0]
    for i in range(0, len(flat), 2):
        if _codec.text(flat[i]) == F_CATALOG:
            return _codec.text(flat[i + 1])
    return ""


def _damage(session_id: str, keys: SessionKeys, reply: Sequence[Any]) -> DamagedSession | None:
    """What the ``session_info`` script reported damaged (a key of the wrong type, keys left over
    after the session hash went), or None."""
    if len(reply) != 4:
        return None
    at, reason, *left = reply[3]
    key = keys.all()[int(at) - 1]
    if _codec.text(reason) == "missing":
        names = ", ".join(keys.all()[int(i) - 1] for i in left)
        return DamagedSession(
            session_id, key, f"the session hash is missing but other keys of the session remain ({names})"
        )
    return DamagedSession(session_id, key, f"server refused: {_codec.text(reason)}")


# What building the catalog view raises on fields this package did not write (CodecError and
# UnicodeDecodeError are ValueErrors).
_BAD_FIELDS = (ValueError, TypeError, OverflowError)


def _invalid(error: Exception) -> str:
    return f"catalog fields are not valid: {error}"


def _fields(session_id: str, reply: Sequence[Any]) -> SessionInfo:
    """The catalog view from an undamaged ``session_info`` reply.

    Raises:
        ValueError, TypeError, OverflowError: If a field of the session hash is not what this
            package writes (``_BAD_FIELDS``).
    """
    flat, agent_ids, pttl = reply
    # Values are decoded only where used: the session record itself is not the catalog's business.
    fields = {_codec.text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
    counts = {_codec.text(a): int(fields.get(count_field(_codec.text(a)), 0)) for a in agent_ids}
    created = int(fields.get(F_CREATED, 0))
    tags = tuple(_codec.loads(fields[F_TAGS])) if fields.get(F_TAGS) else ()
    if not all(isinstance(tag, str) for tag in tags):
        raise _codec.CodecError("tags are not a list of strings")
    return SessionInfo(
        session_id=session_id,
        created_at=_datetime(created),
        updated_at=_datetime(int(fields.get(F_UPDATED, created))),
        user_id=_codec.text(fields[F_USER]) if F_USER in fields else None,
        tags=tags,
        message_counts=counts,
        expires_in=None if int(pttl) < 0 else int(pttl) / 1000,
        catalog_member=_codec.text(fields.get(F_CATALOG, "")),
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _datetime(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _ms(moment: datetime) -> int:
    """Unix ms of a datetime made by :func:`_datetime` (exact: no float rounding)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)
