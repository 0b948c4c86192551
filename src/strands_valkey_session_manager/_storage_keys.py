"""Key layout of :class:`~strands_valkey_session_manager.storage.ValkeyStorage`: pure functions, no I/O.

Storage keys are ``/``-separated paths (``session/<sid>/scopes/agent/<aid>/snapshots/...``). Each
key belongs to a **group**, and the group is the cluster hash tag:

* a key of three or more segments belongs to the group of its first two segments
  (``session/s1/scopes/agent/a1/...`` -> ``session/s1``);
* a key of one or two segments belongs to the group of its first segment
  (``memory/note.json`` -> ``memory``, ``notes`` -> ``notes``).

So every key under ``session/<sid>/`` (all of one ``SnapshotSessionManager`` session) shares one
slot, and listing that prefix reads one sorted set on one node. Server keys, with ``<N>`` the
namespace, ``<G>`` the group and ``<R>`` the rest of the key after ``<G>/`` (empty for the key that
*is* the group), both percent-encoded with :func:`~strands_valkey_session_manager._keys.encode_id`::

    <N>:storage:{<G>}:v:<R>   string  the value, exact bytes
    <N>:storage:{<G>}:i       zset    every <R> of the group (raw text), all score 0, so lex order
    <N>:storage:groups        zset    every group name (raw text), all score 0
    <N>:storage:{<G>}:d       hash    search index: <R> -> "<length> <term> ..." (indexed keys only)
    <N>:storage:{<G>}:p:<T>   zset    search index: postings of term <T>, <R> scored by its count
    <N>:storage:{<G>}:w:<id>  string  a large value staged by one write, renamed into place (expires)

The percent-encoding keeps ``{``, ``}`` and ``:`` of user keys out of the server key's structure,
so the hash tag is exactly the encoded group.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from ._keys import encode_id
from .exceptions import StorageError

#: Largest byte in no UTF-8 string: an exclusive upper bound for "every member starting with x".
_AFTER_ALL_TEXT: Final = b"\xff"
_SLASHES: Final = re.compile(r"/+")
# Keys whose server keys StorageLayout.locate keeps (then it starts again).
_LOCATED_MAX: Final = 4096


# The two helpers below mirror ``strands.storage.storage._normalize_key`` / ``_normalize_prefix``
# (private in the SDK, so not imported), message for message; tests pin them to the SDK's.


def normalize_key(key: str) -> str:
    """Collapse ``/`` runs, strip leading/trailing ``/``; refuse empty keys, ``\\`` and ``..`` segments.

    Raises:
        StorageError: If the key is empty (after normalisation), holds a backslash or a ``..``
            segment, or is not valid Unicode text (lone surrogates).
    """
    if "\\" in key:
        raise StorageError(f"Invalid storage key '{key}': backslashes are not allowed")
    normalized = _SLASHES.sub("/", key).strip("/")
    if not normalized:
        raise StorageError("Storage key must not be empty")
    if ".." in normalized.split("/"):
        raise StorageError(f"Invalid storage key '{key}': '..' path segments are not allowed")
    _check_text(normalized, "key")
    return normalized


def normalize_prefix(prefix: str) -> str:
    """Collapse ``/`` runs and strip leading ``/``; a trailing ``/`` is kept, an empty prefix is valid.

    Raises:
        StorageError: If the prefix holds a backslash or a ``..`` segment, or is not valid Unicode text.
    """
    if "\\" in prefix:
        raise StorageError(f"Invalid storage prefix '{prefix}': backslashes are not allowed")
    normalized = _SLASHES.sub("/", prefix).lstrip("/")
    if ".." in normalized.split("/"):
        raise StorageError(f"Invalid storage prefix '{prefix}': '..' path segments are not allowed")
    _check_text(normalized, "prefix")
    return normalized


def _check_text(value: str, what: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise StorageError(f"Invalid storage {what} {value!r}: not valid Unicode text ({e.reason})") from e


def group_of(key: str) -> str:
    """The group (hash tag) of a normalised key: first two segments if it has three or more, else the first."""
    parts = key.split("/", 2)
    return f"{parts[0]}/{parts[1]}" if len(parts) == 3 else parts[0]


def rest_of(key: str, group: str) -> str:
    """The key after ``<group>/`` (empty when the key is the group itself)."""
    return key[len(group) + 1 :]


def join(group: str, rest: str) -> str:
    """Inverse of :func:`group_of` / :func:`rest_of`."""
    return f"{group}/{rest}" if rest else group


@dataclass(frozen=True, slots=True)
class Location:
    """Where one storage key lives on the server."""

    key: str
    group: str
    rest: str
    value: str
    index: str
    docs: str
    postings: str


@dataclass(frozen=True, slots=True)
class GroupRange:
    """Members of one group's index that can match a list prefix.

    ``low``/``high`` are ZRANGEBYLEX bounds; ``skip_group_key`` drops the member ``""`` (the key
    equal to the group), which a range starting at ``""`` includes but a prefix ``<group>/`` does not.
    """

    group: str
    index: str
    low: bytes
    high: bytes
    skip_group_key: bool


class StorageLayout:
    """Builds the server keys of one namespace."""

    __slots__ = ("_located", "_stem", "groups", "namespace")

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._stem = f"{namespace}:storage:"
        self.groups = f"{self._stem}groups"
        self._located: dict[str, Location] = {}

    def _tagged(self, group: str) -> str:
        return f"{self._stem}{{{encode_id(group, 'group')}}}"

    def index(self, group: str) -> str:
        """The sorted set listing the rests of one group's keys."""
        return f"{self._tagged(group)}:i"

    def docs(self, group: str) -> str:
        """The search index's documents hash of one group."""
        return f"{self._tagged(group)}:d"

    def postings(self, group: str) -> str:
        """Prefix of the search index's posting sets of one group (the term follows, raw text)."""
        return f"{self._tagged(group)}:p:"

    def staged(self, group: str, token: str) -> str:
        """Where one write stages a large value before its script renames it into place."""
        return f"{self._tagged(group)}:w:{token}"

    def locate(self, key: str) -> Location:
        """Server keys of a normalised storage key (memoised: keys such as a session's latest
        snapshot are written again and again)."""
        found = self._located.get(key)
        if found is not None:
            return found
        group = group_of(key)
        rest = rest_of(key, group)
        tagged = self._tagged(group)
        suffix = encode_id(rest, "key") if rest else ""
        found = Location(
            key=key,
            group=group,
            rest=rest,
            value=f"{tagged}:v:{suffix}",
            index=f"{tagged}:i",
            docs=f"{tagged}:d",
            postings=f"{tagged}:p:",
        )
        if len(self._located) >= _LOCATED_MAX:
            self._located.clear()
        self._located[key] = found
        return found

    def groups_range(self, prefix: str) -> tuple[bytes, bytes] | None:
        """ZRANGEBYLEX bounds on :attr:`groups` for groups that start with ``prefix``.

        ``None`` when no group can: a group has at most one ``/``, so it cannot start with a prefix
        holding two. Listing one session's prefix (``session/<sid>/``) therefore never reads the
        groups index.
        """
        if prefix.count("/") >= 2:
            return None
        if not prefix:
            return b"-", b"+"
        raw = prefix.encode("utf-8")
        return b"[" + raw, b"(" + raw + _AFTER_ALL_TEXT

    def containing_groups(self, prefix: str) -> Iterator[GroupRange]:
        """Groups ``g`` with ``prefix`` starting ``g/``: their keys match when the rest matches.

        Only the first segment and the first two segments of ``prefix`` can be such groups.
        """
        parts = prefix.split("/")
        complete = parts[:-1]  # segments followed by "/" in the prefix
        for size in (1, 2):
            if len(complete) < size:
                break
            group = "/".join(complete[:size])
            rest = rest_of(prefix, group)
            if size == 1 and "/" in rest:
                continue  # a one-segment group holds only keys of one or two segments
            index = self.index(group)
            if rest:
                raw = rest.encode("utf-8")
                yield GroupRange(group, index, b"[" + raw, b"(" + raw + _AFTER_ALL_TEXT, skip_group_key=False)
            else:
                yield GroupRange(group, index, b"-", b"+", skip_group_key=True)

    def whole_group(self, group: str) -> GroupRange:
        """Every member of a group (used for groups that start with the list prefix)."""
        return GroupRange(group, self.index(group), b"-", b"+", skip_group_key=False)
