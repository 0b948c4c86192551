"""The hot path of ``write``/``read``/``delete``: what is sent and what the write script does.

A synchronous client run inline (the default) sends a plain read, write or delete as its one
command, without the plan runner; everything else (an asyncio client, ``run_in_thread``, a write
waiting for replicas) runs the plan. The write script's server calls are counted with
``INFO commandstats`` (counts, never times): a value's overwrite and a new key each cost three.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import valkey

from strands_valkey_session_manager.exceptions import ValkeyStorageError
from strands_valkey_session_manager.storage import ValkeyStorage, _Connection
from tests.interleave import LostReplyProxy
from tests.servers import ServerProcess

KEY = "memory/m/note.md"


@pytest.fixture
def admin(server: ServerProcess) -> Iterator[Any]:
    client = valkey.Valkey(server.host, server.port, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


class _PlanRun(Exception):
    """Raised instead of running a plan (the test's marker)."""


@pytest.fixture
def no_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(self: _Connection, plan: Any, operation: str, key: str) -> Any:
        raise _PlanRun(operation)

    monkeypatch.setattr(_Connection, "run", refuse)


def test_plain_calls_on_an_inline_sync_client_need_no_plan(server: ServerProcess, no_plans: None) -> None:
    storage = ValkeyStorage(valkey.Valkey(server.host, server.port))
    try:
        asyncio.run(storage.write(KEY, b"tea"))
        assert asyncio.run(storage.read(KEY)) == b"tea"
        asyncio.run(storage.delete(KEY))
        assert asyncio.run(storage.read(KEY)) is None
    finally:
        storage.close()


@pytest.mark.parametrize("how", ["thread", "replicas", "conditional"])
def test_other_calls_run_their_plan(server: ServerProcess, no_plans: None, how: str) -> None:
    options: dict[str, Any] = {"thread": {"run_in_thread": True}, "replicas": {"wait_for_replicas": 1}}.get(how, {})
    storage = ValkeyStorage(valkey.Valkey(server.host, server.port), **options)
    try:
        with pytest.raises(_PlanRun):
            if how == "conditional":
                asyncio.run(storage.compare_and_write(KEY, b"tea", None))
            else:
                asyncio.run(storage.write(KEY, b"tea"))
    finally:
        storage.close()


@pytest.mark.parametrize("command", [b"GET", b"EVALSHA"])
def test_a_lost_reply_on_the_direct_path_is_repeated(server: ServerProcess, command: bytes) -> None:
    proxy = LostReplyProxy(server.port)
    storage = ValkeyStorage(valkey.Valkey("127.0.0.1", proxy.port), retries=2, retry_backoff=0)
    try:
        asyncio.run(storage.write(KEY, b"old"))
        proxy.lose_reply_to(command)
        if command == b"GET":
            assert asyncio.run(storage.read(KEY)) == b"old"
        else:
            asyncio.run(storage.write(KEY, b"new"))
            assert asyncio.run(storage.read(KEY)) == b"new"
        assert proxy.lost == 1
        assert asyncio.run(storage.list("memory/")) == [KEY]
    finally:
        storage.close()
        proxy.close()


def _calls(admin: Any) -> dict[str, int]:
    stats = admin.info("commandstats")
    found = {name[len("cmdstat_") :]: int(entry["calls"]) for name, entry in stats.items()}
    return {name: calls for name, calls in found.items() if not name.startswith(("info", "config"))}


def test_the_write_script_makes_three_server_calls(server: ServerProcess, admin: Any) -> None:
    storage = ValkeyStorage(valkey.Valkey(server.host, server.port))
    try:
        asyncio.run(storage.write("warm/up", b"x"))  # loads the script
        cases = [
            ("new key", "session/s1/a.json", {"evalsha": 1, "zadd": 2, "set": 1}),  # group index, groups
            ("overwrite", "session/s1/a.json", {"evalsha": 1, "zadd": 1, "hget": 1, "set": 1}),  # postings
            ("new key, listed group", "session/s1/b.json", {"evalsha": 1, "zadd": 2, "set": 1}),
        ]
        for name, key, expected in cases:
            admin.config_resetstat()
            asyncio.run(storage.write(key, b"value"))
            assert _calls(admin) == expected, name
        assert asyncio.run(storage.list("")) == ["session/s1/a.json", "session/s1/b.json", "warm/up"]
    finally:
        storage.close()


def test_a_write_relists_the_group_its_last_delete_unlisted(server: ServerProcess) -> None:
    storage = ValkeyStorage(valkey.Valkey(server.host, server.port))
    try:
        asyncio.run(storage.write("notes/a", b"1"))
        asyncio.run(storage.delete("notes/a"))
        assert asyncio.run(storage.list("")) == []
        asyncio.run(storage.write("notes/a", b"2"))
        assert asyncio.run(storage.list("")) == ["notes/a"]
        assert asyncio.run(storage.list("no")) == ["notes/a"]
    finally:
        storage.close()


def test_an_unindexed_overwrite_removes_the_keys_postings(server: ServerProcess, admin: Any) -> None:
    """Another storage (or this one before ``search_index`` was set) overwriting an indexed key."""
    indexed = ValkeyStorage(valkey.Valkey(server.host, server.port), search_index=True)
    plain = ValkeyStorage(valkey.Valkey(server.host, server.port))
    try:
        asyncio.run(indexed.write(KEY, b"coffee tea"))
        assert [r.key for r in asyncio.run(indexed.search("coffee"))] == [KEY]
        asyncio.run(plain.write(KEY, b"water"))
        assert asyncio.run(indexed.search("coffee")) == []
        assert asyncio.run(indexed.search("note")) == []  # the key's name is no longer posted either
        assert admin.keys("*:d") == [] and admin.keys("*:p:*") == []
    finally:
        indexed.close()
        plain.close()


def test_a_refused_groups_index_writes_nothing(server: ServerProcess, admin: Any) -> None:
    """The groups index of the wrong type refuses a new key's listing: the script undoes the key's
    group index entry, so no key is listed without its value."""
    storage = ValkeyStorage(valkey.Valkey(server.host, server.port))
    try:
        admin.set(storage._layout.groups, "not a sorted set")
        with pytest.raises(ValkeyStorageError, match="WRONGTYPE"):
            asyncio.run(storage.write("session/s1/a.json", b"value"))
        assert asyncio.run(storage.list("session/s1/")) == []
        assert asyncio.run(storage.read("session/s1/a.json")) is None
    finally:
        storage.close()
