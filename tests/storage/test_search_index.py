"""The native search index (``search_index=``): ranked like the SDK's keyword strategy, kept with
every write and delete, through ``namespace()`` views, on every backend and client family.

The reference is always the SDK's own ``KeywordSearchStrategy`` run over the same storage (it
lists and reads every key): the index must give the same keys, scores and order.
"""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
import valkey
from strands.storage.search.keyword import STOP_WORDS, KeywordSearchStrategy
from strands.storage.search.keyword import tokenize as sdk_tokenize
from strands.storage.storage import Storage

from strands_valkey_session_manager import search as search_module
from strands_valkey_session_manager.search import ValkeyIndexSearchStrategy
from strands_valkey_session_manager.storage import SEARCH_DATA_RESULTS, STAGE_BYTES, ValkeyStorage
from tests.conftest import Backend
from tests.roundtrips import count_round_trips
from tests.storage.conftest import StorageFactory

pytestmark = pytest.mark.anyio

WORDS = [
    "oauth",
    "token",
    "refresh",
    "dark",
    "mode",
    "toggle",
    "deploy",
    "cluster",
    "valkey",
    "redis",
    "python",
    "agent",
    "memory",
    "note",
    "user",
    "prefers",
    "tea",
    "coffee",
    "quarterly",
    "report",
    "budget",
    "review",
    "café",
    "naïve",
    "über",
    "東京",
    "data_set",
    "v2",
    "x1",
]


def corpus(seed: int, count: int) -> dict[str, str]:
    rng = random.Random(seed)
    notes: dict[str, str] = {}
    pool = [*WORDS, *sorted(STOP_WORDS)[:20]]
    for i in range(count):
        words = rng.choices(pool, k=rng.randint(0, 12))
        name = "-".join(rng.choices(WORDS, k=rng.randint(1, 2)))
        ext = rng.choice([".md", ".txt", "", ".json"])
        notes[f"{name}-{i}{ext}"] = " ".join(words) + rng.choice(["", ".", "!\n", " Oauth-TOKEN"])
    return notes


QUERIES = (
    "oauth token",
    "What is the user's dark mode?",
    "tea",
    "café naïve",
    "東京 report",
    "the a of",  # stop words only: nothing
    "md",  # the extension is not part of the key's name
    "memory",  # in the view prefix
    "notes",
    "data_set v2",
    "DEPLOY deploy cluster",
    "x1 budget review quarterly",
)


async def reference(storage: Storage, query: str) -> list[tuple[str, float]]:
    return [(r.key, r.score) for r in await KeywordSearchStrategy().search(storage, query)]


async def indexed(storage: ValkeyStorage, query: str) -> list[tuple[str, float]]:
    return [(r.key, r.score) for r in await storage.search(query)]


def test_tokenizer_and_extension_rule_are_the_sdks() -> None:
    from strands.storage.search import keyword

    assert search_module._SPLIT.pattern == r"\W+"
    assert search_module._EXTENSION.pattern == keyword._EXTENSION.pattern
    for text in ("Hello, World! café_naïve 東京-x1", "", "a.b/c.d", "über--ALLES"):
        assert search_module.tokenize(text) == sdk_tokenize(text)


async def test_search_ranks_exactly_like_the_keyword_strategy(make_storage: StorageFactory) -> None:
    storage = make_storage(search_index=True)
    notes = corpus(1, 120)
    memory = storage.namespace("memory/notes")
    for key, text in notes.items():
        await memory.write(key, text.encode())
    await storage.write("memory/other/tea.md", b"tea and oauth")
    await storage.write("context/s1/x.json", b"deploy cluster tea")
    await storage.write("top.md", b"oauth")
    for view in (memory, storage, storage.namespace("memory"), storage.namespace("memory/notes/")):
        for query in QUERIES:
            assert await indexed(view, query) == await reference(view, query), (view, query)


async def test_results_carry_values_for_the_first_results(make_storage: StorageFactory) -> None:
    storage = make_storage(search_index=True)
    memory = storage.namespace("memory/m")
    for i in range(SEARCH_DATA_RESULTS + 5):
        await memory.write(f"n{i:02}.md", f"tea {i}".encode())
    results = await memory.search("tea")
    assert [r.data for r in results[:SEARCH_DATA_RESULTS]] == [f"tea {i}".encode() for i in range(10)]
    assert all(r.data is None for r in results[SEARCH_DATA_RESULTS:])


async def test_overwrite_and_delete_keep_the_index_exact(make_storage: StorageFactory) -> None:
    storage = make_storage(search_index=("memory/",))
    memory = storage.namespace("memory/m")
    await memory.write("a.md", b"coffee tea")
    await memory.write("b.md", b"tea")
    assert await indexed(memory, "coffee tea") == [("a.md", 2), ("b.md", 1)]
    await memory.write("a.md", b"water")
    assert await indexed(memory, "coffee tea") == [("b.md", 1)]
    assert await indexed(memory, "water") == [("a.md", 1)]
    await memory.delete("b.md")
    await memory.delete("a.md")
    assert await indexed(memory, "coffee tea water") == []
    # Nothing of the index is left behind on the server.
    assert _index_keys(make_storage.backend) == []


