"""The session catalog: listing sessions newest-first, by owner or tag, without SCAN.

Each session is listed in a few lexicographic zsets (see ``_keys.KeyLayout.catalog_index``) whose
members are ``<created ms, 15 digits>:<encoded session id>``, so reverse lex order is newest-first
and a member is its own cursor. The entries are written in the same pipeline as the session and
removed when it is deleted; an entry whose session has expired (or never got written) is
dropped when a listing meets it, and ``prune`` sweeps the whole catalog.
"""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from strands.types.exceptions import SessionException

from . import _codec
from ._client import CommandCall, Plan, ScriptCall, Step
from ._keys import CATALOG_SHARDS, KeyLayout, SessionKeys, session_id_of_member
from ._lifetime import Duration, now_ms, to_ms
from .exceptions import CorruptRecordError

MAX_PAGE = 1000


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

    @property
    def agent_ids(self) -> list[str]:
        """Ids of the session's agents, sorted."""
        return sorted(self.message_counts)

    @property
    def message_count(self) -> int:
        """Messages stored over all agents."""
        return sum(self.message_counts.values())


@dataclass(frozen=True)
class SessionPage:
    """One page of ``list_sessions``."""

    sessions: list[SessionInfo]
    #: Pass to ``list_sessions(cursor=...)`` for the next page; ``None`` when there is none.
    cursor: str | None


class CatalogPlans:
    """Catalog operations as plans (see ``_core.py``), shared by the sync and asyncio faces."""

    _layout: KeyLayout

    if TYPE_CHECKING:  # provided by SessionCore

        def session_keys(self, session_id: str) -> SessionKeys: ...
        def _p_delete_session(self, session_id: str) -> Plan[None]: ...

    def _p_session_info(self, session_id: str) -> Plan[SessionInfo | None]:
        keys = self.session_keys(session_id)
        reply = yield Step("session_info", session_id, keys.session, ScriptCall("session_info", keys.all()))
        return None if reply is None else _info(session_id, keys.session, reply)[0]

    def _p_list_sessions(
        self, user_id: str | None, tag: str | None, cursor: str | None, limit: int
    ) -> Plan[SessionPage]:
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit=<{limit!r}> | limit must be an int from 1 to {MAX_PAGE}")
        if cursor is not None and not isinstance(cursor, str):
            raise ValueError(f"cursor=<{cursor!r}> | cursor must be a str from a previous page")
        index_tag = None if user_id is not None else tag
        indexes = [self._layout.catalog_index(s, user_id=user_id, tag=index_tag) for s in range(CATALOG_SHARDS)]
        start = "+" if cursor is None else f"({cursor}"
        found: list[SessionInfo] = []
        candidates: list[str] = []
        while len(found) < limit:
            want = limit - len(found)
            reads = [CommandCall("zrevrangebylex", (i, start, "-", 0, want)) for i in indexes]
            replies = yield Step("list_sessions", "*", indexes[0], reads)
            shards = [[_codec.text(m) for m in reply] for reply in replies]
            candidates = list(heapq.merge(*shards, reverse=True))[:want]
            if not candidates:
                return SessionPage(found, None)
            found.extend((yield from self._p_resolve(candidates, indexes, tag if user_id is not None else None)))
            start = f"({candidates[-1]}"
            if len(candidates) < want:  # every shard is exhausted
                return SessionPage(found, None)
        return SessionPage(found, candidates[-1])

    def _p_prune(
        self, older_than: Duration, dry_run: bool, on_session: Callable[[SessionInfo, bool], None] | None
    ) -> Plan[int]:
        cutoff = now_ms() - to_ms(older_than, "older_than")
        doomed = 0
        cursor: str | None = None
        while True:
            page = yield from self._p_list_sessions(None, None, cursor, 200)
            for info in page.sessions:
                stale = info.updated_at.timestamp() * 1000 < cutoff
                if stale:
                    doomed += 1
                    if not dry_run:
                        # Deleted (or expired) meanwhile is what prune wanted anyway.
                        with contextlib.suppress(SessionException):
                            yield from self._p_delete_session(info.session_id)
                if on_session is not None:
                    on_session(info, stale)
            if page.cursor is None:
                return doomed
            cursor = page.cursor

    def _p_resolve(self, candidates: Sequence[str], indexes: Sequence[str], tag: str | None) -> Plan[list[SessionInfo]]:
        """Read the candidates' metadata; drop (and unlist) entries whose session is gone."""
        session_ids = [session_id_of_member(m) for m in candidates]
        reads = [ScriptCall("session_info", self.session_keys(s).all()) for s in session_ids]
        replies = yield Step("list_sessions", "*", indexes[0], reads)
        found: list[SessionInfo] = []
        stale: list[CommandCall] = []
        for member, session_id, reply in zip(candidates, session_ids, replies, strict=True):
            if reply is None:
                stale.append(CommandCall("zrem", (indexes[self._layout.catalog_shard(session_id)], member)))
                continue
            info, listed_as = _info(session_id, self.session_keys(session_id).session, reply)
            if listed_as != member:  # a duplicate entry left by a create that lost a race
                stale.append(CommandCall("zrem", (indexes[self._layout.catalog_shard(session_id)], member)))
            elif tag is None or tag in info.tags:
                found.append(info)
        if stale:
            yield Step("list_sessions", "*", indexes[0], stale)
        return found


def _info(session_id: str, key: str, reply: Sequence[Any]) -> tuple[SessionInfo, str]:
    """Build the catalog view from the ``session_info`` script's reply.

    Raises:
        CorruptRecordError: If a field of the session hash is not what this package writes.
    """
    try:
        flat, agent_ids, pttl = reply
        # Values are decoded only where used: the session record itself is not the catalog's business.
        fields = {_codec.text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
        counts = {_codec.text(a): int(fields.get(f"n:{_codec.text(a)}", 0)) for a in agent_ids}
        created = int(fields.get("created", 0))
        tags = tuple(_codec.loads(fields["tags"])) if fields.get("tags") else ()
        if not all(isinstance(tag, str) for tag in tags):
            raise _codec.CodecError("tags are not a list of strings")
        info = SessionInfo(
            session_id=session_id,
            created_at=_datetime(created),
            updated_at=_datetime(int(fields.get("updated", created))),
            user_id=_codec.text(fields["user"]) if "user" in fields else None,
            tags=tags,
            message_counts=counts,
            expires_in=None if int(pttl) < 0 else int(pttl) / 1000,
        )
        listed_as = _codec.text(fields.get("catalog", ""))
    except (ValueError, TypeError, OverflowError) as e:  # CodecError and UnicodeDecodeError are ValueErrors
        raise CorruptRecordError(f"session_id=<{session_id}>, key=<{key}> | catalog fields are not valid: {e}") from e
    return info, listed_as


def _datetime(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)
