"""The session catalog: listing sessions newest-first, by owner or tag, without SCAN.

Each session is listed in a few lexicographic zsets (see ``_keys.KeyLayout.catalog_index``) whose
members are ``<created ms, 15 digits>:<encoded session id>``, so reverse lex order is newest-first
and a member is its own cursor. The entries are written in the same pipeline as the session and
removed when it is deleted; an entry whose session has expired (or never got written) is
dropped when a listing meets it, and ``prune`` sweeps the whole catalog.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from . import _codec
from ._client import ClientAdapter, CommandCall, ScriptCall, retrying
from ._keys import CATALOG_SHARDS, KeyLayout, SessionKeys, session_id_of_member
from ._lifetime import Duration, now_ms, to_ms

if TYPE_CHECKING:
    from strands.types.session import Session

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
    """One page of :meth:`CatalogMixin.list_sessions`."""

    sessions: list[SessionInfo]
    #: Pass to ``list_sessions(cursor=...)`` for the next page; ``None`` when there is none.
    cursor: str | None


class CatalogMixin:
    """Catalog reads for :class:`~strands_valkey_session_manager.ValkeySessionRepository`."""

    _db: ClientAdapter
    _layout: KeyLayout

    if TYPE_CHECKING:  # provided by the repository

        def session_keys(self, session_id: str) -> SessionKeys: ...
        def delete_session(self, session_id: str, **kwargs: Any) -> None: ...
        def read_session(self, session_id: str, **kwargs: Any) -> Session | None: ...

    @retrying
    def session_info(self, session_id: str) -> SessionInfo | None:
        """Catalog view of one session, or ``None`` if it does not exist. One round trip."""
        keys = self.session_keys(session_id)
        with self._db.errors("session_info", session_id, keys.session):
            reply = self._db.script("session_info", keys.all(), ())
        return None if reply is None else _info(session_id, reply)[0]

    @retrying
    def list_sessions(
        self,
        user_id: str | None = None,
        tag: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> SessionPage:
        """A page of sessions, newest first, optionally only one user's and/or one tag's.

        Two round trips per page in the usual case (one pipeline reads every catalog shard, one
        reads the candidates' metadata); entries of expired or deleted sessions are skipped and
        removed on the way. Cost grows with the page size, not with the keyspace.

        Raises:
            ValueError: If ``limit`` is not between 1 and 1000 or ``cursor`` is not a str.
        """
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit=<{limit!r}> | limit must be an int from 1 to {MAX_PAGE}")
        if cursor is not None and not isinstance(cursor, str):
            raise ValueError(f"cursor=<{cursor!r}> | cursor must be a str from a previous page")
        index_tag = None if user_id is not None else tag
        indexes = [self._layout.catalog_index(s, user_id=user_id, tag=index_tag) for s in range(CATALOG_SHARDS)]
        start = "+" if cursor is None else f"({cursor}"
        found: list[SessionInfo] = []
        with self._db.errors("list_sessions", "*", indexes[0]):
            while len(found) < limit:
                want = limit - len(found)
                replies = self._db.batch([CommandCall("zrevrangebylex", (i, start, "-", 0, want)) for i in indexes])
                shards = [[_codec.text(m) for m in reply] for reply in replies]
                candidates = list(heapq.merge(*shards, reverse=True))[:want]
                if not candidates:
                    return SessionPage(found, None)
                found.extend(self._resolve(candidates, indexes, tag if user_id is not None else None))
                start = f"({candidates[-1]}"
                if all(len(shard) < want for shard in shards) and len(candidates) < want:
                    return SessionPage(found, None)
        return SessionPage(found, candidates[-1])

    def iter_sessions(
        self, user_id: str | None = None, tag: str | None = None, page_size: int = 200
    ) -> Iterator[SessionInfo]:
        """Every listed session, newest first, fetched page by page."""
        cursor: str | None = None
        while True:
            page = self.list_sessions(user_id=user_id, tag=tag, cursor=cursor, limit=page_size)
            yield from page.sessions
            if page.cursor is None:
                return
            cursor = page.cursor

    def prune(
        self,
        older_than: Duration,
        *,
        dry_run: bool = False,
        on_session: Callable[[SessionInfo, bool], None] | None = None,
    ) -> int:
        """Delete every session whose last write is older than ``older_than``.

        Args:
            older_than: Idle time (seconds or ``timedelta``).
            dry_run: Only count what would be deleted.
            on_session: Called with each visited session and whether it is (or would be) deleted.

        Returns:
            The number of sessions deleted (or that would be).
        """
        cutoff = now_ms() - to_ms(older_than, "older_than")
        doomed = 0
        for info in self.iter_sessions():
            stale = info.updated_at.timestamp() * 1000 < cutoff
            if stale:
                doomed += 1
                if not dry_run:
                    self._delete_if_present(info.session_id)
            if on_session is not None:
                on_session(info, stale)
        return doomed

    def _delete_if_present(self, session_id: str) -> None:
        from strands.types.exceptions import SessionException

        try:
            self.delete_session(session_id)
        except SessionException:
            if self.read_session(session_id) is not None:
                raise

    def _resolve(self, candidates: Sequence[str], indexes: Sequence[str], tag: str | None) -> list[SessionInfo]:
        """Read the candidates' metadata; drop (and unlist) entries whose session is gone."""
        session_ids = [session_id_of_member(m) for m in candidates]
        replies = self._db.batch([ScriptCall("session_info", self.session_keys(s).all()) for s in session_ids])
        found: list[SessionInfo] = []
        stale: list[CommandCall] = []
        for member, session_id, reply in zip(candidates, session_ids, replies, strict=True):
            if isinstance(reply, Exception):
                raise reply
            if reply is None:
                stale.append(CommandCall("zrem", (indexes[self._layout.catalog_shard(session_id)], member)))
                continue
            info, listed_as = _info(session_id, reply)
            if listed_as != member:  # a duplicate entry left by a create that lost a race
                stale.append(CommandCall("zrem", (indexes[self._layout.catalog_shard(session_id)], member)))
            elif tag is None or tag in info.tags:
                found.append(info)
        self._db.batch(stale)
        return found


def _info(session_id: str, reply: Sequence[Any]) -> tuple[SessionInfo, str]:
    flat, agent_ids, pttl = reply
    fields = {_codec.text(flat[i]): _codec.text(flat[i + 1]) for i in range(0, len(flat), 2)}
    counts = {_codec.text(a): int(fields.get(f"n:{_codec.text(a)}", 0)) for a in agent_ids}
    created = int(fields.get("created", 0))
    tags = tuple(_codec.loads(fields["tags"])) if fields.get("tags") else ()
    info = SessionInfo(
        session_id=session_id,
        created_at=_datetime(created),
        updated_at=_datetime(int(fields.get("updated", created))),
        user_id=fields.get("user"),
        tags=tags,
        message_counts=counts,
        expires_in=None if int(pttl) < 0 else int(pttl) / 1000,
    )
    return info, fields.get("catalog", "")


def _datetime(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)