async def test_keys_outside_the_indexed_prefixes_are_not_indexed(make_storage: StorageFactory) -> None:
    storage = make_storage(search_index=("memory/",))
    await storage.write("memory/m/a.md", b"tea")
    await storage.write("session/s1/snap.json", b"tea")
    assert await indexed(storage, "tea") == [("memory/m/a.md", 1)]


async def test_strategy_object_reads_the_same_index(make_storage: StorageFactory) -> None:
    storage = make_storage(search_index=True)
    await storage.write("memory/m/a.md", b"tea")
    strategy = ValkeyIndexSearchStrategy()
    await strategy.index(storage, "memory/m/a.md", b"ignored")
    results = await strategy.search(storage.namespace("memory/m"), "tea")
    assert [(r.key, r.score) for r in results] == [("a.md", 1)]
    with pytest.raises(TypeError, match="search_index"):
        await strategy.search(make_storage(), "tea")


async def test_build_search_index_backfills_and_resumes(make_storage: StorageFactory) -> None:
    plain = make_storage()
    notes = corpus(2, 40)
    for key, text in notes.items():
        await plain.write(f"memory/m/{key}", text.encode())
    storage = make_storage(search_index=("memory/",))
    memory = storage.namespace("memory/m")
    assert await memory.search("tea") == []
    seen: list[Any] = []
    first = await storage.build_search_index("memory/", batch=7, progress=seen.append)
    assert first.done and first.seen == 40 and first.indexed == 40
    assert [p.seen for p in seen] == [7, 14, 21, 28, 35, 40]
    assert [p.done for p in seen] == [False] * 5 + [True]
    for query in QUERIES:
        assert await indexed(memory, query) == await reference(memory, query)
    # Resuming from a reported key handles only the keys after it.
    again = await storage.build_search_index("memory/", start_after=seen[2].last_key, batch=100)
    assert again.seen == 19 and again.indexed == 19
    for query in QUERIES:
        assert await indexed(memory, query) == await reference(memory, query)


async def test_build_search_index_refuses_a_storage_without_index(make_storage: StorageFactory) -> None:
    with pytest.raises(ValueError, match="search_index"):
        await make_storage().build_search_index()
    with pytest.raises(ValueError, match="batch"):
        await make_storage(search_index=True).build_search_index(batch=0)


def test_search_index_argument_is_checked(make_storage: StorageFactory) -> None:
    with pytest.raises(ValueError, match="sequence of key prefixes"):
        make_storage(search_index="memory/")
    with pytest.raises(ValueError, match="must be str"):
        make_storage(search_index=[1])


async def test_large_values_are_indexed_and_staged_outside_lua(make_storage: StorageFactory) -> None:
    storage = make_storage(search_index=True)
    big = b"tea " * (STAGE_BYTES // 2)
    await storage.write("memory/m/big.md", big)
    assert await storage.read("memory/m/big.md") == big
    assert await indexed(storage.namespace("memory/m"), "tea") == [("big.md", 1)]
    admin = _admin(make_storage.backend)
    try:
        assert not [k for node in admin for k in node.keys("*:w:*")]  # the staged copy was renamed
    finally:
        for node in admin:
            node.close()


@pytest.mark.backends("valkey9")
@pytest.mark.storage_flavours("sync")
async def test_search_round_trips_do_not_grow_with_the_keys(make_storage: StorageFactory) -> None:
    storage = make_storage(search_index=True)
    if not isinstance(storage.client, valkey.Valkey):
        pytest.skip("round trips are counted on valkey-py")
    memory = storage.namespace("memory/m")
    counts = []
    for size in (10, 300):
        for i in range(size):
            await memory.write(f"n{size}-{i}.md", b"coffee" if i % 7 else b"coffee tea")
        with count_round_trips() as trips:
            results = await memory.search("tea party")
        assert results
        counts.append(trips.value)
    assert counts == [2, 2]  # the postings of the query's terms, then the first values


# -- helpers ----------------------------------------------------------------------------------------


def _admin(backend: Backend) -> list[Any]:
    nodes = backend.startup_nodes if backend.name == "cluster" else [(backend.host, backend.port)]
    return [valkey.Valkey(host, port) for host, port in nodes]


def _index_keys(backend: Backend) -> list[bytes]:
    found: list[bytes] = []
    for node in _admin(backend):
        try:
            found += [k for k in node.keys("*") if re.search(rb":(p:|d$)", k)]
        finally:
            node.close()
    return found
