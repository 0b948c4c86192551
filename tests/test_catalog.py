"""The session catalog: newest-first pages by owner and tag, from indexes, on every server."""

from __future__ import annotations

from typing import Any

import pytest
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import ValkeySessionRepository
from strands_valkey_session_manager._keys import CATALOG_SHARDS


def _session(session_id: str, created_ms: int) -> Session:
    from datetime import datetime, timezone

    created = datetime.fromtimestamp(created_ms / 1000, timezone.utc).isoformat()
    return Session(session_id=session_id, session_type=SessionType.AGENT, created_at=created, updated_at=created)


def _populate(client: Any, count: int = 30) -> ValkeySessionRepository:
    repo = ValkeySessionRepository(client)
    for i in range(count):
        user = f"user{i % 3}"
        tags = ["even"] if i % 2 == 0 else ["odd", "prime"] if i in (3, 5, 7) else ["odd"]
        repo.create_session(_session(f"s{i:02d}", 1_700_000_000_000 + i * 1000), user_id=user, tags=tags)
    return repo


def _ids(page: Any) -> list[str]:
    return [s.session_id for s in page.sessions]


def test_pages_newest_first_with_cursor(client: Any) -> None:
    repo = _populate(client)
    seen: list[str] = []
    cursor = None
    while True:
        page = repo.list_sessions(cursor=cursor, limit=7)
        seen += _ids(page)
        if page.cursor is None:
            break
        cursor = page.cursor
    assert seen == [f"s{i:02d}" for i in reversed(range(30))]


def test_filters_by_user_and_tag(client: Any) -> None:
    repo = _populate(client)
    assert _ids(repo.list_sessions(user_id="user1")) == [f"s{i:02d}" for i in reversed(range(30)) if i % 3 == 1]
    assert _ids(repo.list_sessions(tag="prime")) == ["s07", "s05", "s03"]
    assert _ids(repo.list_sessions(user_id="user1", tag="even")) == [
        f"s{i:02d}" for i in reversed(range(30)) if i % 3 == 1 and i % 2 == 0
    ]
    assert _ids(repo.list_sessions(user_id="nobody")) == []


def test_session_info_counts_agents_and_messages(client: Any) -> None:
    repo = ValkeySessionRepository(client, user_id="ann", tags=["support", "vip"])
    repo.create_session(Session(session_id="s", session_type=SessionType.AGENT))
    for agent_id, count in [("a", 3), ("b:{x}", 1), ("empty", 0)]:
        repo.create_agent("s", SessionAgent(agent_id=agent_id, state={}, conversation_manager_state={}))
        for i in range(count):
            message = SessionMessage(message={"role": "user", "content": [{"text": "x"}]}, message_id=i)
            repo.create_message("s", agent_id, message)
    # Overwriting an id (the SDK reuses ids) does not count twice.
    repo.create_message("s", "a", SessionMessage(message={"role": "user", "content": []}, message_id=0))
    info = repo.session_info("s")
    assert info is not None
    assert info.user_id == "ann"
    assert info.tags == ("support", "vip")
    assert info.message_counts == {"a": 3, "b:{x}": 1, "empty": 0}
    assert info.agent_ids == ["a", "b:{x}", "empty"]
    assert info.message_count == 4
    assert info.expires_in is None
    assert info.updated_at >= info.created_at
    assert repo.session_info("missing") is None


def test_delete_removes_catalog_entries(client: Any) -> None:
    repo = _populate(client, 6)
    repo.delete_session("s04")
    assert "s04" not in _ids(repo.list_sessions())
    assert "s04" not in _ids(repo.list_sessions(user_id="user1"))
    assert "s04" not in _ids(repo.list_sessions(tag="even"))
    index = repo._layout.catalog_index(repo._layout.catalog_shard("s04"), tag="even")
    assert not [m for m in client.zrange(index, 0, -1) if b"s04" in (m if isinstance(m, bytes) else m.encode())]


def test_entry_without_session_is_dropped(client: Any) -> None:
    repo = _populate(client, 3)
    # A writer that died between the catalog entry and the session script leaves an orphan entry.
    layout = repo._layout
    from strands_valkey_session_manager._keys import catalog_member

    orphan = catalog_member(1_800_000_000_000, "ghost")
    client.zadd(layout.catalog_index(layout.catalog_shard("ghost")), {orphan: 0})
    assert _ids(repo.list_sessions()) == ["s02", "s01", "s00"]
    assert client.zscore(layout.catalog_index(layout.catalog_shard("ghost")), orphan) is None


def test_hot_user_spreads_over_shards(client: Any) -> None:
    repo = ValkeySessionRepository(client, user_id="hot")
    for i in range(64):
        repo.create_session(Session(session_id=f"hot-{i}", session_type=SessionType.AGENT))
    layout = repo._layout
    used = [s for s in range(CATALOG_SHARDS) if client.zcard(layout.catalog_index(s, user_id="hot"))]
    assert len(used) > CATALOG_SHARDS // 2
    assert len(repo.list_sessions(user_id="hot", limit=100).sessions) == 64


def test_create_of_existing_session_leaves_one_entry(client: Any) -> None:
    repo = ValkeySessionRepository(client)
    repo.create_session(Session(session_id="s", session_type=SessionType.AGENT))
    with pytest.raises(Exception, match="already exists"):
        repo.create_session(Session(session_id="s", session_type=SessionType.AGENT))
    assert _ids(repo.list_sessions()) == ["s"]


def test_prune_deletes_idle_sessions(client: Any) -> None:
    repo = _populate(client, 4)
    assert repo.prune(older_than=3600, dry_run=True) == 0
    keys = repo.session_keys("s01")
    client.hset(keys.session, "updated", 1_600_000_000_000)
    visited: list[tuple[str, bool]] = []
    assert repo.prune(older_than=3600, dry_run=True, on_session=lambda i, d: visited.append((i.session_id, d))) == 1
    assert ("s01", True) in visited
    assert repo.read_session("s01") is not None
    assert repo.prune(older_than=3600) == 1
    assert repo.read_session("s01") is None
    assert _ids(repo.list_sessions()) == ["s03", "s02", "s00"]


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"limit": 0}, "limit"), ({"limit": 5000}, "limit"), ({"cursor": 5}, "cursor")]
)
def test_bad_listing_arguments(client: Any, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ValkeySessionRepository(client).list_sessions(**kwargs)


@pytest.mark.parametrize("bad", [{"user_id": 5}, {"tags": "solo"}, {"tags": [""]}])
def test_bad_owner_arguments(client: Any, bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ValkeySessionRepository(client, **bad)
