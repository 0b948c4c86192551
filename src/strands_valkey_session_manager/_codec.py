"""Encoding of records to bytes and back; every other module sees bytes.

Records are JSON (orjson) in the same shape as the SDK's ``to_dict()``: ``bytes`` values become
``{"__bytes_encoded__": true, "data": <base64>}``, so our data reads like a ``FileSessionManager``
file. Two rules the Lua scripts rely on:

* ``created_at`` is always the last member of an agent or message record, so an update can keep
  the stored creation time by splicing it onto the new body (see ``lua/update_record.lua``).
* an update body is the record without ``created_at`` and without its closing brace.

Decoding builds ``SessionMessage``/``SessionAgent`` directly (``from_dict`` inspects the class
signature on every call) and walks a record for base64 wrappers only when the marker occurs in it.

Sealing (compression, encryption: ``_seal.py``) is passed in as two callables, so this module stays
free of keys: a :data:`Seal` turns the JSON of a record's content members into a blob (or None to
keep the record plain), an :data:`Open` turns a blob back into that JSON. A sealed record keeps
its ids and timestamps in the clear, ``created_at`` still last, and carries the rest in
:data:`SEALED_MARKER`; plain records decode as before, so old and sealed records mix.
"""

from __future__ import annotations

import base64
import dataclasses
import gc
import json
import math
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import orjson
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

# strands-agents 1.0's SessionAgent has no internal state (interrupts, model state came later).
_AGENT_HAS_INTERNAL_STATE: Final = "_internal_state" in {f.name for f in dataclasses.fields(SessionAgent)}
BYTES_MARKER: Final = "__bytes_encoded__"
EXACT_MARKER: Final = "__svsm_exact_json__"
SEALED_MARKER: Final = "__svsm_sealed__"

#: Seals the JSON of a record's content members: the blob (base64 text), or None to stay plain.
Seal = Callable[[bytes], "str | None"]
#: Opens a blob: (blob, the record's plaintext envelope) -> the JSON of its content members.
Open = Callable[[Any, dict[str, Any]], bytes]
#: Opens the blobs of many sealed records at once: their envelopes -> the JSON of their contents.
OpenMany = Callable[[list[dict[str, Any]]], list[bytes]]


class CodecError(ValueError):
    """A stored value is not a record this package wrote."""


def _default(value: object) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {BYTES_MARKER: True, "data": base64.b64encode(bytes(value)).decode("ascii")}
    raise TypeError(f"value of type {type(value).__name__} is not JSON serializable")


