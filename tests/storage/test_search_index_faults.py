"""Every write path of the search index against a second real client and against faults.

Write paths: ``write`` (one script; on a cluster the groups index first, then the script),
``write`` of a staged large value (SET then the script, one pipeline), ``delete`` (one script),
and ``build_search_index`` (read, then post). Each is interleaved, round trip by round trip, with
another storage on its own client writing or deleting the same key; then a lost reply (the
server ran the command, the client never heard: ``LostReplyProxy``) and a killed connection
(``CLIENT KILL``) are each repeated by the retries to the same index.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import valkey
from strands.storage.search.keyword import KeywordSearchStrategy

from strands_valkey_session_manager._engine import Engine
from strands_valkey_session_manager.servers import ServerProcess
from strands_valkey_session_manager.storage import STAGE_BYTES, ValkeyStorage
from tests.interleave import LostReplyProxy

SCOPE = "memory/m"


def _storage(port: int, **kwargs: Any) -> ValkeyStorage:
    return ValkeyStorage(valkey.Valkey("127.0.0.1", port), search_index=True, **kwargs)


async def _same_as_scan(storage: ValkeyStorage, *queries: str) -> None:
    view = storage.namespace(SCOPE)
    for query in queries:
        want = [(r.key, r.score) for r in await KeywordSearchStrategy().search(view, query)]
        assert [(r.key, r.score) for r in await view.search(query)] == want, query


def _stepwise(storage: ValkeyStorage, plan: Any) -> list[Callable[[], None]]:
    """The plan's round trips, each a callable that sends one (in order)."""
    engine = storage._io.engine
    assert isinstance(engine, Engine)
    state: dict[str, Any] = {"reply": None, "done": False}

    def step() -> None:
        try:
            sent = plan.send(state["reply"])
        except StopIteration:
            state["done"] = True
            return
        state["reply"] = engine.execute(sent.call)

    return [step] * 8  # more than any plan's round trips; extra calls finish the plan


@pytest.mark.parametrize("other", ["write", "delete"])
@pytest.mark.parametrize("split_groups", [False, True])
@pytest.mark.parametrize("size", [10, STAGE_BYTES])
@pytest.mark.parametrize("at", [0, 1, 2])
def test_write_interleaved_with_another_clients_write_or_delete(
    server: ServerProcess, other: str, split_groups: bool, size: int, at: int
) -> None:
    mine, theirs = _storage(server.port), _storage(server.port)
    mine._io.split_groups = split_groups  # the cluster plan (groups index first) on one server
    key = f"{SCOPE}/note.md"
    try:
        asyncio.run(theirs.write(key, b"old coffee"))
        loc = mine._locate(key)
        value = b"tea " + b"x" * size
        steps = _stepwise(mine, mine._write_plan(loc, value, key, "4 tea 1 note 0"))
        for i, step in enumerate(steps):
            if i == at:
                if other == "write":
                    asyncio.run(theirs.write(key, b"their water"))
                else:
                    asyncio.run(theirs.delete(key))
            step()
        asyncio.run(_same_as_scan(mine, "tea", "coffee", "water", "note"))
    finally:
        mine.close()
        theirs.close()


@pytest.mark.parametrize("other", ["write", "delete"])
@pytest.mark.parametrize("at", [0, 1, 2])
def test_backfill_interleaved_with_another_clients_write_or_delete(server: ServerProcess, other: str, at: int) -> None:
    plain = ValkeyStorage(valkey.Valkey("127.0.0.1", server.port))
    mine, theirs = _storage(server.port), _storage(server.port)
    key = f"{SCOPE}/note.md"
    try:
        asyncio.run(plain.write(key, b"old coffee"))
        steps = _stepwise(mine, mine._index_plan([mine._locate(key)], "memory/"))
        for i, step in enumerate(steps):
            if i == at:
                if other == "write":
                    asyncio.run(theirs.write(key, b"their water"))
                else:
                    asyncio.run(theirs.delete(key))
            step()
        asyncio.run(_same_as_scan(mine, "coffee", "water", "note"))
    finally:
        plain.close()
        mine.close()
        theirs.close()


@pytest.mark.parametrize("operation", ["write", "write-large", "delete", "backfill"])
def test_lost_reply_is_repeated_to_the_same_index(server: ServerProcess, operation: str) -> None:
    proxy = LostReplyProxy(server.port)
    storage = _storage(proxy.port, retries=3, retry_backoff=0)
    plain = ValkeyStorage(valkey.Valkey("127.0.0.1", server.port))
    key = f"{SCOPE}/note.md"
    try:
        asyncio.run(storage.write(f"{SCOPE}/other.md", b"tea"))
        if operation == "backfill":
            asyncio.run(plain.write(key, b"tea coffee"))
        else:
            asyncio.run(storage.write(key, b"old coffee"))
        proxy.lose_reply_to(b"EVALSHA")
        if operation == "write":
            asyncio.run(storage.write(key, b"tea water"))
        elif operation == "write-large":
            asyncio.run(storage.write(key, b"tea water " * (STAGE_BYTES // 8)))
        elif operation == "delete":
            asyncio.run(storage.delete(key))
        else:
            assert asyncio.run(storage.build_search_index("memory/")).done
        assert proxy.lost == 1
        asyncio.run(_same_as_scan(storage, "tea", "coffee", "water", "note"))
    finally:
        storage.close()
        plain.close()
        proxy.close()


@pytest.mark.parametrize("operation", ["write", "write-large", "delete"])
def test_killed_connection_is_repeated_to_the_same_index(server: ServerProcess, operation: str) -> None:
    storage = _storage(server.port, retries=2, retry_backoff=0)
    admin = valkey.Valkey(server.host, server.port)
    key = f"{SCOPE}/note.md"
    try:
        asyncio.run(storage.write(key, b"old coffee"))
        admin.client_kill_filter(_type="normal", skipme=True)
        if operation == "write":
            asyncio.run(storage.write(key, b"tea water"))
        elif operation == "write-large":
            asyncio.run(storage.write(key, b"tea water " * (STAGE_BYTES // 8)))
        else:
            asyncio.run(storage.delete(key))
        asyncio.run(_same_as_scan(storage, "tea", "coffee", "water", "note"))
        assert not admin.keys("*:w:*")  # no staged copy left behind
    finally:
        storage.close()
        admin.close()
