"""Count the requests valkey-py and redis-py put on the wire, and read the server's own command counts.

``count_round_trips()`` wraps ``send_packed_command`` of both libraries' ``AbstractConnection``: every
connection class (standalone, cluster, SSL, unix socket) inherits it, and a pipeline sends its whole
batch with one call, so one call is one round trip. Commands a connection sends while it opens
(HELLO, AUTH, CLIENT SETINFO, ...) are counted apart, as ``handshakes``: they depend on pool state, not
on the code under test.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

# Methods that open a connection, per library and version; sends made inside them are handshakes.
_CONNECT_METHODS = ("connect", "connect_check_health", "on_connect", "on_connect_check_health")


# Identity, not value, equality: nested blocks must each remove their own counter.
@dataclass(eq=False)
class RoundTrips:
    """Requests seen while a ``count_round_trips()`` block runs."""

    value: int = 0
    handshakes: int = 0
    # First command name of each counted request ("EVALSHA", "MULTI", ...), for assertion messages.
    commands: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"RoundTrips(value={self.value}, commands={self.commands}, handshakes={self.handshakes})"


_lock = threading.Lock()
_local = threading.local()
_active: list[RoundTrips] = []
_originals: list[tuple[type, str, Callable[..., Any]]] = []


def _first_command(packed: Any) -> str:
    """Name of the first command in a packed RESP request (bytes, str, or a list of chunks)."""
    chunk = packed[0] if isinstance(packed, (list, tuple)) and packed else packed
    head = bytes(chunk[:256]) if isinstance(chunk, (bytes, bytearray, memoryview)) else str(chunk)[:256].encode()
    parts = head.split(b"\r\n")
    # "*<n>", "$<len>", "<name>", ...
    return parts[2].decode(errors="replace").upper() if len(parts) > 2 else "?"


def _wrap_send(original: Callable[..., Any]) -> Callable[..., Any]:
    def send_packed_command(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        in_handshake = getattr(_local, "connecting", 0) > 0
        with _lock:
            for counter in _active:
                if in_handshake:
                    counter.handshakes += 1
                else:
                    counter.value += 1
                    counter.commands.append(_first_command(command))
        return original(self, command, *args, **kwargs)

    return send_packed_command


def _wrap_connect(original: Callable[..., Any]) -> Callable[..., Any]:
    def connect(self: Any, *args: Any, **kwargs: Any) -> Any:
        _local.connecting = getattr(_local, "connecting", 0) + 1
        try:
            return original(self, *args, **kwargs)
        finally:
            _local.connecting -= 1

    return connect


def _patch() -> None:
    for module_name in ("valkey.connection", "redis.connection"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        cls = module.AbstractConnection
        for name in ("send_packed_command", *_CONNECT_METHODS):
            original = cls.__dict__.get(name)
            if original is None:
                continue
            wrapper = _wrap_send(original) if name == "send_packed_command" else _wrap_connect(original)
            _originals.append((cls, name, original))
            setattr(cls, name, wrapper)
    if not any(name == "send_packed_command" for _, name, _ in _originals):
        raise RuntimeError("neither valkey-py nor redis-py has AbstractConnection.send_packed_command to count")


def _unpatch() -> None:
    while _originals:
        cls, name, original = _originals.pop()
        setattr(cls, name, original)


@contextmanager
def count_round_trips() -> Iterator[RoundTrips]:
    """Count requests sent by any valkey-py or redis-py connection while the block runs. Nests."""
    counter = RoundTrips()
    with _lock:
        if not _active:
            _patch()
        _active.append(counter)
    try:
        yield counter
    finally:
        with _lock:
            _active.remove(counter)
            if not _active:
                _unpatch()


def commandstats(client: Any) -> dict[str, int]:
    """Calls per command from ``INFO commandstats`` of a standalone client ("get", "client|setinfo", ...)."""
    stats = client.info("commandstats")
    return {
        (key.decode() if isinstance(key, bytes) else key).removeprefix("cmdstat_"): int(value["calls"])
        for key, value in stats.items()
    }
