"""Key layout: exact bytes of each key, one slot per session, ids that cannot change a key's shape."""

from __future__ import annotations

import pytest
from valkey.crc import key_slot

from strands_valkey_session_manager._keys import (
    KeyLayout,
    agent_member_range,
    check_message_id,
    decode_id,
    encode_id,
    message_member,
    message_members,
    validate_key_prefix,
)

HOSTILE_IDS = [
    "abc",
    "abc*",
    "ab*",
    "a:b",
    "{tag}",
    "}{",
    "a}b{c",
    "?[x]\\",
    " spaced id ",
    "ünïcødé-会话-🙂",
    "%41",
    "a/b",
    "\x00\n\t",
    "x" * 5000,
]


def test_layout_pins_exact_keys() -> None:
    keys = KeyLayout("strands").session("a:b{c}*")
    assert keys.all() == [
        "strands:{a%3Ab%7Bc%7D%2A}:session",
        "strands:{a%3Ab%7Bc%7D%2A}:agents",
        "strands:{a%3Ab%7Bc%7D%2A}:messages",
        "strands:{a%3Ab%7Bc%7D%2A}:order",
        "strands:{a%3Ab%7Bc%7D%2A}:multi",
    ]


def test_plain_ids_stay_readable() -> None:
    assert KeyLayout("app").session("user42").session == "app:{user42}:session"
    assert encode_id("req-1_a.b~c") == "req-1_a.b~c"


@pytest.mark.parametrize("session_id", HOSTILE_IDS)
def test_all_keys_of_a_session_share_one_slot(session_id: str) -> None:
    keys = KeyLayout("strands").session(session_id).all()
    assert len({key_slot(k.encode()) for k in keys}) == 1
    # The hash tag is exactly the encoded id: no brace of the id can open or close it.
    for key in keys:
        assert key.count("{") == 1
        assert key.count("}") == 1


@pytest.mark.parametrize("value", HOSTILE_IDS)
def test_encoding_round_trips_and_is_glob_free(value: str) -> None:
    encoded = encode_id(value)
    assert decode_id(encoded) == value
    assert not set(encoded) & set("{}*?[]\\: \t\n")


def test_no_session_key_is_a_prefix_of_another_sessions_key() -> None:
    layout = KeyLayout("strands")
    stems = [layout.tag(s) for s in HOSTILE_IDS]
    for a in stems:
        for b in stems:
            if a != b:
                assert not b.startswith(a)


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(ValueError, match="valid Unicode"):
        encode_id("a\ud800b", "agent_id")


@pytest.mark.parametrize("bad", [None, 1, b"bytes", ""])
def test_ids_must_be_non_empty_str(bad: object) -> None:
    with pytest.raises(ValueError, match="session_id"):
        KeyLayout().session(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", ["", "a{b}", "a*", "a b", "x?", "[x]"])
def test_key_prefix_rejects_syntax(prefix: str) -> None:
    with pytest.raises(ValueError, match="key prefix"):
        validate_key_prefix(prefix)


def test_message_members_sort_numerically_within_an_agent() -> None:
    ids = [-(2**63), -5, -1, 0, 1, 2, 9, 10, 11, 100, 2**63 - 1]
    members = [message_member("agent", i) for i in ids]
    assert sorted(members) == members
    low, high = agent_member_range("agent")
    assert all(low[1:] <= m < high[1:] for m in members)


@pytest.mark.parametrize("agent", ["agent", "a:b", "ünïcødé-会话-🙂"])
@pytest.mark.parametrize("first", [-(2**63), -3, 0, 7, 10**18, 2**63 - 4])
def test_message_members_as_bytes_are_the_members(agent: str, first: int) -> None:
    encoded = encode_id(agent)
    expected = [message_member(encoded, i).encode() for i in range(first, first + 4)]
    assert message_members(encoded, first, 4) == expected
    assert message_members(encoded, first, 0) == []


def test_agent_ranges_do_not_overlap() -> None:
    # "a" and "a:b" (encoded "a%3Ab") must not share members.
    low, high = agent_member_range(encode_id("a"))
    other = message_member(encode_id("a:b"), 0)
    assert not (low[1:] <= other < high[1:])


@pytest.mark.parametrize("bad", ["1", 1.0, None, True, 2**63, -(2**63) - 1])
def test_message_id_must_be_a_64_bit_int(bad: object) -> None:
    with pytest.raises(ValueError, match="message id"):
        check_message_id(bad)


def _encoded_as_stored(value: str) -> str:
    """The stored layout's rule, written out: UTF-8 bytes outside [A-Za-z0-9._~-] as %XX (upper case)."""
    safe = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-"
    return "".join(chr(b) if b in safe else f"%{b:02X}" for b in value.encode("utf-8"))


def test_id_encoding_is_the_stored_rule_for_every_character() -> None:
    # Every code point of the BMP but the surrogates, and some beyond, one by one and together:
    # keys of existing sessions must not change.
    characters = [chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    characters += ["\U0001f642", "\U00010000", "\U0010ffff"]
    for ch in characters:
        assert encode_id(ch) == _encoded_as_stored(ch), repr(ch)
    for value in [*HOSTILE_IDS, "".join(characters[:5000])]:
        assert encode_id(value) == _encoded_as_stored(value)
        assert decode_id(encode_id(value)) == value


def test_session_keys_are_built_once_and_bad_ids_still_refused() -> None:
    layout = KeyLayout("strands")
    assert layout.session("s-1") is layout.session("s-1")
    with pytest.raises(ValueError, match="must be a str"):
        layout.session(["not", "an", "id"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="valid Unicode"):
        layout.session("\ud800")
