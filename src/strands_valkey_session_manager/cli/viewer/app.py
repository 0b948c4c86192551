"""The ``svsm ui`` web app: Starlette, server-rendered Jinja2 templates, htmx for "load more" and live.

Read-only unless ``allow_delete=True``. Every page is built from the repository's public reads:
``list_sessions``/``session_info`` (catalog), ``read_session``, ``read_agent``, ``list_messages``
(one page at a time), ``read_message`` (media bytes), ``read_multi_agent`` (ids from ``HKEYS`` of
the session's ``multi`` hash) and ``export_records`` (download). Snapshot history comes from an
optional :class:`~strands_valkey_session_manager.storage.ValkeyStorage`.

Nothing reads a whole conversation at once: timelines, text search and token totals page through
``list_messages``; a damaged record (one that cannot be decoded or opened) becomes an inline error
in its place and the rest of the page is shown.

Safety: templates autoescape; Markdown is rendered with raw HTML off; a Content-Security-Policy
allows only this origin's scripts and styles (no inline script, no remote images); only loopback
``Host`` headers are accepted by default (DNS rebinding; ``serve`` keeps the check when bound to
every interface); the delete form carries a per-process
HMAC token and is checked against ``Origin``. Ids travel as percent-encoded path segments, routed
on the raw request path, so ``/``, ``?``, ``#``, ``%`` and Unicode in ids are plain data.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Final, TypeVar
from urllib.parse import parse_qs, urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strands.types.exceptions import SessionException, StorageError
from strands.types.session import SessionAgent, SessionMessage

from ..._keys import agent_member_range, encode_id
from ...catalog import DamagedSession, SessionInfo
from ...exceptions import AccessDeniedError, CorruptRecordError, SessionNotFoundError, SessionStoreUnavailableError
from ...repository import ValkeySessionRepository
from ...storage import StorageUnavailableError, ValkeyStorage
from ...transfer import export_lines
from ..humanize import duration, size
from . import render
from .render import MessageView, id_from_segment, id_segment, query
from .snapshots import SnapshotOwner, list_snapshots, read_snapshot, snapshot_diff, snapshot_session_ids

__all__ = ["DEFAULT_ALLOWED_HOSTS", "MAX_PAGE_SIZE", "create_app"]

logger = logging.getLogger(__name__)

#: Largest page a request may ask for (sessions or messages).
MAX_PAGE_SIZE: Final = 500
#: Host headers accepted unless ``allowed_hosts`` says otherwise: loopback only.
DEFAULT_ALLOWED_HOSTS: Final = ("127.0.0.1", "localhost", "::1", "[::1]")
#: Agents whose timelines the session page shows inline; the others are linked.
MAX_INLINE_AGENTS: Final = 8
_MESSAGE_ID = re.compile(r"-?[0-9]{1,20}\Z")
_BLOCK_INDEX = re.compile(r"[0-9]{1,6}\Z")
_MAX_FORM_BYTES = 4096
_EXPORT_CHUNK_CHARS = 256 * 1024
#: Sessions a filtered list request reads at most before it answers with what it found (and a link
#: that goes on from there): id prefix and ``updated`` filters are applied to catalog pages.
MAX_SCAN_SESSIONS: Final = 2000
#: Catalog page size of a filtered list request (``list_sessions`` takes up to 1,000).
SCAN_SESSIONS_PAGE: Final = 500
#: Messages read per round trip by text search and token totals (one page at a time in memory).
SCAN_PAGE: Final = MAX_PAGE_SIZE
#: Messages a text search reads per request before it answers (with a link that goes on).
MAX_SCAN_MESSAGES: Final = 20_000
#: Matches shown per search request.
MAX_MATCHES: Final = 50
#: Sessions with at most this many messages get their token totals counted when the page opens;
#: larger ones on request.
AUTO_USAGE_MESSAGES: Final = 5000
#: Seconds between two polls of a live timeline.
LIVE_POLL_SECONDS: Final = 2
_MEMBER_ID_OFFSET = 2**63
_USAGE_FIELDS = ("messages", "with_usage", "input_tokens", "output_tokens", "total_tokens", "cache_read", "cache_write")
_T = TypeVar("_T")

# The CSP of every HTML page: this origin's scripts and styles only, images from here or inline
# data (snapshots), no plugins, no framing, forms post only here.
_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# Stored bytes served as they are: never a document that could run anything.
_MEDIA_CSP = "default-src 'none'; img-src 'self'; media-src 'self'; sandbox"


def create_app(
    repository: ValkeySessionRepository,
    *,
    allow_delete: bool = False,
    page_size: int = 50,
    storage: ValkeyStorage | None = None,
    allowed_hosts: Sequence[str] | None = None,
) -> Starlette:
    """The viewer as an ASGI app.

    Args:
        repository: Where the sessions are (any ``ValkeySessionRepository`` or manager); the app
            only reads through it, and deletes only with ``allow_delete``.
        allow_delete: Add the delete pages (a confirmation form that POSTs). Off by default: then
            the app has no endpoint that writes.
        page_size: Sessions per list page and messages per timeline page (1 to ``MAX_PAGE_SIZE``);
            a request may ask for another size within the same bounds with ``?limit=``.
        storage: A ``ValkeyStorage`` to show ``SnapshotSessionManager`` snapshot history from.
        allowed_hosts: ``Host`` header values accepted (``"*"`` for any); default loopback only,
            which protects a local viewer from DNS rebinding.

    Raises:
        ValueError: If ``page_size`` is out of bounds.
    """
    if not isinstance(page_size, int) or isinstance(page_size, bool) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size=<{page_size!r}> | must be an int from 1 to {MAX_PAGE_SIZE}")
    viewer = _Viewer(repository, storage=storage, allow_delete=allow_delete, page_size=page_size)
    routes: list[Route | Mount] = [
        Route("/", viewer.list_page),
        Route("/sessions/{sid}", viewer.session_page),
        Route("/sessions/{sid}/export", viewer.export),
        Route("/sessions/{sid}/search", viewer.search_page),
        Route("/sessions/{sid}/usage", viewer.usage_page),
        Route("/sessions/{sid}/agents/{aid}", viewer.agent_page),
        Route("/sessions/{sid}/agents/{aid}/live", viewer.live),
        Route("/sessions/{sid}/agents/{aid}/messages/{mid}/blocks/{n}", viewer.block),
        Route("/sessions/{sid}/agents/{aid}/messages/{mid}/blocks/{n}/{m}", viewer.block),
        Route("/sessions/{sid}/snapshot", viewer.snapshot_page),
        Mount(
            "/static",
            app=StaticFiles(packages=[("strands_valkey_session_manager.cli.viewer", "static")]),
            name="static",
        ),
    ]
    if allow_delete:
        routes.insert(3, Route("/sessions/{sid}/delete", viewer.delete, methods=["GET", "POST"]))
    hosts = list(DEFAULT_ALLOWED_HOSTS if allowed_hosts is None else allowed_hosts)
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(_SecurityHeaders),
            Middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False),
            Middleware(_RouteOnRawPath),
        ],
        exception_handlers={
            HTTPException: viewer.error,
            SessionException: viewer.error,
            StorageError: viewer.error,
        },
    )
    app.state.viewer = viewer
    return app


# -- URLs ----------------------------------------------------------------------------------------


def session_url(session_id: str, suffix: str = "") -> str:
    """Path of a session's page (or of one of its sub-pages with ``suffix``)."""
    return f"/sessions/{id_segment(session_id)}{suffix}"


