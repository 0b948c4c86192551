"""The names the session scripts and the Python side share: one home for each.

Fields of the session hash, positions of a session's keys in a script's ``KEYS``, the bits of the
``shape`` field, the scripts' return codes and the prefixes of their error replies. Every name
here is mirrored, with the same name and value, by a ``local`` of ``lua/_prelude.lua`` (which every
session script starts with); ``tests/test_schema.py`` parses the prelude and compares, so the two
cannot drift. Changing a field name or a code changes the stored layout or the scripts' protocol:
existing sessions must stay readable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# -- KEYS positions of every session script (1-based, as Lua indexes them) ------------------------
KEY_SESSION: Final = 1
KEY_AGENTS: Final = 2
KEY_MESSAGES: Final = 3
KEY_ORDER: Final = 4
KEY_MULTI: Final = 5

# -- fields of the session hash ------------------------------------------------------------------
F_RECORD: Final = "record"  # the Session record (JSON)
F_CREATED: Final = "created"  # unix ms
F_UPDATED: Final = "updated"  # unix ms of the last write
F_TTL: Final = "ttl"  # sliding lifetime, ms
F_DEADLINE: Final = "deadline"  # absolute end of life, unix ms
F_USER: Final = "user"  # owner in the catalog
F_TAGS: Final = "tags"  # tags in the catalog (JSON list)
F_CATALOG: Final = "catalog"  # the session's catalog member
F_EXPIRY: Final = "expiry"  # the session's expiry index entry
F_SHAPE: Final = "shape"  # which other keys must exist (SHAPE_* bits)
F_DEK: Final = "dek"  # the wrapped data key (encrypted sessions)
F_NONCE: Final = "nonce"  # the create call that made the session (a repeat is recognised)
# Per-agent fields: the prefix, then the raw agent id.
F_VERSION: Final = "v:"  # the agent's version; present iff the agent exists
F_COUNT: Final = "n:"  # the agent's message count
F_LEASE: Final = "lease:"  # '<token> <expires ms> <owner>' (lock=True)
F_FENCE: Final = "fence:"  # the last fencing token handed out
# How many times the agent's stored messages were rewritten in place (update_message, an append
# over an existing id, a re-encryption); absent reads as 0 (sessions written before it existed).
F_REWRITES: Final = "w:"

# -- bits of the field 'shape': the other keys a session must have --------------------------------
SHAPE_AGENTS: Final = 1  # the agents hash
SHAPE_MESSAGES: Final = 2  # the messages hash and the order index
SHAPE_MULTI: Final = 4  # the multi hash

# -- return codes of the write scripts (nothing is written when they return one) -----------------
R_CONFLICT: Final = -1  # the agent's version moved on since the writer saw it
R_AGENT_EXISTS: Final = -2  # create_agent: the agent exists
R_LOCKED: Final = -3  # another owner holds the agent's lease
R_SESSION_GONE: Final = -4  # the session hash does not exist
R_DAMAGED: Final = -5  # a key the session's shape requires (or the agent's record) is gone
R_STALE_DATA_KEY: Final = -6  # the record was sealed under a data key the session no longer holds
# An agent's script sent without the multi key (KEYS[5]) to a session that has one: send it again
# with all five keys (see undeclared_multi in lua/_prelude.lua).
R_NEEDS_ALL_KEYS: Final = -7
# create_session.lua: the session exists (listed under the same catalog member: 0, another: -1);
# {-2, index...}: the session hash is gone but other keys of the session remain.
R_CREATE_EXISTS_LISTED: Final = 0
R_CREATE_EXISTS: Final = -1
R_CREATE_LEFTOVERS: Final = -2
# lease.lua: {0} the session does not exist; {-1, holder, ms left} another owner holds the lease.
R_LEASE_NO_SESSION: Final = 0
R_LEASE_HELD: Final = -1
# swap_session.lua: {-1} the staged session is not this import's.
R_SWAP_NOT_STAGED: Final = -1

# -- prefixes of the scripts' error replies and damage reports ------------------------------------
E_CORRUPT: Final = "SVSM-CORRUPT"  # a field or record is garbled: refused before the first write
E_DAMAGED: Final = "SVSM-DAMAGED"  # keys of the session are gone
E_MISSING: Final = "SVSM-MISSING"  # an index entry has no record


def version_field(agent_id: str) -> str:
    """The session hash field holding an agent's version."""
    return F_VERSION + agent_id


def count_field(agent_id: str) -> str:
    """The session hash field holding an agent's message count."""
    return F_COUNT + agent_id


def rewrites_field(agent_id: str) -> str:
    """The session hash field counting rewrites of an agent's stored messages."""
    return F_REWRITES + agent_id


def lease_field(agent_id: str) -> str:
    """The session hash field holding an agent's lease."""
    return F_LEASE + agent_id


def constants() -> Mapping[str, int | str]:
    """Every shared name and its value (what ``lua/_prelude.lua`` mirrors)."""
    return {name: value for name, value in globals().items() if name.isupper() and isinstance(value, (int, str))}


# -- named script arguments ----------------------------------------------------------------------
#: The scripts that take ARGV as name/value pairs (``named_args`` in the prelude) and the names each
#: reads; ``tests/test_schema.py`` checks every script reads exactly these. The hot paths
#: (``append_message``, ``list_messages``) keep positional ARGV: the table costs them server time.
SCRIPT_ARGS: Final[Mapping[str, frozenset[str]]] = {
    "create_session": frozenset(
        {
            "ttl",
            "record",
            "created",
            "deadline",
            "user",
            "tags",
            "member",
            "dump_agents",
            "dump_messages",
            "dump_order",
            "dump_multi",
            "dump_session",
            "nonce",
            "dek",
            "clear",
            "expiry",
        }
    ),
    "update_record": frozenset({"ttl", "index", "field", "value", "keep_created", "agent", "expected", "token", "dek"}),
    "reencrypt_session": frozenset({"fingerprint", "dek", "new_dek", "agents", "messages", "multi"}),
}


def named(script: str, **values: object) -> tuple[object, ...]:
    """ARGV for a script that takes named arguments: ``values`` as name/value pairs.

    Raises:
        TypeError: If a name is not one the script reads (a misspelling would arrive as nil).
    """
    unknown = values.keys() - SCRIPT_ARGS[script]
    if unknown:
        raise TypeError(f"{script}.lua reads no argument named {', '.join(sorted(unknown))}")
    return tuple(item for pair in values.items() for item in pair)
