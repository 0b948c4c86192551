"""Codec: SDK-compatible JSON, exact bytes, created_at last, direct decoding."""

from __future__ import annotations

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


@pytest.mark.parametrize("raw", [b"not json", b"[1,2]", b'{"message": 1}', b"\xff\xfe"])
def test_garbage_is_a_codec_error(raw: bytes) -> None:
    with pytest.raises(_codec.CodecError):
        _codec.decode_message(raw)


def test_unserialisable_state_is_a_type_error() -> None:
    agent = SessionAgent(agent_id="a", state={"x": object()}, conversation_manager_state={})
    with pytest.raises(TypeError, match="not JSON serializable"):
        _codec.encode_agent(agent)
