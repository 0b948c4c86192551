"""``AsyncValkeySessionRepository``: the repository for asyncio code (FastAPI endpoints, workers).

The same plans as the synchronous ``ValkeySessionRepository`` (``_core.py``), driven on an asyncio
client of valkey-py or redis-py (``valkey.asyncio.Valkey``, ``redis.asyncio.Redis`` and their
cluster clients). Keys, encoding, scripts, round trips and errors are identical; only the waiting
differs. The client is bound to the event loop it was created in, as asyncio clients are.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from strands.types.session import Session, SessionAgent, SessionMessage

from . import catalog, transfer
from ._client import adapter_for, aretrying, arun_plan, is_repeat
from ._core import SessionCore
from ._lifetime import Duration
from ._options import RepositoryKwargs, RepositoryOptions, options_from
from .catalog import DamagedSession, SessionInfo, SessionPage
from .exceptions import CorruptRecordError, DamagedSessionError, ValkeySessionError
from .transfer import SessionExport, export_lines, parse_export

if TYPE_CHECKING:
    from strands.multiagent.base import MultiAgentBase
    from typing_extensions import Unpack


class AsyncValkeySessionRepository(SessionCore):
    """Every method of :class:`~strands_valkey_session_manager.ValkeySessionRepository`, as coroutines.

    Takes the same options as the synchronous repository; see its docstring for their meaning and
    each method's docstring there for its contract.

    Raises:
        TypeError: If ``client`` is not an asyncio valkey-py or redis-py client.
    """

    def __init__(
        self, client: Any, *, options: RepositoryOptions | None = None, **kwargs: Unpack[RepositoryKwargs]
    ) -> None:
        opts = options_from(type(self).__name__, options, kwargs)
        SessionCore.__init__(self, opts)
        self._db = adapter_for(client, opts.retry_policy(), is_async=True, durability=opts.durability())

    @property
    def client(self) -> Any:
        """The client this repository sends commands on."""
        return self._db.client

    @aretrying
    async def create_session(
        self, session: Session, *, user_id: str | None = None, tags: Sequence[str] | None = None
    ) -> Session:
        """Create a session and list it in the catalog (raises if it exists)."""
        return await arun_plan(self._db, self._p_create_session(session, user_id, tags))

    @aretrying
    async def read_session(self, session_id: str) -> Session | None:
        """The session record, or ``None``."""
        return await arun_plan(self._db, self._p_read_session(session_id))

    @aretrying
    async def delete_session(self, session_id: str) -> None:
        """Delete the session and everything in it (raises if it does not exist; a repeat after a
        lost reply that finds it gone is the first attempt's delete, not an error)."""
        await arun_plan(self._db, self._p_delete_session(session_id, missing_ok=is_repeat()))

    @aretrying
    async def create_agent(self, session_id: str, session_agent: SessionAgent) -> None:
        """Store an agent record."""
        await arun_plan(self._db, self._p_create_agent(session_id, session_agent))

    @aretrying
    async def read_agent(self, session_id: str, agent_id: str) -> SessionAgent | None:
        """The agent record, or ``None``."""
        try:
            return await arun_plan(self._db, self._p_read_agent(session_id, agent_id))
        except DamagedSessionError:
            raise
        except CorruptRecordError:
            # The pipeline's error does not say which key it met (a key of the wrong type, or a
            # record that is not ours): each hash read alone raises naming a key of the wrong type;
            # else the first error stands. Failure path only.
            await arun_plan(self._db, self._p_name_wrong_type(session_id, agent_id))
            raise

    @aretrying
    async def update_agent(self, session_id: str, session_agent: SessionAgent) -> None:
        """Replace an agent record, keeping its ``created_at``."""
        await arun_plan(self._db, self._p_update_agent(session_id, session_agent))

    @aretrying
    async def create_message(self, session_id: str, agent_id: str, session_message: SessionMessage) -> None:
        """Store a message (overwriting one with the same id)."""
        await arun_plan(self._db, self._p_create_message(session_id, agent_id, session_message))

    @aretrying
    async def read_message(self, session_id: str, agent_id: str, message_id: int) -> SessionMessage | None:
        """One message, or ``None``."""
        return await arun_plan(self._db, self._p_read_message(session_id, agent_id, message_id))

    @aretrying
    async def update_message(self, session_id: str, agent_id: str, session_message: SessionMessage) -> None:
        """Replace a message, keeping its ``created_at``."""
        await arun_plan(self._db, self._p_update_message(session_id, agent_id, session_message))

    @aretrying
    async def list_messages(
        self, session_id: str, agent_id: str, limit: int | None = None, offset: int = 0
    ) -> list[SessionMessage]:
        """An agent's messages sorted by id, then sliced ``[offset:offset + limit]``."""
        return await arun_plan(self._db, self._p_list_messages(session_id, agent_id, limit, offset))

    @aretrying
    async def create_multi_agent(self, session_id: str, multi_agent: MultiAgentBase) -> None:
        """Store an orchestrator's state."""
        await arun_plan(self._db, self._p_create_multi_agent(session_id, multi_agent))

    @aretrying
    async def read_multi_agent(self, session_id: str, multi_agent_id: str) -> dict[str, Any] | None:
        """An orchestrator's state, or ``None``."""
        return await arun_plan(self._db, self._p_read_multi_agent(session_id, multi_agent_id))

    @aretrying
    async def update_multi_agent(self, session_id: str, multi_agent: MultiAgentBase) -> None:
        """Replace an orchestrator's state."""
        await arun_plan(self._db, self._p_update_multi_agent(session_id, multi_agent))

    @aretrying
    async def session_info(self, session_id: str) -> SessionInfo | None:
        """Catalog view of one session, or ``None``."""
        return await arun_plan(self._db, catalog.p_session_info(self._layout, session_id))

    @aretrying
    async def list_sessions(
        self, user_id: str | None = None, tag: str | None = None, cursor: str | None = None, limit: int = 50
    ) -> SessionPage:
        """A page of sessions, newest first."""
        return await arun_plan(self._db, catalog.p_list_sessions(self._layout, user_id, tag, cursor, limit))

    async def iter_sessions(
        self, user_id: str | None = None, tag: str | None = None, page_size: int = 200
    ) -> AsyncIterator[SessionInfo]:
        """Every listed session, newest first, fetched page by page."""
        cursor: str | None = None
        while True:
            page = await self.list_sessions(user_id=user_id, tag=tag, cursor=cursor, limit=page_size)
            for info in page.sessions:
                yield info
            if page.cursor is None:
                return
            cursor = page.cursor

    async def prune(
        self,
        older_than: Duration,
        *,
        dry_run: bool = False,
        on_session: Callable[[SessionInfo, bool], None] | None = None,
        on_damaged: Callable[[DamagedSession], None] | None = None,
    ) -> int:
        """Delete every session whose last write is older than ``older_than`` (see the sync face)."""
        return await arun_plan(self._db, catalog.p_prune(self, older_than, dry_run, on_session, on_damaged))

    @aretrying
    async def sweep_catalog(self) -> int:
        """Remove the catalog entries of every expired session; returns how many (see the sync face)."""
        return await arun_plan(self._db, catalog.p_sweep_catalog(self._layout))

    async def fork_session(
        self, source_id: str, target_id: str, *, user_id: str | None = None, tags: Sequence[str] | None = None
    ) -> None:
        """Copy a session to a new id on the server."""
        await arun_plan(self._db, transfer.p_fork_session(self, source_id, target_id, user_id, tags))

    async def export_records(self, session_id: str) -> SessionExport:
        """Read a whole session."""
        return await arun_plan(self._db, transfer.p_export_records(self, session_id))

    async def export_session(self, session_id: str) -> str:
        """A whole session as JSON Lines."""
        return "".join(line + "\n" for line in export_lines(await self.export_records(session_id)))

    async def import_session(self, jsonl: str | bytes | Iterable[str], *, overwrite: bool = False) -> str:
        """Write a session from an export; returns its id (``overwrite``: all or nothing, see the sync face)."""
        export = parse_export(jsonl)
        await self.write_export(export, overwrite=overwrite)
        return export.session.session_id

    async def write_export(self, export: SessionExport, *, overwrite: bool = False) -> None:
        """Write a parsed export into a new session, or in place of what the id holds (``overwrite``)."""
        try:
            await arun_plan(self._db, transfer.p_write_export(self, export, overwrite))
        except ValkeySessionError:
            if overwrite:  # best effort: leftovers of the staging are unlisted and expire anyway
                with contextlib.suppress(ValkeySessionError):
                    await arun_plan(self._db, transfer.p_drop_staging(self, export.session.session_id))
            raise

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._db.client.aclose()
