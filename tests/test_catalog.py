"""The session catalog: newest-first pages by owner and tag, from indexes, on every server."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from strands.types.exceptions import SessionException
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import DamagedSessionError, SessionPage, ValkeySessionRepository, catalog
from strands_valkey_session_manager._keys import CATALOG_SHARDS, session_id_of_member


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


@pytest.mark.validation
@pytest.mark.parametrize(
    ("kwargs", "match"), [({"limit": 0}, "limit"), ({"limit": 5000}, "limit"), ({"cursor": 5}, "cursor")]
)
def test_bad_listing_arguments(client: Any, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ValkeySessionRepository(client).list_sessions(**kwargs)


@pytest.mark.validation
@pytest.mark.parametrize("bad", [{"user_id": 5}, {"tags": "solo"}, {"tags": [""]}])
def test_bad_owner_arguments(client: Any, bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ValkeySessionRepository(client, **bad)


# -- helpers: stepping a plan, damaging a session ---------------------------------------------------


def _drive(repo: ValkeySessionRepository, plan: Any, before: Any = None) -> Any:
    """Run a plan round trip by round trip on the repository's adapter; ``before(step)`` runs
    before each step is sent (another client's operations, deterministically between two steps)."""
    reply = None
    try:
        while True:
            step = plan.send(reply)
            if before is not None:
                before(step)
            reply = repo._db.execute(step.call)
    except StopIteration as done:
        return done.value


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _agent(agent_id: str = "a") -> SessionAgent:
    return SessionAgent(agent_id=agent_id, state={}, conversation_manager_state={"__name__": "X"})


def _msg(i: int) -> SessionMessage:
    return SessionMessage(message={"role": "user", "content": [{"text": f"m{i}"}]}, message_id=i)


# -- prune re-checks in its delete --------------------------------------------------------------------


def test_prune_keeps_a_session_written_between_its_listing_and_its_delete(client: Any) -> None:
    repo = _populate(client, 4)
    other = ValkeySessionRepository(client)
    for session_id in ("s01", "s02"):
        client.hset(repo.session_keys(session_id).session, "updated", 1_600_000_000_000)
    written: list[str] = []

    def write_s01_once(step: Any) -> None:
        # Between the listing (which found s01 idle) and prune's first delete: another writer.
        if step.operation == "delete_session" and not written:
            other.create_agent("s01", _agent())
            other.create_message("s01", "a", _msg(0))
            written.append("s01")

    visited: dict[str, bool] = {}
    plan = catalog.p_prune(repo, 3600, False, lambda info, gone: visited.__setitem__(info.session_id, gone))
    assert _drive(repo, plan, write_s01_once) == 1
    assert written == ["s01"]
    assert visited == {"s00": False, "s01": False, "s02": True, "s03": False}
    assert [m.message_id for m in repo.list_messages("s01", "a")] == [0]
    assert repo.read_session("s02") is None
    assert _ids(repo.list_sessions()) == ["s03", "s01", "s00"]


def test_prune_keeps_a_session_deleted_and_created_again_under_the_same_id(client: Any) -> None:
    repo = _populate(client, 2)
    client.hset(repo.session_keys("s01").session, "updated", 1_600_000_000_000)
    swapped: list[str] = []

    def recreate(step: Any) -> None:
        if step.operation == "delete_session" and not swapped:
            repo.delete_session("s01")
            repo.create_session(_session("s01", 1_700_000_999_000))
            # Old again: only the catalog member tells the new session from the one prune listed.
            client.hset(repo.session_keys("s01").session, "updated", 1_600_000_000_000)
            swapped.append("s01")

    assert _drive(repo, catalog.p_prune(repo, 3600, False, None), recreate) == 0
    assert repo.read_session("s01") is not None


# -- damaged sessions: listed around, reported, deletable -------------------------------------------


def _damage(client: Any, repo: ValkeySessionRepository, session_id: str, how: str) -> str:
    """Damage a session; returns the key at fault."""
    keys = repo.session_keys(session_id)
    if how == "hash-is-a-string":
        client.delete(keys.session)
        client.set(keys.session, "not a hash")
        return keys.session
    if how == "agents-is-a-list":
        client.delete(keys.agents)
        client.rpush(keys.agents, "x")
        return keys.agents
    assert how == "hash-evicted"
    client.delete(keys.session)
    return keys.session


def _conversation(repo: ValkeySessionRepository, session_id: str) -> None:
    repo.create_agent(session_id, _agent())
    repo.create_message(session_id, "a", _msg(0))


DAMAGES = ["hash-is-a-string", "agents-is-a-list", "hash-evicted"]


@pytest.mark.parametrize("how", DAMAGES)
def test_listing_skips_and_reports_a_damaged_session(client: Any, how: str) -> None:
    repo = _populate(client, 5)
    for session_id in ("s01", "s03"):
        _conversation(repo, session_id)
    key = _damage(client, repo, "s03", how)
    page = repo.list_sessions(limit=3)
    assert _ids(page) == ["s04", "s02", "s01"]
    assert [(d.session_id, d.key) for d in page.damaged] == [("s03", key)]
    assert ("missing" if how == "hash-evicted" else "WRONGTYPE") in page.damaged[0].reason
    rest = repo.list_sessions(cursor=page.cursor)
    assert _ids(rest) == ["s00"] and rest.damaged == []
    assert _ids(repo.list_sessions(user_id="user0", tag="odd")) == []  # s03: user0, odd, damaged
    assert [d.session_id for d in repo.list_sessions(user_id="user0").damaged] == ["s03"]
    with pytest.raises(DamagedSessionError, match=re.escape(f"key=<{key}>")):
        repo.session_info("s03")


@pytest.mark.parametrize("how", DAMAGES)
def test_prune_skips_and_reports_a_damaged_session_and_delete_removes_it(client: Any, how: str) -> None:
    repo = _populate(client, 3)
    _conversation(repo, "s01")
    for session_id in ("s00", "s01", "s02"):
        client.hset(repo.session_keys(session_id).session, "updated", 1_600_000_000_000)
    key = _damage(client, repo, "s01", how)
    reported: list[Any] = []
    assert repo.prune(3600, on_damaged=reported.append) == 2
    assert [(d.session_id, d.key) for d in reported] == [("s01", key)]
    assert client.exists(*repo.session_keys("s01").all()) > 0
    repo.delete_session("s01")
    assert client.exists(*repo.session_keys("s01").all()) == 0
    assert repo.list_sessions() == SessionPage([], None, [])
    with pytest.raises(SessionException, match="does not exist"):
        repo.delete_session("s01")
    repo.create_session(_session("s01", 1_700_000_000_000))  # the id is usable again
    assert _ids(repo.list_sessions()) == ["s01"]


@pytest.mark.backends("valkey9")
@pytest.mark.parametrize("how", DAMAGES)
def test_cli_lists_prunes_and_deletes_around_a_damaged_session(standalone_client: Any, how: str) -> None:
    from typer.testing import CliRunner

    from strands_valkey_session_manager.cli.command import app

    client = standalone_client
    url = f"valkey://{client.connection_pool.connection_kwargs['host']}:{client.connection_pool.connection_kwargs['port']}"
    repo = _populate(client, 3)
    _conversation(repo, "s01")
    key = _damage(client, repo, "s01", how)
    runner = CliRunner()
    listed = runner.invoke(app, ["--url", url, "sessions"])
    assert listed.exit_code == 0, listed.output
    assert "s02" in listed.output and "s00" in listed.output
    assert "damaged" in listed.output and key in listed.output
    as_json = json.loads(runner.invoke(app, ["--url", url, "sessions", "--json"]).stdout)
    assert [s["session_id"] for s in as_json["sessions"]] == ["s02", "s00"]
    assert [(d["session_id"], d["key"]) for d in as_json["damaged"]] == [("s01", key)]
    client.hset(repo.session_keys("s00").session, "updated", 1_600_000_000_000)
    pruned = runner.invoke(app, ["--url", url, "prune", "--older-than", "1h", "--yes"])
    assert pruned.exit_code == 0, pruned.output
    assert "deleted 1 sessions" in pruned.output and key in pruned.output
    deleted = runner.invoke(app, ["--url", url, "delete", "s01", "--yes"])
    assert deleted.exit_code == 0, deleted.output
    assert client.exists(*repo.session_keys("s01").all()) == 0
    assert _ids(repo.list_sessions()) == ["s02"]


# -- leftovers: create refuses, delete removes ------------------------------------------------------


def test_create_over_leftover_keys_is_refused_naming_them(client: Any) -> None:
    repo = ValkeySessionRepository(client)
    repo.create_session(_session("s", 1_700_000_000_000))
    _conversation(repo, "s")
    keys = repo.session_keys("s")
    client.delete(keys.session)  # evicted alone: agents, messages and order remain
    with pytest.raises(DamagedSessionError) as caught:
        repo.create_session(_session("s", 1_700_000_001_000))
    for key in (keys.agents, keys.messages, keys.order):
        assert key in str(caught.value)
    assert keys.multi not in str(caught.value).split("|", 1)[1]
    assert client.exists(keys.agents, keys.messages, keys.order) == 3  # nothing destroyed
    assert client.exists(keys.session) == 0
    with pytest.raises(DamagedSessionError, match="rest of a conversation"):
        ValkeySessionRepository(client).create_session(_session("s", 1_700_000_002_000))
    # No catalog entry is left behind by the refused creates.
    shard = repo._layout.catalog_index(repo._layout.catalog_shard("s"))
    assert client.zcard(shard) == 1  # the first create's entry (the session is damaged, not gone)
    repo.delete_session("s")
    assert client.exists(*keys.all()) == 0
    repo.create_session(_session("s", 1_700_000_003_000))
    assert repo.list_messages("s", "a") == []


# -- expiry index: the catalog of expired sessions empties without listing ---------------------------


def _await_gone(client: Any, key: str, limit: float = 10.0) -> None:
    """Wait until ``key`` has expired on the server (an event on the server, polled)."""
    import time

    deadline = time.monotonic() + limit
    while client.exists(key):
        assert time.monotonic() < deadline, f"{key} did not expire"
        time.sleep(0.05)


def _catalog_members(client: Any, repo: ValkeySessionRepository, expiry: bool = False) -> list[str]:
    layout = repo._layout
    keys = [layout.catalog_expiry(s) if expiry else layout.catalog_index(s) for s in range(CATALOG_SHARDS)]
    return [_text(m) for key in keys for m in client.zrange(key, 0, -1)]


def _dbsize(backend: Any) -> int:
    import valkey

    total = 0
    for node in backend.nodes:
        admin: Any = valkey.Valkey(node.host, node.port)
        try:
            if admin.execute_command("ROLE")[0] in (b"master", "master"):
                total += admin.dbsize()
        finally:
            admin.close()
    return total


@pytest.mark.slow
@pytest.mark.backends("valkey9", "redis7", "cluster")
def test_expired_sessions_leave_the_catalog_under_churn_without_listing(backend: Any) -> None:
    """2,000 sessions with a 3 s ttl expire, then 600 new sessions are created: every create sweeps
    up to 8 due entries of its own shard, so once each shard has had ceil(expired/8) creates, the
    catalog holds only live sessions, and no key of an expired session is left. Nobody lists."""
    client = backend.make_client("valkey-cluster-bytes" if backend.is_cluster else "valkey-py-bytes")
    try:
        # 3 s: long enough that the 2,000 creates (slower on a busy machine) finish before the first expires.
        short = ValkeySessionRepository(client, ttl=3, user_id="churner", tags=["brief"])
        layout = short._layout
        expired = [f"old-{i}" for i in range(2000)]
        churn = [f"new-{i}" for i in range(600)]
        per_shard_old = [0] * CATALOG_SHARDS
        per_shard_new = [0] * CATALOG_SHARDS
        for session_id in expired:
            per_shard_old[layout.catalog_shard(session_id)] += 1
        for session_id in churn:
            per_shard_new[layout.catalog_shard(session_id)] += 1
        # Deterministic (the shard is a hash of the id): every shard gets enough creates.
        assert all(new * 8 >= old for old, new in zip(per_shard_old, per_shard_new, strict=True))
        for session_id in expired:
            short.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))
        _await_gone(client, short.session_keys(expired[-1]).session)
        assert len(_catalog_members(client, short)) > 1000  # expired, still listed: nobody swept yet
        lasting = ValkeySessionRepository(client, ttl=600)
        for session_id in churn:
            lasting.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))
        listed = _catalog_members(client, short)
        assert len(listed) == len(churn)
        assert sorted(session_id_of_member(m) for m in listed) == sorted(churn)
        assert len(_catalog_members(client, short, expiry=True)) == len(churn)
        # No key of an expired session remains: per-user and per-tag indexes went with the entries.
        # What is left: one session hash per live session, 16 catalog shards, 16 expiry shards.
        assert _dbsize(backend) == len(churn) + 2 * CATALOG_SHARDS
    finally:
        client.close()


