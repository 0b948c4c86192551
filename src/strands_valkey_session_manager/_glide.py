"""The Valkey GLIDE family of the engine (``_engine.py``): ``glide_sync`` and ``glide``, standalone and cluster.

GLIDE clients send raw commands (``custom_command``) and non-atomic batches (``Batch``/
``ClusterBatch`` with ``is_atomic=False``: a pipeline, split per primary on a cluster); GLIDE
routes each command by its key. Their replies have valkey-py's shapes with
``decode_responses=False`` (bytes values, dicts for ``HGETALL``, lists for ranges, ``None`` for
missing). Scripts, NOSCRIPT, retries, waits and the store's errors are the engine's.

``_client.family_for`` picks these families for a client whose class lives in ``glide``/
``glide_sync``; this module is only imported then, so GLIDE stays an optional dependency.

Errors: GLIDE raises ``ClosingError``, ``ConnectionError``, ``TimeoutError`` and
``CircuitBreakerError`` for a client or connection that failed (classified by class), and
``RequestError`` for every error reply, with no structured code: the reply's code is its first word
(``READONLY ...``), or GLIDE's name for a code it knows (``... - ReadOnly: ...``).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from typing import Any, Final

from glide_shared.commands.batch import Batch, ClusterBatch
from glide_shared.exceptions import CircuitBreakerError, ClosingError, RequestError
from glide_shared.exceptions import ConnectionError as GlideConnectionError
from glide_shared.exceptions import TimeoutError as GlideTimeoutError
from glide_shared.routes import AllPrimaries

from . import _lua
from ._engine import Command, Failure, Load, Round, RoundResult, Send, Wire

# "the server did not do it (or we cannot know)": worth a retry later.
_UNAVAILABLE: Final[tuple[type[BaseException], ...]] = (
    ClosingError,
    GlideConnectionError,
    GlideTimeoutError,
    CircuitBreakerError,
)
# Server error codes, as the server sends them and as GLIDE names the ones it knows.
_UNAVAILABLE_CODES: Final = frozenset(
    {
        *("READONLY", "ReadOnly", "OOM", "LOADING", "BusyLoadingError", "TRYAGAIN", "TryAgain"),
        *("CLUSTERDOWN", "ClusterDown", "MASTERDOWN", "MasterDown", "IoError", "ClusterConnectionNotFound"),
    }
)
# A refused user or password is access denied too, not a server to retry later.
_DENIED_CODES: Final = frozenset({"NOPERM", "PermissionDenied", "NOAUTH", "WRONGPASS", "AuthenticationFailed"})
_NO_SCRIPT_CODES: Final = frozenset({"NOSCRIPT", "NoScriptError"})
_CROSS_SLOT_CODES: Final = frozenset({"CROSSSLOT", "CrossSlot"})
_GENERIC_CODES: Final = frozenset({"ERR", "ResponseError"})
_KNOWN_KIND = re.compile(r"signalled by the server: - (\w+):")
_FIRST_WORD = re.compile(r"[^\s:]*")


def _code(error: BaseException) -> str:
    """The server's error code (or GLIDE's name for it) of a request error."""
    text = str(error)
    known = _KNOWN_KIND.search(text)
    if known:
        return known.group(1)
    first = _FIRST_WORD.match(text)
    return first.group(0) if first else ""


def _arg(value: Any) -> str | bytes:
    """A command argument as GLIDE takes it: text or bytes (numbers as their decimal text)."""
    if isinstance(value, (str, bytes)):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"argument of type {type(value).__name__} cannot be sent as a command argument: {value!r}")


def _args(command: Command) -> list[str | bytes | bytearray | memoryview]:
    return [_arg(a) for a in command.args]


class _GlideFamily:
    """What the sync and async GLIDE families share: the client check, batches, the classification."""

    _library = ""  # "glide_sync" or "glide"

    def __init__(self, client: Any) -> None:
        library = importlib.import_module(self._library)
        if not isinstance(client, (library.GlideClient, library.GlideClusterClient)):
            kind = "an asyncio" if self._library == "glide" else "a synchronous"
            raise TypeError(
                f"client must be {kind} Valkey GLIDE client ({self._library}.GlideClient, "
                f"{self._library}.GlideClusterClient), not {type(client).__module__}.{type(client).__qualname__}"
            )
        self.client = client
        self.cluster = isinstance(client, library.GlideClusterClient)
        # GLIDE keeps its request timeout in private configuration: not checked (the README says to
        # raise request_timeout above wait_timeout).
        self.socket_timeout: float | None = None

    def is_no_script(self, error: BaseException) -> bool:
        return isinstance(error, RequestError) and _code(error) in _NO_SCRIPT_CODES

    def classify(self, error: BaseException) -> Failure | None:
        if isinstance(error, _UNAVAILABLE):
            return Failure.UNAVAILABLE
        if isinstance(error, RequestError):
            code = _code(error)
            if code in _DENIED_CODES:
                return Failure.DENIED
            if code in _UNAVAILABLE_CODES:
                return Failure.UNAVAILABLE
            if code in _CROSS_SLOT_CODES:
                return Failure.CROSS_SLOT
            return Failure.REFUSED
        return None

    def _batch(self, op: Round) -> Batch | ClusterBatch:
        """The round as a pipeline (not a transaction); keys may lie in different slots.

        The wait rides in the same batch. GLIDE keeps one multiplexed connection per node, so the
        wait follows the write on its connection. On a cluster GLIDE routes a keyless
        ``WAIT``/``WAITAOF`` to every primary and keeps the smallest count (a batch cannot route
        one command apart): the write's own primary is among them, and a primary whose replicas
        lag makes the wait stricter, never looser.
        """
        batch: Batch | ClusterBatch = ClusterBatch(is_atomic=False) if self.cluster else Batch(is_atomic=False)
        for command in op.commands:
            batch.custom_command(_args(command))
        if op.wait is not None:
            batch.custom_command(_args(op.wait))
        return batch

    def _load_args(self, name: str) -> tuple[list[str | bytes | bytearray | memoryview], dict[str, Any]]:
        route = {"route": AllPrimaries()} if self.cluster else {}
        return ["SCRIPT", "LOAD", _lua.source(name)], route

    def _result(self, op: Round, results: Sequence[Any] | None) -> RoundResult:
        replies = list(results or ())
        n = len(op.commands)
        waits = replies[n:]
        refused = any(isinstance(w, RequestError) and _code(w) in _GENERIC_CODES for w in waits)
        return RoundResult(replies[:n], waits, None, refused)


class GlideFamily(_GlideFamily):
    """A synchronous GLIDE client (``glide_sync``)."""

    _library = "glide_sync"

    def do(self, op: Wire) -> Any:
        if isinstance(op, Send):
            return self.client.custom_command(_args(op.command))
        if isinstance(op, Load):
            for name in op.names:
                args, route = self._load_args(name)
                self.client.custom_command(args, **route)
            return None
        return self._result(op, self.client.exec(self._batch(op), raise_on_error=False))

    def release(self, owned: bool) -> None:
        """Close the client if the store made it."""
        if owned:
            self.client.close()


class AsyncGlideFamily(_GlideFamily):
    """An asyncio GLIDE client (``glide``). It belongs to the event loop that created it."""

    _library = "glide"

    async def prepare(self) -> None:
        """Nothing: a GLIDE client knows its topology from its creation."""

    async def do(self, op: Wire) -> Any:
        if isinstance(op, Send):
            return await self.client.custom_command(_args(op.command))
        if isinstance(op, Load):
            for name in op.names:
                args, route = self._load_args(name)
                await self.client.custom_command(args, **route)
            return None
        return self._result(op, await self.client.exec(self._batch(op), raise_on_error=False))

    async def release(self, owned: bool) -> None:
        """Close the client if the store made it (a client passed in stays open)."""
        if owned:
            await self.client.close()
