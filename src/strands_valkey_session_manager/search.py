"""The native search index of :class:`~strands_valkey_session_manager.storage.ValkeyStorage`.

An inverted index on plain Valkey or Redis (no modules), kept by the storage's own write and
delete scripts, so it changes in the same atomic step as the value it describes. Its **scope is
the group** (the key's hash tag, see ``_storage_keys.py``): a group's postings live in its slot,
beside its values, so each write stays one script on one node, also on a cluster. One
``FileMemoryStore`` (``memory/<name>/...``) is one group.

Terms are the SDK's: ``strands.storage.search.keyword.tokenize`` (``\\W+`` split, lowercased) of the
value decoded as UTF-8 (errors replaced) and of the key's name without its extension; a query drops
the SDK's ``STOP_WORDS``. Ranking is the SDK keyword strategy's: the number of distinct query terms
in the key (relative to the storage searched, extension stripped) or the value, best first, ties
in ascending key order, so the results are the keyword scan's, without reading every value. A
search reads, per group it can reach, the posting sets of the query's terms: its cost grows with
those postings, not with the number of keys.

Use it by creating the storage with ``search_index=`` (``True`` for every key, or key prefixes such
as ``("memory/",)``): ``search()`` then reads the index. :class:`ValkeyIndexSearchStrategy` offers
the same search to code that takes a ``SearchStrategy``. Data written before indexing was on is
indexed by :meth:`ValkeyStorage.build_search_index`, or from a shell::

    python -m strands_valkey_session_manager.search valkey://localhost:6379 --prefix memory/
"""

from __future__ import annotations

import argparse
import asyncio
import builtins
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from strands.storage.storage import StorageSearchResult

__all__ = ["IndexProgress", "ValkeyIndexSearchStrategy", "index_terms", "query_terms"]

# The SDK's tokenizer split and extension rule (strands/storage/search/keyword.py): the same
# expressions, so a term count agrees with the SDK's token set. Tests pin them to the SDK's.
_SPLIT: Final = re.compile(r"\W+")
_EXTENSION: Final = re.compile(r"(?<=[^/])\.[^./]*$")


def _stop_words() -> frozenset[str]:
    from strands.storage.search.keyword import STOP_WORDS  # not in SDKs before the storage API

    return STOP_WORDS


def tokenize(text: str) -> set[str]:
    """The SDK's ``tokenize``: lowercased ``\\W+``-separated tokens, empties dropped."""
    return {token for token in _SPLIT.split(text.lower()) if token}


def key_terms(key: str) -> set[str]:
    """Terms of a key's name as the SDK's keyword strategy sees it (extension stripped)."""
    return tokenize(_EXTENSION.sub("", key))


def query_terms(query: str) -> set[str]:
    """Terms of a query: its tokens less the SDK's stop words."""
    return tokenize(query) - _stop_words()


def index_terms(rest: str, data: bytes) -> str:
    """The script argument posting one value: ``"<length> <term> <count> ..."``.

    ``<count>`` is the term's count in the value; a term only in the key's name (``rest``, the key
    after its group) is posted with count 0. ``<length>`` is the value's token count.
    """
    counts = Counter(token for token in _SPLIT.split(data.decode("utf-8", errors="replace").lower()) if token)
    length = sum(counts.values())
    for term in key_terms(rest) if rest else ():
        counts.setdefault(term, 0)
    return " ".join([str(length), *(f"{term} {count}" for term, count in counts.items())])


@dataclass(frozen=True)
class GroupHits:
    """What one group's postings say about a query: per key (relative to the group), the query
    terms found in its value; and whether every indexed key of the group is a candidate."""

    group: str
    content: dict[str, set[str]]


def score(query: set[str], content: set[str], relative_key: str) -> int:
    """The SDK keyword strategy's score: distinct query terms in the key's name or the value."""
    return len(query & (content | key_terms(relative_key)))


@dataclass(frozen=True)
class IndexProgress:
    """Where :meth:`ValkeyStorage.build_search_index` stands: keys seen and posted so far, and the
    last key handled (pass it as ``start_after`` to resume)."""

    seen: int
    indexed: int
    last_key: str | None
    done: bool


class ValkeyIndexSearchStrategy:
    """The native index as an SDK ``SearchStrategy``, for code that takes one (such as a storage
    shared with SDK constructs that pick a strategy).

    ``index()`` does nothing: the storage posts every write of an indexed key in the write's own
    script. ``search()`` reads the index of the storage (or ``namespace()`` view) it is given.
    It works through the ``Storage`` API only, so it is safe in a sandbox.

    Raises:
        TypeError: From ``search``, when the storage is not a ``ValkeyStorage`` with ``search_index``.
    """

    requires_host_fs: Literal[False] = False

    async def index(self, storage: Any, key: str, data: bytes, **kwargs: Any) -> None:
        """No-op: the storage's write already posted the value, atomically."""

    async def search(self, storage: Any, query: str, **kwargs: Any) -> builtins.list[StorageSearchResult]:
        """Ranked matches of ``query`` in ``storage``'s index (see the module)."""
        from .storage import ValkeyStorage

        if not isinstance(storage, ValkeyStorage) or not storage.search_indexed:
            raise TypeError("ValkeyIndexSearchStrategy needs a ValkeyStorage created with search_index=...")
        return await storage.search_index_query(query)


def rank(
    query: set[str], hits: Iterable[GroupHits], view_prefix: str, join: Any
) -> builtins.list[tuple[int, str, str, str]]:
    """``(score, key relative to the view, group, rest)`` of every candidate with a positive
    score, best first, ties in ascending key order (the keyword strategy's order)."""
    ranked: builtins.list[tuple[int, str, str, str]] = []
    cut = len(view_prefix)
    for group_hits in hits:
        for rest, content in group_hits.content.items():
            full = join(group_hits.group, rest)
            if not full.startswith(view_prefix):
                continue
            relative = full[cut:]
            points = score(query, content, relative)
            if points > 0:
                ranked.append((points, relative, group_hits.group, rest))
    ranked.sort(key=lambda item: (-item[0], item[1]))
    return ranked


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m strands_valkey_session_manager.search",
        description="Index existing ValkeyStorage data for search (resumable; prints progress).",
    )
    parser.add_argument("url", help="valkey:// or redis:// URL of the server")
    parser.add_argument("--prefix", default="", help="index only keys under this prefix (default: every key)")
    parser.add_argument("--start-after", default=None, help="resume after this key (printed by an earlier run)")
    parser.add_argument("--cluster", action="store_true", help="connect as a cluster client")
    parser.add_argument("--namespace", default="strands", help="the storage's namespace (default: strands)")
    parser.add_argument("--batch", type=int, default=200, help="keys per round trip (default: 200)")
    args = parser.parse_args(argv)
    from .storage import ValkeyStorage

    storage = ValkeyStorage.from_url(
        args.url, cluster=args.cluster, namespace=args.namespace, search_index=(args.prefix,) if args.prefix else True
    )

    def report(progress: IndexProgress) -> None:
        state = "done" if progress.done else "running"
        print(f"{state}: seen={progress.seen} indexed={progress.indexed} last_key={progress.last_key!r}", flush=True)

    try:
        asyncio.run(
            storage.build_search_index(args.prefix, start_after=args.start_after, batch=args.batch, progress=report)
        )
    finally:
        storage.close()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