def _has_non_finite(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


def dumps(value: dict[str, Any]) -> bytes:
    """JSON-encode a record; ``bytes`` anywhere inside become base64 wrappers.

    orjson writes almost every record. What orjson cannot write the way ``json`` (and so the SDK's
    own stores) would, namely integers beyond 64 bits, NaN/Infinity (orjson writes ``null``) and
    lone surrogates, goes through ``json`` instead, with :data:`EXACT_MARKER` as the first member so
    :func:`loads` reads it back with ``json`` too (orjson would turn big integers into floats).

    Raises:
        TypeError: If ``value`` holds something JSON cannot represent.
    """
    try:
        raw = orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return _exact_dumps(value)
    # orjson turns NaN/Infinity into null; only a record holding null can have been changed.
    if b"null" in raw and _has_non_finite(value):
        return _exact_dumps(value)
    return raw


def _exact_dumps(value: dict[str, Any]) -> bytes:
    marked = {EXACT_MARKER: True, **value}
    try:
        text = json.dumps(marked, default=_default, separators=(",", ":"))
    except RecursionError:
        # Nested deeper than json's C encoder recurses (about 500 levels): the same text, iteratively.
        text = _deep_dumps(marked)
    return text.encode("ascii")


class _Text(str):
    """Output already encoded, queued between the values :func:`_deep_dumps` still has to encode."""


_OPEN = {dict: ("{", "}"), list: ("[", "]")}


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


def _key_text(key: Any) -> str:
    """A dict key as ``json.dumps`` writes it (str, number, bool and None keys)."""
    if isinstance(key, str):
        return key
    if isinstance(key, float):
        return _float_text(key)
    if key is True or key is False or key is None:
        return {True: "true", False: "false", None: "null"}[key]
    if isinstance(key, int):
        return int.__repr__(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def _deep_dumps(value: Any) -> str:
    """``json.dumps(value, default=_default, separators=(",", ":"))`` with an explicit stack instead
    of recursion, for values nested deeper than json's encoder allows (same text; a reference cycle
    is a ``ValueError``, as for json)."""
    parts: list[str] = []
    # LIFO of values still to encode and _Text already encoded; open containers by id (cycles).
    work: list[Any] = [value]
    open_ids: set[int] = set()
    while work:
        item = work.pop()
        if type(item) is _Text:
            parts.append(item)
        elif isinstance(item, tuple) and len(item) == 2 and item[0] is _CLOSE:
            open_ids.discard(item[1])
        elif isinstance(item, str):
            parts.append(json.encoder.encode_basestring_ascii(item))
        elif item is None or item is True or item is False:
            parts.append({None: "null", True: "true", False: "false"}[item])
        elif isinstance(item, int):
            parts.append(int.__repr__(item))
        elif isinstance(item, float):
            parts.append(_float_text(item))
        elif isinstance(item, (dict, list, tuple)):
            if id(item) in open_ids:
                raise ValueError("Circular reference detected")
            opening, closing = _OPEN[dict if isinstance(item, dict) else list]
            if not item:
                parts.append(opening + closing)
                continue
            open_ids.add(id(item))
            parts.append(opening)
            # Pushed in reverse: the closing bracket last out, each member after its separator.
            work.append((_CLOSE, id(item)))
            work.append(_Text(closing))
            entries = list(item.items()) if isinstance(item, dict) else [(None, v) for v in item]
            for n in range(len(entries) - 1, -1, -1):
                key, member = entries[n]
                work.append(member)
                prefix = "," if n else ""
                if isinstance(item, dict):
                    prefix += json.encoder.encode_basestring_ascii(_key_text(key)) + ":"
                if prefix:
                    work.append(_Text(prefix))
        else:
            work.append(_default(item))
    return "".join(parts)


_CLOSE = object()
_WHITESPACE = frozenset(" \t\n\r")
_NUMBER = re.compile(r"(-?(?:0|[1-9]\d*))(\.\d+)?([eE][-+]?\d+)?")
_CONSTANTS = (
    ("true", True),
    ("false", False),
    ("null", None),
    ("NaN", math.nan),
    ("Infinity", math.inf),
    ("-Infinity", -math.inf),
)


def _deep_loads(raw: bytes | str) -> Any:
    """``json.loads`` with an explicit stack instead of recursion, for values nested deeper than
    json's decoder allows: the same grammar (NaN and Infinity included; a repeated key keeps its
    last value).

    Raises:
        ValueError: If ``raw`` is not valid JSON.
    """
    text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8")
    # Open containers: [container, the key its next member goes under (dicts)].
    stack: list[list[Any]] = []
    pos = _skip(text, 0)
    while True:
        char = text[pos : pos + 1]
        value: Any
        if char in {"{", "["}:
            pos = _skip(text, pos + 1)
            if text[pos : pos + 1] == ("}" if char == "{" else "]"):
                value, pos = ({} if char == "{" else []), pos + 1
            else:
                key = None
                if char == "{":
                    key, pos = _key_at(text, pos)
                stack.append([{} if char == "{" else [], key])
                continue
        else:
            value, pos = _scalar_at(text, pos)
        # A value is complete: store it in its container, closing every container that ends here.
        while True:
            pos = _skip(text, pos)
            if not stack:
                if pos != len(text):
                    raise ValueError(f"extra data at {pos}")
                return value
            entry = stack[-1]
            container = entry[0]
            if type(container) is dict:
                container[entry[1]] = value
            else:
                container.append(value)
            char = text[pos : pos + 1]
            if char == ",":
                pos = _skip(text, pos + 1)
                if type(container) is dict:
                    entry[1], pos = _key_at(text, pos)
                break
            if char != ("}" if type(container) is dict else "]"):
                raise ValueError(f"expected ',' or the end of a container at {pos}")
            pos += 1
            stack.pop()
            value = container


def _skip(text: str, pos: int) -> int:
    """The position after the whitespace at ``pos``."""
    while text[pos : pos + 1] in _WHITESPACE:
        pos += 1
    return pos


def _key_at(text: str, pos: int) -> tuple[str, int]:
    """A member's key and colon at ``pos``; the position of its value."""
    if text[pos : pos + 1] != '"':
        raise ValueError(f"expected a string key at {pos}")
    key, pos = json.decoder.scanstring(text, pos + 1, True)  # type: ignore[attr-defined]
    pos = _skip(text, pos)
    if text[pos : pos + 1] != ":":
        raise ValueError(f"expected ':' at {pos}")
    return key, _skip(text, pos + 1)


def _scalar_at(text: str, pos: int) -> tuple[Any, int]:
    """The string, number or constant starting at ``pos``, and the position after it."""
    if text[pos : pos + 1] == '"':
        value, end = json.decoder.scanstring(text, pos + 1, True)  # type: ignore[attr-defined]
        return value, end
    number = _NUMBER.match(text, pos)
    if number is not None:
        whole, fraction, exponent = number.groups()
        if fraction or exponent:
            return float(whole + (fraction or "") + (exponent or "")), number.end()
        return int(whole), number.end()
    for name, constant in _CONSTANTS:
        if text.startswith(name, pos):
            return constant, pos + len(name)
    raise ValueError(f"expected a value at {pos}")


def _decode_bytes(value: Any) -> Any:
    try:
        return _decode_bytes_recursive(value)
    except RecursionError:
        return _decode_bytes_deep(value)


def _decode_bytes_recursive(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(BYTES_MARKER) is True and "data" in value:
            return base64.b64decode(value["data"])
        return {k: _decode_bytes_recursive(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_bytes_recursive(v) for v in value]
    return value


def _decode_bytes_deep(value: Any) -> Any:
    """:func:`_decode_bytes_recursive` in place, with an explicit stack (for deeply nested values)."""

    def decoded(item: Any) -> Any:
        if isinstance(item, dict) and item.get(BYTES_MARKER) is True and "data" in item:
            return base64.b64decode(item["data"])
        if isinstance(item, (dict, list)):
            stack.append(item)
        return item

    stack: list[Any] = []
    value = decoded(value)
    while stack:
        container = stack.pop()
        if isinstance(container, dict):
            for k, v in container.items():
                container[k] = decoded(v)
        else:
            for i, v in enumerate(container):
                container[i] = decoded(v)
    return value


def loads(raw: bytes | str) -> Any:
    """Decode JSON written by :func:`dumps`, restoring ``bytes``; the exact marker is removed.

    Raises:
        CodecError: If ``raw`` is not valid JSON.
    """
    try:
        try:
            value = json.loads(raw) if _contains(raw, EXACT_MARKER) else orjson.loads(raw)
        except RecursionError:
            # Nested deeper than json's C decoder recurses (written by _deep_dumps).
            value = _deep_loads(raw)
    except ValueError as e:  # both libraries' decode errors are ValueErrors (UnicodeDecodeError too)
        raise CodecError(f"not valid JSON: {e}") from e
    if _contains(raw, BYTES_MARKER):
        value = _decode_bytes(value)
    if isinstance(value, dict):
        value.pop(EXACT_MARKER, None)
    return value


def _loads_records(raw: bytes | str) -> Any:
    """:func:`loads` of a JSON array of records, with one scan of ``raw`` instead of two: a record
    that needs ``json`` carries :data:`EXACT_MARKER` as its first member or is not JSON orjson
    reads (NaN, lone surrogates), so the parsed records are checked for it instead."""
    try:
        values = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return loads(raw)
    if type(values) is not list:
        return values
    for v in values:
        if type(v) is dict and EXACT_MARKER in v:
            return loads(raw)
    if _contains(raw, BYTES_MARKER):
        values = _decode_bytes(values)
    return values


_QUOTED = {marker: (f'"{marker}"', f'"{marker}"'.encode()) for marker in (EXACT_MARKER, BYTES_MARKER)}


def _contains(raw: bytes | str, marker: str) -> bool:
    text, binary = _QUOTED[marker]
    if isinstance(raw, str):
        return text in raw
    return binary in raw


def text(value: Any) -> str:
    """A reply element as ``str``, whatever the client's ``decode_responses``."""
    return value.decode() if isinstance(value, bytes) else str(value)


def dumps_list(values: tuple[str, ...]) -> str:
    """A list of strings as JSON text, or ``""`` when empty (how the session hash stores tags)."""
    return orjson.dumps(list(values)).decode() if values else ""


def _with_created_last(fields: dict[str, Any], created_at: str) -> bytes:
    fields["created_at"] = created_at
    return dumps(fields)


# -- sessions ---------------------------------------------------------------------------------


def encode_session(session: Session) -> bytes:
    """Session record as stored."""
    return dumps(
        {
            "session_id": session.session_id,
            "session_type": session.session_type.value,
            "created_at": session.created_at,
            "updated_at": session.updated_at,
        }
    )


def decode_session(raw: bytes | str) -> Session:
    """Inverse of :func:`encode_session`."""
    data = _object(raw)
    try:
        session = Session(
            session_id=data["session_id"],
            session_type=SessionType(data["session_type"]),
            created_at=data["created_at"],
            updated_at=data["updated_at"],
        )
    except (KeyError, ValueError, TypeError) as e:
        raise CodecError(f"not a session record: {e!r}") from e
    _typed(
        "session",
        session_id=(session.session_id, str),
        created_at=(session.created_at, str),
        updated_at=(session.updated_at, str),
    )
    return session


# -- agents -----------------------------------------------------------------------------------


def _agent_fields(agent: SessionAgent, seal: Seal | None = None) -> dict[str, Any]:
    if seal is not None:
        inner = {
            "state": agent.state,
            "conversation_manager_state": agent.conversation_manager_state,
            "_internal_state": agent._internal_state,
        }
        blob = seal(dumps(inner))
        if blob is not None:
            return {SEALED_MARKER: blob, "agent_id": agent.agent_id, "updated_at": agent.updated_at}
    return {
        "agent_id": agent.agent_id,
        "state": agent.state,
        "conversation_manager_state": agent.conversation_manager_state,
        "_internal_state": getattr(agent, "_internal_state", {}),
        "updated_at": agent.updated_at,
    }


def encode_agent(agent: SessionAgent, seal: Seal | None = None) -> bytes:
    """Agent record as stored, ``created_at`` last; sealed when ``seal`` says so."""
    return _with_created_last(_agent_fields(agent, seal), agent.created_at)


def encode_agent_update(agent: SessionAgent, seal: Seal | None = None) -> bytes:
    """Agent record without ``created_at`` and its closing brace, for ``update_record.lua``."""
    return dumps(_agent_fields(agent, seal))[:-1]


def decode_agent(raw: bytes | str, open_: Open | None = None) -> SessionAgent:
    """Inverse of :func:`encode_agent`, without ``SessionAgent.from_dict``."""
    return _agent_from_fields(unsealed(_object(raw), open_))


def _agent_from_fields(data: Any) -> SessionAgent:
    try:
        fields = {
            "agent_id": data["agent_id"],
            "state": data["state"],
            "conversation_manager_state": data["conversation_manager_state"],
            "created_at": data["created_at"],
            "updated_at": data["updated_at"],
        }
        if _AGENT_HAS_INTERNAL_STATE:
            fields["_internal_state"] = data.get("_internal_state", {})
    except (KeyError, TypeError, AttributeError) as e:
        raise CodecError(f"not an agent record: {e!r}") from e
    _typed(
        "agent",
        **{
            name: (value, str if name.endswith("_id") or name.endswith("_at") else dict)
            for name, value in fields.items()
        },
    )
    return SessionAgent(**fields)


# -- messages ---------------------------------------------------------------------------------


def _message_fields(message: SessionMessage, seal: Seal | None = None) -> dict[str, Any]:
    if seal is not None:
        inner: dict[str, Any] = {"message": message.message}
        if message.redact_message is not None:
            inner["redact_message"] = message.redact_message
        blob = seal(dumps(inner))
        if blob is not None:
            return {SEALED_MARKER: blob, "message_id": message.message_id, "updated_at": message.updated_at}
    fields: dict[str, Any] = {"message": message.message, "message_id": message.message_id}
    # Absent rather than null: keeps "null" out of ordinary records (see dumps).
    if message.redact_message is not None:
        fields["redact_message"] = message.redact_message
    fields["updated_at"] = message.updated_at
    return fields


def encode_message(message: SessionMessage, seal: Seal | None = None) -> bytes:
    """Message record as stored, ``created_at`` last; sealed when ``seal`` says so."""
    return _with_created_last(_message_fields(message, seal), message.created_at)


def encode_message_update(message: SessionMessage, seal: Seal | None = None) -> bytes:
    """Message record without ``created_at`` and its closing brace, for ``update_record.lua``."""
    return dumps(_message_fields(message, seal))[:-1]


def _message_from_fields(data: Any) -> SessionMessage:
    try:
        message = SessionMessage(
            message=data["message"],
            message_id=data["message_id"],
            redact_message=data.get("redact_message"),
            created_at=data["created_at"],
            updated_at=data["updated_at"],
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise CodecError(f"not a message record: {e!r}") from e
    return _checked_message(message)


def _sdk_typed(m: SessionMessage) -> bool:
    """Whether a message's members have the types the SDK gives them (a cheap check per record)."""
    return (
        type(m.message) is dict
        and type(m.message_id) is int
        and type(m.created_at) is str
        and type(m.updated_at) is str
        and (m.redact_message is None or type(m.redact_message) is dict)
    )


def _checked_message(message: SessionMessage) -> SessionMessage:
    """``message`` if its members have the types the SDK gives them; else which one is wrong."""
    if not _sdk_typed(message):
        _typed(
            "message",
            message=(message.message, dict),
            message_id=(message.message_id, int),
            created_at=(message.created_at, str),
            updated_at=(message.updated_at, str),
            redact_message=(message.redact_message, (dict, type(None))),
        )
    return message


def _typed(record: str, **members: tuple[Any, type | tuple[type, ...]]) -> None:
    """Raise :class:`CodecError` naming the first member whose value is not of its type."""
    for name, (value, expected) in members.items():
        # bool is an int to isinstance, not to a record: a message id true is not an id.
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise CodecError(f"not a {record} record: {name} is a {type(value).__name__}")


def message_from_dict(data: dict[str, Any]) -> SessionMessage:
    """A message from the SDK's ``to_dict()`` shape (base64 wrappers are turned back into bytes)."""
    return _message_from_fields(_decode_bytes(data))


def agent_from_dict(data: dict[str, Any]) -> SessionAgent:
    """An agent from the SDK's ``to_dict()`` shape (base64 wrappers are turned back into bytes)."""
    return _agent_from_fields(_decode_bytes(data))


def decode_message(raw: bytes | str, open_: Open | None = None) -> SessionMessage:
    """Inverse of :func:`encode_message`."""
    return _message_from_fields(unsealed(_object(raw), open_))


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one step of decoding, and resume it after.

    A restore allocates three or four container objects per message that all survive, the pattern
    that makes CPython's collector scan the whole heap again and again (a 10,000-message restore
    spent half its time there, a 100,000-message one about 40%). One step is synchronous code of at
    most 1,000 records, so the pause is bounded and never spans a wait on the server (a key
    provider's call inside it runs under :func:`collector_resumed`); no reference cycle is made
    inside it. A collector already off (the application's choice) stays off.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    _pause.on = True
    try:
        yield
    finally:
        _pause.on = False
        gc.enable()


@contextmanager
def collector_resumed() -> Iterator[None]:
    """Within :func:`collector_paused` (this thread's), the collector on again for a call that may
    wait, such as a key provider unwrapping a data key over the network; else nothing."""
    if not getattr(_pause, "on", False):
        yield
        return
    gc.enable()
    try:
        yield
    finally:
        gc.disable()


_pause = threading.local()


def decode_message_array(raw: bytes | str, open_many: OpenMany | None = None) -> list[SessionMessage]:
    """Decode a JSON array of message records (as ``list_messages.lua`` returns them) in one parse."""
    values = _loads_records(raw)
    if not isinstance(values, list):
        raise CodecError("not a list of message records")
    if _POSITIONAL_MESSAGE:
        try:
            return _plain_messages(values)
        except _NotPlain:
            pass  # sealed or not a record: the checks below say which
    sealed = [i for i, v in enumerate(values) if type(v) is dict and SEALED_MARKER in v]
    if not sealed:
        return [_message_from_fields(v) for v in values]
    if open_many is None:
        raise CodecError("sealed record: read it through a repository")
    # The opened contents are parsed as one array: one parse instead of one per record. Each is one
    # JSON object (authenticated when encrypted); a count that does not match means one was not.
    inners = loads(b"[" + b",".join(open_many([values[i] for i in sealed])) + b"]")
    if len(inners) != len(sealed):
        raise CodecError("a sealed record's content is not one JSON object")
    for i, inner in zip(sealed, inners, strict=True):
        values[i] = _sealed_message_from(values[i], inner)
    return [v if type(v) is SessionMessage else _message_from_fields(v) for v in values]


# SessionMessage's fields in the order its __init__ takes them (positional is the fastest call).
_POSITIONAL_MESSAGE: Final = [f.name for f in dataclasses.fields(SessionMessage)] == [
    "message",
    "message_id",
    "redact_message",
    "created_at",
    "updated_at",
]


class _NotPlain(Exception):
    """A record of the array is sealed or not a well-typed plain message record."""


def _plain_messages(values: list[Any]) -> list[SessionMessage]:
    """Plain message records as messages (the usual restore): one positional call and one type
    check per record, no copies; raises :class:`_NotPlain` at the first record that is not one."""
    messages: list[SessionMessage] = []
    append = messages.append
    new = SessionMessage
    try:
        for v in values:
            m = new(v["message"], v["message_id"], v.get("redact_message"), v["created_at"], v["updated_at"])
            if SEALED_MARKER in v or not _sdk_typed(m):
                raise _NotPlain
            append(m)
    except (KeyError, TypeError, AttributeError) as e:
        raise _NotPlain from e
    return messages


def _sealed_message_from(envelope: dict[str, Any], inner: Any) -> SessionMessage:
    """A message from a sealed record's envelope and opened content, without merging them."""
    if type(inner) is not dict:
        raise CodecError(f"sealed content is not a JSON object but {type(inner).__name__}")
    try:
        message = SessionMessage(
            message=inner["message"],
            message_id=envelope["message_id"],
            redact_message=inner.get("redact_message"),
            created_at=envelope["created_at"],
            updated_at=envelope["updated_at"],
        )
    except (KeyError, TypeError) as e:
        raise CodecError(f"not a message record: {e!r}") from e
    return _checked_message(message)


# -- multi-agent state ------------------------------------------------------------------------


def encode_state(state: dict[str, Any], seal: Seal | None = None) -> bytes:
    """Orchestrator state as stored: the state itself, or ``{"__svsm_sealed__": <blob>}``."""
    raw = dumps(state)
    if seal is not None:
        blob = seal(raw)
        if blob is not None:
            return dumps({SEALED_MARKER: blob})
    return raw


def decode_state(raw: bytes | str, open_: Open | None = None) -> dict[str, Any]:
    """Inverse of :func:`encode_state`."""
    data = _object(raw)
    if SEALED_MARKER in data and len(data) == 1:
        return _opened(data, open_)
    return data


# -- sealed records ---------------------------------------------------------------------------


def unsealed(data: Any, open_: Open | None) -> Any:
    """A record with its sealed members opened and merged back; other values as they are."""
    if not isinstance(data, dict) or SEALED_MARKER not in data:
        return data
    inner = _opened(data, open_)
    envelope = {k: v for k, v in data.items() if k != SEALED_MARKER}
    # The envelope's ids are the ones the blob is bound to: they win over anything inside.
    return {**inner, **envelope}


def _opened(data: dict[str, Any], open_: Open | None) -> dict[str, Any]:
    if open_ is None:
        raise CodecError("sealed record: read it through a repository")
    inner = loads(open_(data[SEALED_MARKER], data))
    if not isinstance(inner, dict):
        raise CodecError(f"sealed content is not a JSON object but {type(inner).__name__}")
    return inner


def _object(raw: bytes | str) -> dict[str, Any]:
    value = loads(raw)
    if not isinstance(value, dict):
        raise CodecError(f"expected a JSON object, found {type(value).__name__}")
    return value
