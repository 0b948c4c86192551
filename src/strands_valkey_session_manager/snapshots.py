"""``ValkeySnapshotSessionManager``: the SDK's ``SnapshotSessionManager`` with what ``ValkeyStorage`` adds.

It is the SDK's manager (same keys, same snapshots, same hooks: data moves freely between the two),
and on a :class:`~strands_valkey_session_manager.storage.ValkeyStorage`:

- ``list_snapshot_ids(agent, limit=, start_after=)`` reads one page (a sorted-set range with the
  cursor and the limit), not every key of the session as the SDK's does;
- ``delete_session()`` deletes every snapshot in 2 round trips whatever their number
  (:meth:`ValkeyStorage.delete_prefix`), and the session's stash data with them when no agent of
  this manager holds a stash (else the stash clears itself, as in the SDK);
- ``conditional_latest=True`` makes every ``snapshot_latest`` save (agents' and Graph/Swarm
  orchestrators') a compare-and-set on the value this manager last read or wrote there, so two
  replicas saving the same agent get :class:`StorageConflictError` instead of one silently
  overwriting the other.

On any other storage it behaves exactly as the SDK's manager (``conditional_latest`` needs a
``ValkeyStorage``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from strands._identifier import is_uuid7
from strands.session.snapshot_session_manager import (
    _IMMUTABLE_HISTORY,
    _SNAPSHOT_LATEST,
    SnapshotSessionManager,
    _session_prefix,
    _snapshots_prefix,
    _validate_snapshot_id,
)
from strands.storage.storage import _NAMESPACED

from .storage import KeyQuery, ValkeyStorage

if TYPE_CHECKING:
    from strands.storage.storage import Storage
    from strands.types.agent import LocalAgent

__all__ = ["ValkeySnapshotSessionManager"]

# The SDK's manager keeps its snapshots under this namespace of a raw storage.
_SESSIONS_NAMESPACE: Final = "session"
# The stash of the SDK's context manager (strands._context_manager.stash.STASH_PREFIX).
_STASH_PREFIX: Final = "context"
# An immutable snapshot's key inside its agent's history: snapshot_<uuid7>.json.
_HISTORY_KEY: Final = re.compile(r"snapshot_([\w-]+)\.json")


class ValkeySnapshotSessionManager(SnapshotSessionManager):
    """The SDK's ``SnapshotSessionManager``, paging and deleting through ``ValkeyStorage`` indexes.

    Args:
        session_id: As for ``SnapshotSessionManager``.
        storage: A :class:`ValkeyStorage` (or a view of one), or any SDK storage (then this is the
            SDK's manager). ``None``: the agent's ``storage``, as in the SDK.
        conditional_latest: Save ``snapshot_latest`` only over the value this manager last read
            (restore on init, ``restore_snapshot()``) or wrote there, or over no value for one it
            never read. Another process's save in between raises :class:`StorageConflictError` out
            of the save (the agent's call, or ``save_snapshot``) with nothing written; call
            ``restore_snapshot(agent)`` to take the other save, then go on. A save repeated after a
            lost reply is not a conflict. Needs a ``ValkeyStorage``.
        **kwargs: ``SnapshotSessionManager``'s other options (``save_latest_on``,
            ``snapshot_trigger``, ...).

    Raises:
        TypeError: If ``conditional_latest`` is set and the storage is not a ``ValkeyStorage``.
    """

    def __init__(
        self,
        session_id: str = "default-session",
        *,
        storage: Storage | None = None,
        conditional_latest: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(session_id, storage=storage, **kwargs)
        self._conditional_latest = conditional_latest
        if storage is not None:
            self._bind(storage)

    def _bind(self, storage: Storage) -> None:
        if not isinstance(storage, ValkeyStorage):
            if self._conditional_latest:
                raise TypeError(f"conditional_latest needs a ValkeyStorage, not {type(storage).__name__}")
            return  # the SDK's manager, as resolved by its constructor
        view = storage
        if getattr(storage, "_namespaced", None) is not _NAMESPACED:
            view = storage.namespace(_SESSIONS_NAMESPACE)
        if self._conditional_latest:
            view = view._conditional(_SNAPSHOT_LATEST)
        self._raw_storage = storage
        self._storage = view

    def initialize(self, agent: LocalAgent, **kwargs: Any) -> None:
        """Restore the agent from its latest snapshot, as the SDK's manager does; a manager made
        without ``storage`` takes the agent's here."""
        if self._storage is None and agent.storage is not None:
            self._bind(agent.storage)
        super().initialize(agent, **kwargs)

    @property
    def _valkey(self) -> ValkeyStorage | None:
        storage = self._storage
        return storage if isinstance(storage, ValkeyStorage) else None

    async def list_snapshot_ids(
        self, agent: LocalAgent, *, limit: int | None = None, start_after: str | None = None
    ) -> list[str]:
        """Immutable snapshot ids of an agent, oldest first, as the SDK's manager returns them.

        On a ``ValkeyStorage``, one page costs one round trip reading ``limit`` keys (plus one),
        however many snapshots the session holds; keys in the history that are not
        ``snapshot_<uuid7>.json`` are skipped (then another page may be read to fill ``limit``).

        Raises:
            ValueError: If ``start_after`` is not a valid snapshot id.
        """
        storage = self._valkey
        if storage is None:
            return await super().list_snapshot_ids(agent, limit=limit, start_after=start_after)
        if limit is not None and limit <= 0:
            return []
        if start_after is not None:
            _validate_snapshot_id(start_after)
        history = f"{_snapshots_prefix(self.session_id, agent.agent_id)}{_IMMUTABLE_HISTORY}/"
        cursor = None if start_after is None else f"{history}snapshot_{start_after}.json"
        ids: list[str] = []
        while True:
            keys = await storage.list(KeyQuery(history, start_after=cursor, limit=limit))
            for key in keys:
                match = _HISTORY_KEY.fullmatch(key, len(history))
                if match and is_uuid7(snapshot_id := match.group(1)):
                    ids.append(snapshot_id)
                    if limit is not None and len(ids) == limit:
                        return ids
            if limit is None or len(keys) < limit:
                return ids
            cursor = keys[-1]

    async def delete_session(self) -> None:
        """Delete every snapshot and the stash data of this session.

        On a ``ValkeyStorage``: the session's keys in 2 round trips whatever their number
        (``delete_prefix``), and in the same two, when no agent of this manager holds a stash,
        the session's stash data (``context/<session_id>/``) in the raw storage; an agent's stash
        is cleared by the stash itself, as in the SDK.
        """
        storage = self._valkey
        raw = self._raw_storage
        if storage is None or not isinstance(raw, ValkeyStorage):
            await super().delete_session()
            return
        prefixes = [storage._prefix + _session_prefix(self.session_id)]
        if self._agent_stash is None:
            prefixes.append(f"{raw._prefix}{_STASH_PREFIX}/{self.session_id}/")
        what = _session_prefix(self.session_id)
        await storage._run_indexed(lambda: storage._delete_prefix_plan(prefixes, what), "storage.delete_prefix", what)
        if self._agent_stash is not None:
            await self._delete_stash_data()
