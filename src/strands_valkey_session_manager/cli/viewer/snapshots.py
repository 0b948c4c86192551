"""Snapshot history of ``SnapshotSessionManager`` sessions kept in a :class:`ValkeyStorage`.

The SDK's snapshot manager writes, under the storage's ``session/`` namespace::

    session/<session id>/scopes/<agent|multiAgent>/<id>/snapshots/snapshot_latest.json
    session/<session id>/scopes/agent/<id>/snapshots/immutable_history/snapshot_<uuid7>.json

``ValkeyStorage.list`` of ``session/<session id>/`` reads one sorted set, so the viewer can show a
session's snapshots with one round trip. Keys are only ever built here from a session id and a
key that matches :data:`SNAPSHOT_KEY`, so a request cannot read other storage keys.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final

from strands.types.session import decode_bytes_values

from . import render

if TYPE_CHECKING:
    from ...storage import ValkeyStorage

NAMESPACE: Final = "session"
#: A snapshot key relative to ``session/<session id>/``.
SNAPSHOT_KEY: Final = re.compile(
    r"scopes/(?P<scope>agent|multiAgent)/(?P<owner>[^/]+)/snapshots/"
    r"(?:snapshot_latest\.json|immutable_history/snapshot_(?P<sid>[0-9a-fA-F-]{36})\.json)\Z"
)
#: History entries listed per agent (newest first); older ones stay reachable through the export.
MAX_HISTORY: Final = 50


@dataclass
class SnapshotRef:
    """One stored snapshot."""

    key: str
    snapshot_id: str | None
    #: Creation time from the UUIDv7 snapshot id (``None`` for ``snapshot_latest``).
    taken_at: datetime | None = None


@dataclass
class SnapshotOwner:
    """The snapshots of one agent or orchestrator."""

    scope: str
    owner_id: str
    latest: SnapshotRef | None = None
    history: list[SnapshotRef] = field(default_factory=list)
    history_total: int = 0


def session_prefix(session_id: str) -> str | None:
    """``session/<id>/``, or ``None`` for ids the SDK's snapshot manager refuses (path separators)."""
    if not session_id or "/" in session_id or "\\" in session_id or session_id in (".", ".."):
        return None
    return f"{NAMESPACE}/{session_id}/"


async def list_snapshots(storage: ValkeyStorage, session_id: str) -> list[SnapshotOwner]:
    """Every agent's and orchestrator's snapshots in one session (one storage listing)."""
    prefix = session_prefix(session_id)
    if prefix is None:
        return []
    owners: dict[tuple[str, str], SnapshotOwner] = {}
    for key in await storage.list(prefix):
        rest = key[len(prefix) :]
        match = SNAPSHOT_KEY.match(rest)
        if match is None:
            continue
        owner = owners.setdefault(
            (match["scope"], match["owner"]), SnapshotOwner(scope=match["scope"], owner_id=match["owner"])
        )
        if match["sid"] is None:
            owner.latest = SnapshotRef(key=rest, snapshot_id=None)
        else:
            owner.history.append(SnapshotRef(key=rest, snapshot_id=match["sid"], taken_at=uuid7_time(match["sid"])))
    for owner in owners.values():
        owner.history_total = len(owner.history)
        owner.history = sorted(owner.history, key=lambda r: r.key, reverse=True)[:MAX_HISTORY]
    return sorted(owners.values(), key=lambda o: (o.scope, o.owner_id))


async def read_snapshot(storage: ValkeyStorage, session_id: str, key: str) -> dict[str, Any] | None:
    """A snapshot's JSON with bytes decoded, or ``None`` if the key is not a snapshot or is gone.

    Raises:
        ValueError: If the stored value is not JSON.
    """
    prefix = session_prefix(session_id)
    if prefix is None or SNAPSHOT_KEY.match(key) is None:
        return None
    raw = await storage.read(prefix + key)
    if raw is None:
        return None
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("a snapshot must be a JSON object")
    decoded: dict[str, Any] = decode_bytes_values(value)
    return decoded


