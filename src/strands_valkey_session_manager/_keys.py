"""Key layout: the only module that turns ids into server keys.

Every key of one session shares the hash tag ``{<encoded session id>}``, so a session lives in one
cluster slot and multi-key scripts stay legal on a cluster. A session has a fixed set of five keys,
whatever the number of agents or messages::

    <prefix>:{<sid>}:session   hash    Session record (JSON) and its catalog metadata
    <prefix>:{<sid>}:agents    hash    agent id (raw) -> SessionAgent record (JSON)
    <prefix>:{<sid>}:messages  hash    message member -> SessionMessage record (JSON)
    <prefix>:{<sid>}:order     zset    message members, all scored 0, in lexicographic order
    <prefix>:{<sid>}:multi     hash    multi-agent id (raw) -> orchestrator state (JSON)

A message member is ``<encoded agent id>:<message id as 20 digits, offset by 2**63>``: fixed-width
digits make lexicographic order equal numeric order, and the encoded agent id contains no ``:``,
so the member range of one agent never overlaps another's.

Ids are data, never syntax: they are percent-encoded (UTF-8 bytes outside ``[A-Za-z0-9._~-]``),
so ``:``, ``{``, ``}``, glob characters, spaces and any Unicode cannot change the key's shape, and
no encoded id is a prefix of another id's keys.

The catalog indexes sessions newest-first in lexicographic zsets sharded over ``CATALOG_SHARDS``
hash tags (``{catalog:<n>}``, ``{u:<user>:<n>}``, ``{t:<tag>:<n>}``), so neither the whole catalog
nor one busy user's index sits in a single slot. A session's shard is fixed by its id.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Final
from urllib.parse import quote, unquote_to_bytes

DEFAULT_KEY_PREFIX: Final = "strands"
#: Number of shards of each catalog index. Part of the stored layout: changing it orphans entries.
CATALOG_SHARDS: Final = 16

# Message ids are stored offset by 2**63 so the signed 64-bit range sorts as 20 unsigned digits.
_MESSAGE_ID_OFFSET: Final = 1 << 63
_MESSAGE_ID_MIN: Final = -(1 << 63)
_MESSAGE_ID_MAX: Final = (1 << 63) - 1

# Characters a key prefix may not hold: hash-tag braces would move the slot, glob characters would
# break the ACL key pattern ``~<prefix>:*`` the package documents.
_PREFIX_FORBIDDEN: Final = frozenset("{}*?[]\\ \t\r\n")


def encode_id(value: str, kind: str = "id") -> str:
    """Percent-encode an id so it can sit inside a key without changing the key's structure.

    Raises:
        ValueError: If ``value`` is not a non-empty ``str``.
    """
    if not isinstance(value, str):
        raise ValueError(f"{kind}=<{value!r}> | {kind} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{kind} must not be empty")
    if value.isascii() and value.isalnum():
        return value
    try:
        # Exactly the layout's rule: quote's always-safe set is [A-Za-z0-9_.~-], the rest of the
        # UTF-8 bytes become %XX (upper-case hex); tests/test_keys.py pins it byte for byte.
        return quote(value, safe="", encoding="utf-8", errors="strict")
    except UnicodeEncodeError as e:
        # Lone surrogates: no client can send them as a hash field, so refuse them up front.
        raise ValueError(f"{kind}=<{value!r}> | {kind} must be valid Unicode text: {e.reason}") from e


def decode_id(encoded: str) -> str:
    """Invert :func:`encode_id`."""
    return unquote_to_bytes(encoded).decode("utf-8")


def validate_key_prefix(prefix: str) -> str:
    """Check a user-supplied key prefix and return it.

    Raises:
        ValueError: If the prefix is empty or holds braces, glob characters or whitespace.
    """
    if not isinstance(prefix, str) or not prefix:
        raise ValueError(f"key_prefix=<{prefix!r}> | key prefix must be a non-empty str")
    bad = sorted(set(prefix) & _PREFIX_FORBIDDEN)
    if bad:
        raise ValueError(f"key_prefix=<{prefix}> | key prefix must not contain {''.join(bad)!r}")
    return prefix


def check_message_id(message_id: object) -> int:
    """Return ``message_id`` if it is a storable integer.

    Raises:
        ValueError: If the id is not an ``int`` (``bool`` included) or outside the signed 64-bit range.
    """
    if not isinstance(message_id, int) or isinstance(message_id, bool):
        raise ValueError(f"message_id=<{message_id!r}> | message id must be an integer")
    if not _MESSAGE_ID_MIN <= message_id <= _MESSAGE_ID_MAX:
        raise ValueError(f"message_id=<{message_id}> | message id must fit in a signed 64-bit integer")
    return message_id


def message_member(encoded_agent_id: str, message_id: int) -> str:
    """Member of the ``order`` zset and field of the ``messages`` hash for one message."""
    return f"{encoded_agent_id}:{message_id + _MESSAGE_ID_OFFSET:020d}"


def message_members(encoded_agent_id: str, first: int, count: int) -> list[bytes]:
    """:func:`message_member` of ``count`` ids from ``first`` on, as bytes (what a client sends)."""
    prefix = f"{encoded_agent_id}:".encode("ascii")
    start = first + _MESSAGE_ID_OFFSET
    return [b"%b%020d" % (prefix, n) for n in range(start, start + count)]


def agent_member_range(encoded_agent_id: str) -> tuple[str, str]:
    """Inclusive/exclusive ZRANGEBYLEX bounds that cover exactly one agent's members.

    ``;`` is the byte after ``:``, so ``[a:`` .. ``(a;`` spans every ``a:<digits>``.
    """
    return f"[{encoded_agent_id}:", f"({encoded_agent_id};"


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """The five keys of one session, all in the same hash slot."""

    session: str
    agents: str
    messages: str
    order: str
    multi: str

    def all(self) -> list[str]:
        """Every key of the session, in the order scripts receive them as KEYS."""
        return [self.session, self.agents, self.messages, self.order, self.multi]

    def without_multi(self) -> list[str]:
        """The KEYS of an agent's script sent to a session without orchestrator state (see
        ``undeclared_multi`` in ``lua/_prelude.lua``)."""
        return [self.session, self.agents, self.messages, self.order]


class KeyLayout:
    """Builds the keys of a session under one prefix."""

    __slots__ = ("_cached", "prefix")

    def __init__(self, prefix: str = DEFAULT_KEY_PREFIX) -> None:
        self.prefix = validate_key_prefix(prefix)
        # A process talks to few sessions, each many times: build their keys once.
        self._cached = lru_cache(maxsize=1024)(self._build)

    def tag(self, session_id: str) -> str:
        """Key stem shared by every key of the session: ``<prefix>:{<encoded id>}``."""
        return f"{self.prefix}:{{{encode_id(session_id, 'session_id')}}}"

    def session(self, session_id: str) -> SessionKeys:
        """All keys of one session."""
        if not isinstance(session_id, str):
            return self._build(session_id)  # raises the ValueError of encode_id
        return self._cached(session_id)

    def _build(self, session_id: str) -> SessionKeys:
        stem = self.tag(session_id)
        return SessionKeys(
            session=f"{stem}:session",
            agents=f"{stem}:agents",
            messages=f"{stem}:messages",
            order=f"{stem}:order",
            multi=f"{stem}:multi",
        )

    def catalog_shard(self, session_id: str) -> int:
        """The catalog shard of a session (stable: CRC32 of the encoded id)."""
        return zlib.crc32(encode_id(session_id, "session_id").encode()) % CATALOG_SHARDS

    def catalog_index(self, shard: int, *, user_id: str | None = None, tag: str | None = None) -> str:
        """One shard of the catalog: all sessions, one user's, or one tag's."""
        if user_id is not None:
            return f"{self.prefix}:catalog:user:{{u:{encode_id(user_id, 'user_id')}:{shard}}}"
        if tag is not None:
            return f"{self.prefix}:catalog:tag:{{t:{encode_id(tag, 'tag')}:{shard}}}"
        return f"{self.prefix}:catalog:{{catalog:{shard}}}"

    def catalog_expiry(self, shard: int) -> str:
        """The expiry index of one catalog shard (same slot as the shard's catalog index): members
        from :func:`expiry_member`, so lex order is expiry order."""
        return f"{self.prefix}:catalog:expiry:{{catalog:{shard}}}"

    def staging(self, session_id: str) -> SessionKeys:
        """Where an import that overwrites writes before its swap: the session's slot, other names."""
        stem = self.tag(session_id)
        return SessionKeys(
            session=f"{stem}:import:session",
            agents=f"{stem}:import:agents",
            messages=f"{stem}:import:messages",
            order=f"{stem}:import:order",
            multi=f"{stem}:import:multi",
        )

    def catalog_indexes(self, session_id: str, user_id: str | None, tags: tuple[str, ...]) -> list[str]:
        """Every catalog index that lists a session: the global one, its user's and its tags'."""
        shard = self.catalog_shard(session_id)
        keys = [self.catalog_index(shard)]
        if user_id is not None:
            keys.append(self.catalog_index(shard, user_id=user_id))
        keys.extend(self.catalog_index(shard, tag=tag) for tag in tags)
        return keys


def catalog_member(created_ms: int, session_id: str) -> str:
    """Catalog zset member: creation time as 15 digits, then the encoded id, so lex order is age."""
    return f"{created_ms:015d}:{encode_id(session_id, 'session_id')}"


def session_id_of_member(member: str) -> str:
    """Invert :func:`catalog_member` to the session id."""
    return decode_id(member.split(":", 1)[1])


def expiry_member(expires_ms: int, member: str, user_id: str | None, tags: tuple[str, ...]) -> str:
    """Expiry index member: ``<expires ms, 15 digits>:<catalog member>:<user>:<tag>,<tag>`` (ids
    encoded, so they hold no ``:`` or ``,``): everything needed to unlist the session once it is gone."""
    user = "" if user_id is None else encode_id(user_id, "user_id")
    return f"{expires_ms:015d}:{member}:{user}:{','.join(encode_id(t, 'tag') for t in tags)}"


def parse_expiry_member(entry: str) -> tuple[int, str, str | None, tuple[str, ...]]:
    """Invert :func:`expiry_member`: (expires ms, catalog member, user id, tags).

    Raises:
        ValueError: If ``entry`` is not such a member.
    """
    expires, created, session, user, tags = entry.split(":", 4)
    return (
        int(expires),
        f"{created}:{session}",
        decode_id(user) if user else None,
        tuple(decode_id(t) for t in tags.split(",")) if tags else (),
    )