def agent_url(session_id: str, agent_id: str, **params: Any) -> str:
    """Path of an agent's timeline page."""
    return session_url(session_id, f"/agents/{id_segment(agent_id)}") + query(**params)


def block_url(session_id: str, agent_id: str, message_id: int, path: tuple[int, ...], *, redacted: bool) -> str:
    """Path of a medium's bytes inside a stored message."""
    tail = "/".join(str(i) for i in path)
    base = session_url(session_id, f"/agents/{id_segment(agent_id)}/messages/{message_id}/blocks/{tail}")
    return base + query(redacted=1 if redacted else None)


def _dom_id(*parts: str) -> str:
    """A CSS-safe element id for any ids (htmx targets)."""
    return "x" + hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:16]


# -- view models ---------------------------------------------------------------------------------


@dataclass
class Timeline:
    """One page of an agent's messages."""

    session_id: str
    agent_id: str
    total: int
    offset: int
    limit: int
    messages: list[MessageView]
    #: Poll for messages appended after the last one (shown once the timeline reaches its end).
    live: bool = False
    #: Why the timeline cannot be read at all (the agent's index is damaged).
    error: str = ""

    @property
    def dom_id(self) -> str:
        return _dom_id(self.session_id, self.agent_id)

    @property
    def live_url(self) -> str:
        """The fragment of messages after the last one shown (polled by htmx)."""
        return session_url(self.session_id, f"/agents/{id_segment(self.agent_id)}/live") + query(
            offset=self.end, start=self.offset, limit=self.limit
        )

    @property
    def end(self) -> int:
        return self.offset + len(self.messages)

    @property
    def next_offset(self) -> int | None:
        return self.end if self.end < self.total else None

    @property
    def prev_offset(self) -> int | None:
        return max(0, min(self.offset - self.limit, self.last_offset)) if self.offset > 0 else None

    @property
    def last_offset(self) -> int:
        return max(0, self.total - self.limit)

    def url(self, offset: int) -> str:
        return agent_url(self.session_id, self.agent_id, offset=offset, limit=self.limit, live=1 if self.live else None)


@dataclass
class AgentView:
    """An agent on the session page."""

    agent_id: str
    message_count: int
    record: SessionAgent | None
    timeline: Timeline | None
    state_json: str
    manager_json: str
    internal_json: str
    #: Why the agent's record cannot be read (then ``record`` is ``None``).
    error: str = ""


@dataclass
class OrchestratorView:
    """A Graph/Swarm state on the session page."""

    orchestrator_id: str
    kind: str
    status: str
    state_json: str
    error: str = ""


@dataclass
class _Read:
    """One message read for a page: the record, or why it cannot be read."""

    position: int
    message_id: int
    record: SessionMessage | None
    error: str = ""


@dataclass
class AgentUsage:
    """Token usage summed over one agent's stored messages (``metadata.usage`` of model replies)."""

    agent_id: str
    messages: int = 0
    with_usage: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cache_read: int = 0
    cache_write: int = 0
    error: str = ""

    def add(self, usage: Mapping[str, Any]) -> None:
        self.with_usage += 1
        self.input_tokens += _count(usage.get("inputTokens"))
        self.output_tokens += _count(usage.get("outputTokens"))
        self.total_tokens += _count(usage.get("totalTokens"))
        self.cache_read += _count(usage.get("cacheReadInputTokens"))
        self.cache_write += _count(usage.get("cacheWriteInputTokens"))


@dataclass
class SearchHit:
    """A message that holds the searched text."""

    agent_id: str
    position: int
    view: MessageView
    before: str
    match: str
    after: str


