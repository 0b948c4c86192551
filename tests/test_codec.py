"""Codec: SDK-compatible JSON, exact bytes, created_at last, direct decoding."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import _codec

IMAGE = bytes(range(256)) * 4


def _message() -> SessionMessage:
    return SessionMessage(
        message={
            "role": "user",
            "content": [{"text": "look"}, {"image": {"format": "png", "source": {"bytes": IMAGE}}}],
        },
        message_id=3,
    )


def test_message_round_trip_keeps_bytes_exactly() -> None:
    message = _message()
    decoded = _codec.decode_message(_codec.encode_message(message))
    assert decoded == message
    assert decoded.message["content"][1]["image"]["source"]["bytes"] == IMAGE


def test_stored_shape_matches_the_sdks_to_dict() -> None:
    message = _message()
    # redact_message is left out while it is None; the decoder restores the default.
    expected = {k: v for k, v in message.to_dict().items() if k != "redact_message"}
    assert orjson.loads(_codec.encode_message(message)) == expected
    message.redact_message = {"role": "user", "content": [{"text": "[redacted]"}]}
    assert orjson.loads(_codec.encode_message(message)) == message.to_dict()
    agent = SessionAgent(agent_id="a", state={"blob": b"\x00"}, conversation_manager_state={"k": 1})
    assert orjson.loads(_codec.encode_agent(agent)) == agent.to_dict()


def test_created_at_is_the_last_member() -> None:
    raw = _codec.encode_message(_message())
    assert raw.rsplit(b",", 1)[1].startswith(b'"created_at":')
    body = _codec.encode_message_update(_message())
    assert body.startswith(b"{")
    assert not body.endswith(b"}")


def test_agent_and_session_round_trip() -> None:
    agent = SessionAgent(
        agent_id="a", state={"n": 1}, conversation_manager_state={"removed_message_count": 2}, _internal_state={"i": 1}
    )
    assert _codec.decode_agent(_codec.encode_agent(agent)) == agent
    session = Session(session_id="s", session_type=SessionType.AGENT)
    assert _codec.decode_session(_codec.encode_session(session)) == session


def test_decoding_accepts_str_replies() -> None:
    message = _message()
    assert _codec.decode_message(_codec.encode_message(message).decode()) == message


def test_message_array_decodes_in_one_parse() -> None:
    a, b = _message(), SessionMessage(message={"role": "assistant", "content": [{"text": "ok"}]}, message_id=4)
    raw = b"[" + _codec.encode_message(a) + b"," + _codec.encode_message(b) + b"]"
    assert _codec.decode_message_array(raw) == [a, b]


def test_message_array_keeps_redactions_and_exact_values() -> None:
    redacted = SessionMessage(
        message={"role": "user", "content": [{"text": "secret"}]},
        message_id=1,
        redact_message={"role": "user", "content": [{"text": "[redacted]"}]},
    )
    exact = SessionMessage(message={"role": "user", "content": [{"text": "\ud800"}], "n": 2**70}, message_id=2)  # type: ignore[typeddict-unknown-key]
    first = _message()
    records = [_codec.encode_message(m) for m in (first, redacted, exact)]
    decoded = _codec.decode_message_array(b"[" + b",".join(records) + b"]")
    assert decoded == [first, redacted, exact]
    assert repr(decoded[2].message) == repr(exact.message)


@pytest.mark.parametrize(
    "extra",
    [2**70, float("inf"), "\ud800", b"\x00\xff", [{"deep": 10**30}]],
    ids=["big-int", "infinity", "lone-surrogate", "bytes", "nested-big-int"],
)
def test_message_array_decodes_each_exact_value_alone_exactly(extra: Any) -> None:
    """Each value only ``json`` writes exactly, alone among plain records (orjson parses the array;
    the record's exact marker sends it to ``json``), and bytes (the one scan of the array)."""
    exact = SessionMessage(message={"role": "user", "content": [{"text": "x"}], "n": extra}, message_id=2)  # type: ignore[typeddict-unknown-key]
    plain = _message()
    records = [_codec.encode_message(m) for m in (plain, exact, plain)]
    decoded = _codec.decode_message_array(b"[" + b",".join(records) + b"]")
    assert repr(decoded[1].message) == repr(exact.message)
    assert decoded[0] == decoded[2] == plain


@pytest.mark.parametrize(
    "bad",
    [
        b'{"message": {}, "message_id": true, "updated_at": "u", "created_at": "c"}',
        b'{"message": {}, "message_id": "1", "updated_at": "u", "created_at": "c"}',
        b'{"message": [], "message_id": 1, "updated_at": "u", "created_at": "c"}',
        b'{"message": {}, "message_id": 1, "redact_message": "x", "updated_at": "u", "created_at": "c"}',
        b'{"message": {}, "message_id": 1, "updated_at": "u"}',
        b"[]",
    ],
)
def test_message_array_refuses_a_record_of_the_wrong_shape(bad: bytes) -> None:
    raw = b"[" + _codec.encode_message(_message()) + b"," + bad + b"]"
    with pytest.raises(_codec.CodecError):
        _codec.decode_message_array(raw)


def test_message_array_opens_a_sealed_record_even_with_a_plain_message_beside_it() -> None:
    # The blob wins: a "message" member next to the sealed one is never read as the content.
    envelope = b'{"__svsm_sealed__": "blob", "message": {"role": "user", "content": []}, "message_id": 3, '
    envelope += b'"updated_at": "u", "created_at": "c"}'
    raw = b"[" + _codec.encode_message(_message()) + b"," + envelope + b"]"
    with pytest.raises(_codec.CodecError, match="sealed"):
        _codec.decode_message_array(raw)
    inner = b'{"message": {"role": "assistant", "content": [{"text": "opened"}]}}'
    decoded = _codec.decode_message_array(raw, lambda envelopes: [inner for _ in envelopes])
    assert decoded[1].message == {"role": "assistant", "content": [{"text": "opened"}]}
    assert (decoded[1].message_id, decoded[1].created_at) == (3, "c")


@pytest.mark.parametrize("raw", [b"not json", b"[1,2]", b'{"message": 1}', b"\xff\xfe"])
def test_garbage_is_a_codec_error(raw: bytes) -> None:
    with pytest.raises(_codec.CodecError):
        _codec.decode_message(raw)


def test_unserialisable_state_is_a_type_error() -> None:
    agent = SessionAgent(agent_id="a", state={"x": object()}, conversation_manager_state={})
    with pytest.raises(TypeError, match="not JSON serializable"):
        _codec.encode_agent(agent)


@pytest.mark.parametrize(
    "state",
    [
        {"big": 2**70, "neg": -(2**65)},
        {"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")},
        {"surrogate": "\ud800"},
        {"nested": [{"deep": [2**100]}]},
    ],
    ids=["big-int", "non-finite", "lone-surrogate", "nested-big-int"],
)
def test_values_orjson_cannot_write_round_trip_like_json(state: dict[str, object]) -> None:
    agent = SessionAgent(agent_id="a", state=state, conversation_manager_state={})
    decoded = _codec.decode_agent(_codec.encode_agent(agent))
    # json.dumps/loads is the SDK's own reference for what a stored value reads back as.
    import json

    expected = json.loads(json.dumps(state))
    assert repr(decoded.state) == repr(expected)
    assert decoded.created_at == agent.created_at


def test_non_str_keys_become_str_as_with_json() -> None:
    agent = SessionAgent(agent_id="a", state={"by_id": {1: "one", 2: "two"}}, conversation_manager_state={})
    assert _codec.decode_agent(_codec.encode_agent(agent)).state == {"by_id": {"1": "one", "2": "two"}}


def test_exact_records_keep_created_at_last_for_the_update_script() -> None:
    agent = SessionAgent(agent_id="a", state={"big": 2**70}, conversation_manager_state={})
    raw = _codec.encode_agent(agent)
    assert raw.endswith(b',"created_at":"' + agent.created_at.encode() + b'"}')
    assert not _codec.encode_agent_update(agent).endswith(b"}")
    exact_state = _codec.decode_state(_codec.dumps({"n": 2**70}))
    assert exact_state == {"n": 2**70}


def test_ordinary_messages_take_the_fast_path() -> None:
    assert _codec.EXACT_MARKER.encode() not in _codec.encode_message(_message())