def uuid7_time(value: str) -> datetime | None:
    """The creation time inside a UUIDv7, or ``None`` if it is not one."""
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return None
    if parsed.version != 7:
        return None
    return datetime.fromtimestamp((parsed.int >> 80) / 1000, tz=timezone.utc)


def snapshot_session_ids(
    storage: ValkeyStorage, *, prefix: str = "", after: str | None = None, limit: int = 50
) -> tuple[list[str], str | None]:
    """Ids of sessions with snapshots, in id order, starting with ``prefix``; and the id to go on
    after (``None`` at the end).

    Reads the storage's index of groups (``session/<id>`` is one group), one ``ZRANGEBYLEX``,
    on the storage's (synchronous) client.
    """
    layout = storage._layout  # the storage's key layout: the groups index lists every session group
    base = f"{NAMESPACE}/{prefix}".encode()
    low = b"(" + f"{NAMESPACE}/{after}".encode() if after is not None else b"[" + base
    high = b"(" + base + b"\xff"
    try:
        members = storage.client.zrangebylex(layout.groups, low, high, start=0, num=limit + 1)
    except Exception as e:  # valkey-py and redis-py errors share no base class
        from ...storage import StorageUnavailableError

        raise StorageUnavailableError(f"listing snapshot sessions failed: {type(e).__name__}: {e}") from e
    names = [m.decode("utf-8") if isinstance(m, bytes) else str(m) for m in members]
    ids = [n[len(NAMESPACE) + 1 :] for n in names if "/" not in n[len(NAMESPACE) + 1 :]]
    more = ids[limit - 1] if len(names) > limit and len(ids) >= limit else None
    return ids[:limit], more


@dataclass
class SnapshotDiff:
    """What changed in a snapshot's ``data`` since the one before it (messages by count only)."""

    previous_key: str
    previous_taken_at: datetime | None
    messages_before: int
    messages_after: int
    #: Field name to unified diff lines (only fields that changed).
    fields: dict[str, list[render.DiffLine]]


async def snapshot_diff(
    storage: ValkeyStorage | None, session_id: str, key: str, snapshot: dict[str, Any]
) -> SnapshotDiff | None:
    """The changes from the previous snapshot of the same agent or orchestrator.

    For an immutable history entry the previous one is the next older entry; for
    ``snapshot_latest`` it is the newest history entry. ``None`` when there is none.
    """
    match = SNAPSHOT_KEY.match(key)
    prefix = session_prefix(session_id)
    if storage is None or match is None or prefix is None:
        return None
    history_dir = f"scopes/{match['scope']}/{match['owner']}/snapshots/immutable_history/"
    older = [k[len(prefix) :] for k in await storage.list(prefix + history_dir)]
    older = sorted(k for k in older if SNAPSHOT_KEY.match(k) and (match["sid"] is None or k < key))
    if not older:
        return None
    previous_key = older[-1]
    previous = await read_snapshot(storage, session_id, previous_key)
    if previous is None:
        return None
    before = previous.get("data") if isinstance(previous.get("data"), dict) else {}
    after = snapshot.get("data") if isinstance(snapshot.get("data"), dict) else {}
    assert isinstance(before, dict) and isinstance(after, dict)
    fields = {}
    for name in sorted(set(before) | set(after)):
        if name == "messages":
            continue
        lines = render.json_diff(before.get(name), after.get(name), old_name=previous_key, new_name=key)
        if lines:
            fields[name] = lines
    previous_match = SNAPSHOT_KEY.match(previous_key)
    return SnapshotDiff(
        previous_key=previous_key,
        previous_taken_at=uuid7_time(previous_match["sid"]) if previous_match and previous_match["sid"] else None,
        messages_before=len(before.get("messages") or []),
        messages_after=len(after.get("messages") or []),
        fields=fields,
    )