@dataclass
class ListFilter:
    """The list page's filters: catalog indexes (user, tag) and checks on each listed session."""

    user: str | None = None
    tag: str | None = None
    prefix: str = ""
    by: str = "created"
    start: datetime | None = None
    end: datetime | None = None
    #: Sessions read from the catalog, for the note under a filtered list.
    scanned: int = 0
    damaged: list[DamagedSession] = field(default_factory=list)

    @property
    def scanning(self) -> bool:
        """Filters applied to catalog pages (not by an index)."""
        return (
            bool(self.prefix)
            or (self.by == "updated" and (self.start or self.end) is not None)
            or (self.start is not None)
        )

    def accepts(self, info: SessionInfo) -> bool:
        if self.prefix and not info.session_id.startswith(self.prefix):
            return False
        moment = info.updated_at if self.by == "updated" else info.created_at
        if self.start is not None and moment < self.start:
            return False
        return self.end is None or moment <= self.end

    def past_the_range(self, info: SessionInfo) -> bool:
        """Newest first by creation: once one is created before the range, all the rest are."""
        return self.by == "created" and self.start is not None and info.created_at < self.start


# -- the app -------------------------------------------------------------------------------------


class _Viewer:
    """Route handlers; one per app."""

    def __init__(
        self,
        repository: ValkeySessionRepository,
        *,
        storage: ValkeyStorage | None,
        allow_delete: bool,
        page_size: int,
    ) -> None:
        self.repository = repository
        self.storage = storage
        self.allow_delete = allow_delete
        self.page_size = page_size
        self._secret = secrets.token_bytes(32)
        env = Environment(
            loader=PackageLoader(__package__ or "", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.globals.update(
            session_url=session_url,
            agent_url=agent_url,
            query=query,
            allow_delete=allow_delete,
            storage_enabled=storage is not None,
            id_segment=id_segment,
            SCAN_PAGE=SCAN_PAGE,
        )
        env.filters.update(
            ago=render.ago,
            timestamp=render.timestamp,
            timestamp_ms=render.timestamp_ms,
            duration=duration,
            size=size,
        )
        self.templates = Jinja2Templates(env=env)

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    async def _run(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run a blocking repository call off the event loop."""
        return await run_in_threadpool(fn, *args, **kwargs)

    def _page(self, request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
        headers = {"Vary": "HX-Request"}
        return self.templates.TemplateResponse(request, name, context, status_code=status_code, headers=headers)

    @staticmethod
    def _id(request: Request, name: str) -> str:
        """A path parameter holding an id, decoded; 404 if it is not valid percent-encoded UTF-8."""
        try:
            value = id_from_segment(request.path_params[name])
        except (UnicodeDecodeError, ValueError) as e:
            raise HTTPException(404, "No such page: the id in the address is not valid UTF-8") from e
        if not value:
            raise HTTPException(404, "No such page: empty id")
        return value

    def _limit(self, request: Request) -> int:
        return _bounded_int(request.query_params.get("limit"), self.page_size, 1, MAX_PAGE_SIZE)

    @staticmethod
    def _offset(request: Request) -> int:
        return _bounded_int(request.query_params.get("offset"), 0, 0, 2**62)

    @staticmethod
    def _htmx(request: Request) -> bool:
        return request.headers.get("HX-Request") == "true"

    def _media_urls(self, session_id: str, agent_id: str, message_id: int) -> Callable[[bool], render.MediaUrl]:
        def for_version(redacted: bool) -> render.MediaUrl:
            def url(path: tuple[int, ...], kind: str, fmt: str, data: bytes) -> str:
                return block_url(session_id, agent_id, message_id, path, redacted=redacted)

            return url

        return for_version

    def _message_view(self, session_id: str, agent_id: str, read: _Read, tool_names: Mapping[str, str]) -> MessageView:
        m = read.record
        if m is None:
            return render.damaged_message_view(read.message_id, read.error)
        return render.message_view(
            m.message,
            self._media_urls(session_id, agent_id, m.message_id),
            message_id=m.message_id,
            created_at=m.created_at,
            redact_message=m.redact_message,
            tool_names=tool_names,
        )

    def _read_records(self, session_id: str, agent_id: str, offset: int, limit: int) -> list[_Read]:
        """Messages ``offset`` to ``offset + limit`` of an agent, each read or with why it cannot be.

        One ``list_messages`` call; when it meets a damaged record, the page is read again one
        message at a time (the agent's index, then ``read_message`` of each), so only the damaged
        record becomes an error.

        Raises:
            CorruptRecordError: If even the agent's index cannot be read.
        """
        try:
            messages = self.repository.list_messages(session_id, agent_id, limit=limit, offset=offset)
        except CorruptRecordError as e:
            return self._read_one_by_one(session_id, agent_id, offset, limit, e)
        return [_Read(offset + n, m.message_id, m) for n, m in enumerate(messages)]

    def _read_one_by_one(
        self, session_id: str, agent_id: str, offset: int, limit: int, cause: CorruptRecordError
    ) -> list[_Read]:
        keys = self.repository.session_keys(session_id)
        low, high = agent_member_range(encode_id(agent_id, "agent_id"))
        try:
            members = self.repository.client.zrangebylex(keys.order, low, high, start=offset, num=limit)
        except Exception as e:  # valkey-py and redis-py errors share no base class
            raise CorruptRecordError(f"{cause} (and its index cannot be read: {type(e).__name__})") from cause
        reads = []
        for n, member in enumerate(members):
            message_id = int(_text(member).rsplit(":", 1)[-1]) - _MEMBER_ID_OFFSET
            try:
                record = self.repository.read_message(session_id, agent_id, message_id)
            except CorruptRecordError as e:
                reads.append(_Read(offset + n, message_id, None, _reason(e)))
                continue
            if record is None:
                reads.append(_Read(offset + n, message_id, None, "listed in the index, but its record is gone"))
            else:
                reads.append(_Read(offset + n, message_id, record))
        return reads

    def _timeline(
        self, session_id: str, agent_id: str, total: int, offset: int, limit: int, *, live: bool = False
    ) -> Timeline:
        # The message before the page too: a tool result's tool name is in the message that asked.
        lead = 1 if offset > 0 else 0
        try:
            reads = self._read_records(session_id, agent_id, offset - lead, limit + lead)
        except CorruptRecordError as e:
            return Timeline(session_id, agent_id, total, offset, limit, [], live=live, error=_reason(e))
        names = render.tool_names_of([r.record.message for r in reads if r.record is not None])
        views = [self._message_view(session_id, agent_id, r, names) for r in reads if r.position >= offset]
        # Messages appended between the count and this read make the count stale: trust what was read.
        if views:
            total = max(total, offset + len(views))
        return Timeline(session_id, agent_id, total, offset, limit, views, live=live)

    async def _snapshots(self, session_id: str) -> list[SnapshotOwner]:
        if self.storage is None:
            return []
        return await list_snapshots(self.storage, session_id)

    def delete_token(self, session_id: str) -> str:
        """The token the delete form must send back for this session."""
        return hmac.new(self._secret, b"delete\0" + session_id.encode("utf-8"), hashlib.sha256).hexdigest()

    # -- pages ------------------------------------------------------------------------------------

    async def list_page(self, request: Request) -> Response:
        """``/``: sessions newest first, a page at a time; ``?id=`` opens one.

        Filters: ``user`` and ``tag`` (catalog indexes), ``prefix`` (session id), ``from``/``to``
        (dates, inclusive, UTC) on ``by=created`` (default) or ``by=updated``. The catalog is ordered
        by creation time, so ``to`` on creation starts the listing there; the id prefix, ``from``
        and the ``updated`` range are checked on each listed session, at most
        :data:`MAX_SCAN_SESSIONS` per request. Sessions kept only as snapshots are listed below.
        """
        params = request.query_params
        wanted = params.get("id", "")
        if wanted:
            info = await self._session_exists(wanted)
            if info:
                return RedirectResponse(session_url(wanted), status_code=303)
        filters = ListFilter(
            user=params.get("user") or None,
            tag=params.get("tag") or None,
            prefix=params.get("prefix", ""),
            by="updated" if params.get("by") == "updated" else "created",
            start=_day(params.get("from"), "from"),
            end=_day(params.get("to"), "to", end_of_day=True),
        )
        cursor = params.get("cursor") or None
        limit = self._limit(request)
        snapshots_after = params.get("snapshots_after")
        sessions: list[SessionInfo] = []
        next_cursor = None
        if snapshots_after is None:
            start = cursor
            if start is None and filters.by == "created" and filters.end is not None:
                start = f"{_ms(filters.end) + 1:015d}"  # a cursor: catalog members are "<created ms>:<id>"
            try:
                sessions, next_cursor = await self._run(self._scan_sessions, filters, start, limit)
            except ValueError as e:
                raise HTTPException(400, f"Bad filter: {e}") from e
        filter_params: dict[str, Any] = {
            "user": filters.user,
            "tag": filters.tag,
            "prefix": filters.prefix or None,
            "by": "updated" if filters.by == "updated" else None,
            "from": params.get("from") or None,
            "to": params.get("to") or None,
            "limit": None if limit == self.page_size else limit,
        }
        next_url = None if next_cursor is None else "/" + query(**filter_params, cursor=next_cursor)
        # Snapshot-only sessions have no user, tags or catalog times: listed when no such filter is set.
        snapshot_ids: list[str] = []
        snapshots_next = None
        show_snapshots = (
            self.storage is not None
            and cursor is None
            and not (filters.user or filters.tag or filters.start or filters.end)
        )
        if show_snapshots and self.storage is not None:
            snapshot_ids, more = await self._run(
                self._snapshot_only_sessions, filters.prefix, snapshots_after or None, limit
            )
            if more is not None:
                snapshots_next = "/" + query(
                    prefix=filters.prefix or None, snapshots_after=more, limit=filter_params["limit"]
                )
        context = {
            "sessions": sessions,
            "next_url": next_url,
            "user": filters.user or "",
            "tag": filters.tag or "",
            "prefix": filters.prefix,
            "by": filters.by,
            "date_from": params.get("from", ""),
            "date_to": params.get("to", ""),
            "filtered": any(v for k, v in filter_params.items() if k != "limit"),
            "scanning": filters.scanning,
            "scanned": filters.scanned,
            "damaged": filters.damaged,
            "wanted": wanted,
            "not_found": bool(wanted),
            "first_page": cursor is None,
            "deleted": params.get("deleted"),
            "snapshot_ids": snapshot_ids,
            "snapshots_next": snapshots_next,
            "snapshots_only": snapshots_after is not None,
        }
        if self._htmx(request) and snapshots_after is None:
            return self._page(request, "_session_rows.html", context)
        return self._page(request, "list.html", context, status_code=404 if wanted else 200)

    def _scan_sessions(
        self, filters: ListFilter, cursor: str | None, limit: int
    ) -> tuple[list[SessionInfo], str | None]:
        """Up to ``limit`` listed sessions that pass ``filters``, and the cursor to go on from."""
        found: list[SessionInfo] = []
        # Unfiltered, one catalog page is the answer; filtered, read larger pages.
        want = max(limit, SCAN_SESSIONS_PAGE) if filters.scanning else limit
        while True:
            page = self.repository.list_sessions(user_id=filters.user, tag=filters.tag, cursor=cursor, limit=want)
            filters.damaged.extend(page.damaged)
            for info in page.sessions:
                filters.scanned += 1
                if filters.past_the_range(info):
                    return found, None
                if filters.accepts(info):
                    found.append(info)
                    if len(found) == limit:
                        last = info.catalog_member
                        return found, (last if (page.cursor is not None or info is not page.sessions[-1]) else None)
            cursor = page.cursor
            if cursor is None or filters.scanned >= MAX_SCAN_SESSIONS:
                return found, cursor

    def _snapshot_only_sessions(self, prefix: str, after: str | None, limit: int) -> tuple[list[str], str | None]:
        """Ids of sessions with snapshots but no session in the store, by id, and where to go on."""
        assert self.storage is not None
        ids, more = snapshot_session_ids(self.storage, prefix=prefix, after=after, limit=limit)
        if not ids:
            return [], more
        keys = [self.repository.session_keys(i).session for i in ids]
        try:
            pipe = self.repository.client.pipeline(transaction=False)
            for key in keys:
                pipe.exists(key)
            present = pipe.execute()
        except Exception as e:  # valkey-py and redis-py errors share no base class
            raise SessionStoreUnavailableError(f"EXISTS of {len(keys)} session keys failed: {e}") from e
        return [i for i, n in zip(ids, present, strict=True) if not n], more

    async def _session_exists(self, session_id: str) -> bool:
        try:
            if await self._run(self.repository.read_session, session_id) is not None:
                return True
        except ValueError:
            return False
        return bool(await self._snapshots(session_id))

    async def session_page(self, request: Request) -> Response:
        """``/sessions/{id}``: agents with their first page of messages, orchestrators, snapshots.

        A record that cannot be read (damaged, or not openable) is shown as an error in its place.
        """
        session_id = self._id(request, "sid")
        limit = self._limit(request)
        live = request.query_params.get("live") == "1"
        try:
            loaded = await self._run(self._load_session, session_id, limit, live)
        except ValueError as e:
            raise HTTPException(404, f"No session with this id: {e}") from e
        snapshots = await self._snapshots(session_id)
        info, session, agents, orchestrators, errors = loaded
        if session is None and info is None and not snapshots and not errors:
            raise HTTPException(404, f"No session with id {session_id!r}")
        context = {
            "session_id": session_id,
            "info": info,
            "session": session,
            "agents": agents,
            "more_agents": info.agent_ids[MAX_INLINE_AGENTS:] if info else [],
            "orchestrators": orchestrators,
            "snapshots": snapshots,
            "limit": limit,
            "live": live,
            "errors": errors,
            "auto_usage": info is not None and info.message_count <= AUTO_USAGE_MESSAGES,
        }
        return self._page(request, "session.html", context)

    def _load_session(
        self, session_id: str, limit: int, live: bool = False
    ) -> tuple[SessionInfo | None, Any, list[AgentView], list[OrchestratorView], list[str]]:
        repo = self.repository
        errors: list[str] = []
        info = session = None
        try:
            info = repo.session_info(session_id)
        except CorruptRecordError as e:
            errors.append(f"Catalog view: {_reason(e)}")
        try:
            session = repo.read_session(session_id)
        except CorruptRecordError as e:
            errors.append(f"Session record: {_reason(e)}")
        agents = []
        if info is not None:
            for agent_id in info.agent_ids[:MAX_INLINE_AGENTS]:
                agents.append(
                    self._agent_view(session_id, agent_id, info.message_counts[agent_id], 0, limit, live=live)
                )
        orchestrators = []
        if session is not None or errors:
            try:
                raw_ids = self._orchestrator_ids(session_id)
            except CorruptRecordError as e:
                errors.append(f"Orchestrators: {_reason(e)}")
                raw_ids = []
            for raw in sorted(_text(r) for r in raw_ids):
                try:
                    state = repo.read_multi_agent(session_id, raw)
                except CorruptRecordError as e:
                    orchestrators.append(OrchestratorView(raw, "", "", "", error=_reason(e)))
                    continue
                if state is not None:
                    orchestrators.append(
                        OrchestratorView(
                            orchestrator_id=raw,
                            kind=str(state.get("type", "")),
                            status=str(state.get("status", "")),
                            state_json=render.pretty_json(state),
                        )
                    )
        return info, session, agents, orchestrators, errors

    def _orchestrator_ids(self, session_id: str) -> list[Any]:
        """Ids in the session's ``multi`` hash: ``HKEYS`` on the raw client (the repository has no
        call for it), its errors mapped by the repository's own rule (by exception class: a key of
        the wrong type is ``CorruptRecordError``, a lost server ``SessionStoreUnavailableError``)."""
        key = self.repository.session_keys(session_id).multi
        with self.repository._db.errors("orchestrator_ids", session_id, key):
            return list(self.repository.client.hkeys(key))

    def _agent_view(
        self, session_id: str, agent_id: str, count: int, offset: int, limit: int, *, live: bool = False
    ) -> AgentView:
        error = ""
        try:
            record = self.repository.read_agent(session_id, agent_id)
        except CorruptRecordError as e:
            record, error = None, _reason(e)
        return AgentView(
            agent_id=agent_id,
            message_count=count,
            record=record,
            timeline=self._timeline(session_id, agent_id, count, offset, limit, live=live),
            state_json=render.pretty_json(record.state if record else None),
            manager_json=render.pretty_json(record.conversation_manager_state if record else None),
            internal_json=render.pretty_json(record._internal_state if record else None),
            error=error,
        )

    async def _agent_count(self, session_id: str, agent_id: str) -> tuple[SessionInfo, int]:
        try:
            info = await self._run(self.repository.session_info, session_id)
        except ValueError as e:
            raise HTTPException(404, f"No session with this id: {e}") from e
        if info is None or agent_id not in info.message_counts:
            raise HTTPException(404, f"No agent {agent_id!r} in session {session_id!r}")
        return info, info.message_counts[agent_id]

    async def agent_page(self, request: Request) -> Response:
        """``/sessions/{id}/agents/{agent}?offset=&limit=&live=``: one page of an agent's timeline.

        For htmx ("load more") only the messages and the next "load more" link are sent.
        """
        session_id = self._id(request, "sid")
        agent_id = self._id(request, "aid")
        offset, limit = self._offset(request), self._limit(request)
        live = request.query_params.get("live") == "1"
        info, count = await self._agent_count(session_id, agent_id)
        if self._htmx(request):
            timeline = await self._run(self._timeline, session_id, agent_id, count, offset, limit, live=live)
            return self._page(request, "_timeline_more.html", {"tl": timeline})
        agent = await self._run(self._agent_view, session_id, agent_id, count, offset, limit, live=live)
        return self._page(request, "agent.html", {"session_id": session_id, "agent": agent, "info": info, "live": live})

    async def live(self, request: Request) -> Response:
        """``/sessions/{id}/agents/{agent}/live?offset=N&start=S``: messages from position ``N`` on.

        Polled by htmx every :data:`LIVE_POLL_SECONDS` from the end of a live timeline: 204 (nothing
        to swap, polling goes on) while there is nothing new, else the new messages followed by the
        next poller. Without htmx it is the agent page from ``N``.
        """
        session_id = self._id(request, "sid")
        agent_id = self._id(request, "aid")
        offset, limit = self._offset(request), self._limit(request)
        start = _bounded_int(request.query_params.get("start"), 0, 0, offset)
        if not self._htmx(request):
            return RedirectResponse(agent_url(session_id, agent_id, offset=offset, limit=limit, live=1), 303)
        _, count = await self._agent_count(session_id, agent_id)
        if count <= offset:
            return Response(status_code=204)
        timeline = await self._run(self._timeline, session_id, agent_id, count, offset, limit, live=True)
        if not timeline.messages and not timeline.error:
            return Response(status_code=204)
        # The range line above the timeline covers the page from where it started (out-of-band swap).
        shown = Timeline(session_id, agent_id, timeline.total, start, limit, [], live=True)
        return self._page(request, "_timeline_live.html", {"tl": timeline, "shown": shown, "shown_end": timeline.end})

    async def search_page(self, request: Request) -> Response:
        """``/sessions/{id}/search?q=``: messages of the session that hold ``q`` (case-insensitive).

        Pages through each agent's messages :data:`SCAN_PAGE` at a time (never the whole session
        in memory), at most :data:`MAX_SCAN_MESSAGES` messages and :data:`MAX_MATCHES` matches per
        request; the answer then links to the same search going on from where it stopped
        (``agent``, ``offset``).
        """
        session_id = self._id(request, "sid")
        needle = request.query_params.get("q", "")
        from_agent = request.query_params.get("agent")
        offset = self._offset(request)
        try:
            info = await self._run(self.repository.session_info, session_id)
        except ValueError as e:
            raise HTTPException(404, f"No session with this id: {e}") from e
        if info is None:
            raise HTTPException(404, f"No session with id {session_id!r} in the session store")
        hits: list[SearchHit] = []
        errors: list[str] = []
        resume: tuple[str, int] | None = None
        scanned = 0
        if needle:
            hits, errors, resume, scanned = await self._run(self._search, session_id, info, needle, from_agent, offset)
        next_url = None
        if resume is not None:
            next_url = session_url(session_id, "/search") + query(q=needle, agent=resume[0], offset=resume[1])
        context = {
            "session_id": session_id,
            "info": info,
            "q": needle,
            "hits": hits,
            "errors": errors,
            "next_url": next_url,
            "scanned": scanned,
            "continued": from_agent is not None,
        }
        return self._page(request, "search.html", context)

    def _search(
        self, session_id: str, info: SessionInfo, needle: str, from_agent: str | None, offset: int
    ) -> tuple[list[SearchHit], list[str], tuple[str, int] | None, int]:
        folded = needle.casefold()
        hits: list[SearchHit] = []
        errors: list[str] = []
        scanned = 0
        agents = info.agent_ids
        if from_agent is not None:
            agents = [a for a in agents if a >= from_agent]
        for agent_id in agents:
            position = offset if agent_id == from_agent else 0
            while position < info.message_counts[agent_id]:
                if scanned >= MAX_SCAN_MESSAGES:
                    return hits, errors, (agent_id, position), scanned
                lead = 1 if position > 0 else 0
                try:
                    reads = self._read_records(session_id, agent_id, position - lead, SCAN_PAGE + lead)
                except CorruptRecordError as e:
                    errors.append(f"Agent {agent_id}: {_reason(e)}")
                    break
                page = [r for r in reads if r.position >= position]
                if not page:
                    break
                names = render.tool_names_of([r.record.message for r in reads if r.record is not None])
                for read in page:
                    scanned += 1
                    if read.record is None:
                        errors.append(f"Agent {agent_id}, message {read.message_id}: {read.error}")
                        continue
                    record = read.record
                    texts = [render.message_text(record.message)]
                    if record.redact_message is not None:
                        texts.insert(0, render.message_text(record.redact_message))
                    text = next((t for t in texts if folded in t.casefold()), None)
                    if text is None:
                        continue
                    view = self._message_view(session_id, agent_id, read, names)
                    view.url = agent_url(session_id, agent_id, offset=read.position) + f"#m{read.message_id}"
                    hits.append(SearchHit(agent_id, read.position, view, *render.snippet(text, needle)))
                    if len(hits) >= MAX_MATCHES:
                        return hits, errors, (agent_id, read.position + 1), scanned
                position = page[-1].position + 1
        return hits, errors, None, scanned

    async def usage_page(self, request: Request) -> Response:
        """``/sessions/{id}/usage``: token totals per agent and for the session.

        Sums the ``metadata.usage`` the SDK stores on each model reply, paging through every agent's
        messages :data:`SCAN_PAGE` at a time. Messages without it (user turns, tool results, replies
        written by other writers) are counted as such, never estimated.
        """
        session_id = self._id(request, "sid")
        try:
            info = await self._run(self.repository.session_info, session_id)
        except ValueError as e:
            raise HTTPException(404, f"No session with this id: {e}") from e
        if info is None:
            raise HTTPException(404, f"No session with id {session_id!r} in the session store")
        usages = await self._run(self._usage, session_id, info)
        total = AgentUsage(agent_id="")
        for u in usages:
            for name in (
                "messages",
                "with_usage",
                "input_tokens",
                "output_tokens",
                "total_tokens",
                "cache_read",
                "cache_write",
            ):
                setattr(total, name, getattr(total, name) + getattr(u, name))
        context = {"session_id": session_id, "info": info, "usages": usages, "total": total}
        if self._htmx(request):
            return self._page(request, "_usage.html", context)
        return self._page(request, "usage.html", context)

    def _usage(self, session_id: str, info: SessionInfo) -> list[AgentUsage]:
        usages = []
        for agent_id in info.agent_ids:
            usage = AgentUsage(agent_id)
            position = 0
            while position < info.message_counts[agent_id]:
                try:
                    reads = self._read_records(session_id, agent_id, position, SCAN_PAGE)
                except CorruptRecordError as e:
                    usage.error = _reason(e)
                    break
                if not reads:
                    break
                for read in reads:
                    usage.messages += 1
                    if read.record is None:
                        usage.error = usage.error or f"message {read.message_id}: {read.error}"
                        continue
                    counts = render.message_usage(read.record.message)
                    if counts is not None:
                        usage.add(counts)
                position = reads[-1].position + 1
            usages.append(usage)
        return usages

    async def block(self, request: Request) -> Response:
        """The bytes of an image, document or video inside a stored message."""
        session_id = self._id(request, "sid")
        agent_id = self._id(request, "aid")
        raw_mid = request.path_params["mid"]
        indexes = [request.path_params[k] for k in ("n", "m") if k in request.path_params]
        if not _MESSAGE_ID.match(raw_mid) or not all(_BLOCK_INDEX.match(i) for i in indexes):
            raise HTTPException(404, "No such block")
        path = tuple(int(i) for i in indexes)
        try:
            message = await self._run(self.repository.read_message, session_id, agent_id, int(raw_mid))
        except ValueError as e:
            raise HTTPException(404, f"No such message: {e}") from e
        if message is None:
            raise HTTPException(404, "No such message")
        source: Mapping[str, Any] | None = (
            message.redact_message if request.query_params.get("redacted") else message.message
        )
        found = render.find_media(source.get("content") if source else None, path)
        data = render.media_bytes(found[1]) if found else None
        if found is None or data is None:
            raise HTTPException(404, "No image, document or video at this position")
        kind, body = found
        fmt = str(body.get("format", ""))
        mime = render.media_type(kind, fmt)
        headers = {"Content-Security-Policy": _MEDIA_CSP, "Cache-Control": "private, max-age=60"}
        if not (kind == "image" and fmt.lower() in render.IMAGE_TYPES):
            name = str(body.get("name") or f"{kind}-{raw_mid}-{'-'.join(map(str, path))}")
            headers["Content-Disposition"] = render.content_disposition(render.safe_filename(name, fmt))
        return Response(data, media_type=mime, headers=headers)

    async def export(self, request: Request) -> Response:
        """``/sessions/{id}/export``: the session as JSON Lines (``export_session``'s format), streamed."""
        session_id = self._id(request, "sid")
        try:
            records = await self._run(self.repository.export_records, session_id)
        except ValueError as e:
            raise HTTPException(404, f"No session with this id: {e}") from e

        def chunks() -> Iterator[str]:
            # Lines grouped into chunks: each chunk is one hop to a worker thread and one send.
            buffer: list[str] = []
            size = 0
            for line in export_lines(records):
                buffer.append(line + "\n")
                size += len(line) + 1
                if size >= _EXPORT_CHUNK_CHARS:
                    yield "".join(buffer)
                    buffer, size = [], 0
            if buffer:
                yield "".join(buffer)

        filename = render.safe_filename(f"session-{session_id}", "jsonl")
        return StreamingResponse(
            chunks(),
            media_type="application/x-ndjson; charset=utf-8",
            headers={"Content-Disposition": render.content_disposition(filename)},
        )

    async def snapshot_page(self, request: Request) -> Response:
        """``/sessions/{id}/snapshot?key=scopes/...``: one stored snapshot."""
        session_id = self._id(request, "sid")
        key = request.query_params.get("key", "")
        if self.storage is None:
            raise HTTPException(404, "This viewer was started without snapshot storage")
        try:
            snapshot = await read_snapshot(self.storage, session_id, key)
        except ValueError as e:
            raise HTTPException(500, f"The snapshot is not valid JSON: {e}") from e
        if snapshot is None:
            raise HTTPException(404, "No such snapshot")
        data = snapshot.get("data")
        if not isinstance(data, dict):
            data = {}
        raw_messages = data.get("messages")
        messages = [
            render.message_view(m, _inline_media_for, message_id=None)
            for m in (raw_messages if isinstance(raw_messages, list) else [])
            if isinstance(m, dict)
        ]
        others = {k: render.pretty_json(v) for k, v in data.items() if k != "messages"}
        diff = await snapshot_diff(self.storage, session_id, key, snapshot)
        context = {
            "diff": diff,
            "session_id": session_id,
            "key": key,
            "snapshot": snapshot,
            "messages": messages,
            "fields": others,
            "app_data": render.pretty_json(snapshot.get("app_data")),
        }
        return self._page(request, "snapshot.html", context)

    async def delete(self, request: Request) -> Response:
        """``/sessions/{id}/delete``: GET shows the confirmation form, POST (with its token) deletes."""
        session_id = self._id(request, "sid")
        if request.method == "GET":
            info = await self._run(self.repository.session_info, session_id)
            if info is None:
                raise HTTPException(404, f"No session with id {session_id!r}")
            context = {"session_id": session_id, "info": info, "token": self.delete_token(session_id)}
            return self._page(request, "confirm_delete.html", context)
        _check_same_origin(request)
        form = await _read_form(request)
        token = form.get("token", "")
        if not hmac.compare_digest(token.encode(), self.delete_token(session_id).encode()):
            raise HTTPException(403, "The confirmation form is missing or out of date; open the delete page again")
        if form.get("confirm") != "yes":
            raise HTTPException(400, "Tick the confirmation box to delete the session")
        await self._run(self.repository.delete_session, session_id)
        logger.info("session_id=<%s> | deleted from the web viewer", session_id)
        return RedirectResponse("/" + query(deleted=session_id), status_code=303)

    async def error(self, request: Request, exc: Exception) -> Response:
        """An error page (HTML) with the right status."""
        if isinstance(exc, HTTPException):
            status, detail = exc.status_code, str(exc.detail)
        elif isinstance(exc, (SessionStoreUnavailableError, StorageUnavailableError)):
            status, detail = 503, f"The server is unavailable: {exc}"
        elif isinstance(exc, AccessDeniedError):
            # A wrong password, or an ACL that does not cover the viewer's reads: the server's setup.
            status, detail = 503, f"The server refused the viewer: {exc}"
        elif isinstance(exc, SessionNotFoundError):
            status, detail = 404, str(exc)
        else:
            logger.warning("error while rendering %s", request.url.path, exc_info=exc)
            status, detail = 500, f"{type(exc).__name__}: {exc}"
        headers = getattr(exc, "headers", None) or {}
        return self.templates.TemplateResponse(
            request, "error.html", {"status": status, "detail": detail}, status_code=status, headers=headers
        )


def _inline_media(path: tuple[int, ...], kind: str, fmt: str, data: bytes) -> str | None:
    return render.data_uri(kind, fmt, data)


def _inline_media_for(redacted: bool) -> render.MediaUrl:
    """Snapshot messages have no block endpoint: small images go inline as ``data:`` URIs."""
    return _inline_media


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _reason(error: Exception) -> str:
    """An error's message without the ``name=<value>`` fields the page already shows."""
    return str(error)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _day(raw: str | None, name: str, *, end_of_day: bool = False) -> datetime | None:
    """A ``YYYY-MM-DD`` query parameter as the first (or last) moment of that day, UTC."""
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError as e:
        raise HTTPException(400, f"Bad filter: {name} must be a date as YYYY-MM-DD") from e
    start = datetime.combine(day, time(0), tzinfo=timezone.utc)
    return start + timedelta(days=1) - timedelta(milliseconds=1) if end_of_day else start


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _bounded_int(raw: str | None, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        return default
    return min(max(value, low), high)


def _check_same_origin(request: Request) -> None:
    """Refuse a POST sent by another site's page (the token already does; this is a second lock)."""
    origin = request.headers.get("origin")
    if origin is not None and (origin == "null" or urlsplit(origin).netloc != request.headers.get("host")):
        raise HTTPException(403, "Cross-origin request refused")
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise HTTPException(403, "Cross-site request refused")


async def _read_form(request: Request) -> dict[str, str]:
    """A small urlencoded form body (no multipart dependency)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise HTTPException(415, "Expected a form")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            raise HTTPException(413, "Form too large")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=10)
    except (UnicodeDecodeError, ValueError) as e:
        raise HTTPException(400, "Unreadable form") from e
    return {k: v[0] for k, v in fields.items()}


# -- middleware ----------------------------------------------------------------------------------


class _RouteOnRawPath:
    """Route on the path as sent, still percent-encoded, so an id holding ``/`` stays one segment.

    Servers hand ASGI apps ``path`` already decoded (``a%2Fb`` becomes ``a/b``); the undecoded
    ``raw_path`` is what the routes match, and handlers decode ids with :func:`id_from_segment`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if raw:
            scope = dict(scope)
            scope["path"] = raw.decode("latin-1").split("?", 1)[0]
        await self.app(scope, receive, send)


class _SecurityHeaders:
    """CSP and friends on every response (a handler's own CSP wins)."""

    _DEFAULTS: Final = (
        (b"content-security-policy", _PAGE_CSP.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"x-frame-options", b"DENY"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"cross-origin-resource-policy", b"same-origin"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend((name, value) for name, value in self._DEFAULTS if name not in present)
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