@pytest.mark.backends("valkey9", "redis7", "cluster")
def test_sweep_catalog_unlists_expired_sessions_and_refiles_living_ones(client: Any) -> None:
    short = ValkeySessionRepository(client, ttl=1, user_id="u", tags=["t1", "t2"])
    for i in range(5):
        short.create_session(Session(session_id=f"gone-{i}", session_type=SessionType.AGENT))
    short.create_session(Session(session_id="kept", session_type=SessionType.AGENT))
    # Another writer with a longer ttl slides the session: its recorded expiry is now too early.
    ValkeySessionRepository(client, ttl=600).create_agent("kept", _agent())
    for i in range(5):
        _await_gone(client, short.session_keys(f"gone-{i}").session)
    import time

    while int(_catalog_members(client, short, expiry=True)[0].split(":", 1)[0]) >= time.time() * 1000:
        time.sleep(0.05)  # the entries fall due by the client's clock
    assert short.sweep_catalog() == 5
    assert [session_id_of_member(m) for m in _catalog_members(client, short)] == ["kept"]
    (refiled,) = _catalog_members(client, short, expiry=True)
    assert int(refiled.split(":", 1)[0]) > time.time() * 1000 + 500_000
    layout = short._layout
    for shard in range(CATALOG_SHARDS):
        for key in (layout.catalog_index(shard, user_id="u"), layout.catalog_index(shard, tag="t1")):
            assert [session_id_of_member(_text(m)) for m in client.zrange(key, 0, -1)] in ([], ["kept"])
    assert short.sweep_catalog() == 0
    assert _ids(short.list_sessions()) == ["kept"]


@pytest.mark.backends("valkey9", "redis7", "cluster")
def test_delete_and_overwrite_remove_the_expiry_entry(client: Any) -> None:
    repo = ValkeySessionRepository(client, ttl=600, user_id="u", tags=["t"])
    repo.create_session(_session("s", 1_700_000_000_000))
    repo.create_session(_session("kept", 1_700_000_000_000))
    exported = repo.export_session("s")
    assert len(_catalog_members(client, repo, expiry=True)) == 2
    assert repo.import_session(exported, overwrite=True) == "s"
    assert sorted(m.split(":")[2] for m in _catalog_members(client, repo, expiry=True)) == ["kept", "s"]
    repo.delete_session("s")
    assert [m.split(":")[2] for m in _catalog_members(client, repo, expiry=True)] == ["kept"]
    repo.delete_session("kept")
    assert _catalog_members(client, repo, expiry=True) == []
