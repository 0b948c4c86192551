"""The valkey-py / redis-py family of the engine (``_engine.py``), and :func:`adapter_for`.

valkey-py and redis-py (standalone and cluster clients, sync and asyncio, ``decode_responses``
either way) share one command API, so one family serves all of them; what differs is the exception
module, looked up from the client's own package. The family sends raw commands
(``execute_command``), pipelines and ``SCRIPT LOAD``, and classifies exceptions by class; the
engine decides everything else. Valkey GLIDE clients get ``_glide.py``'s family, chosen by
:func:`adapter_for` from the client's module.

The engine's names are re-exported here for the repository's modules.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import logging
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any, Final, Literal, TypeVar, cast, overload

from . import _lua
from ._engine import (
    DEFAULT_WAIT_TIMEOUT,
    NO_WAIT,
    SESSION_ERRORS,
    AsyncAdapter,
    AsyncEngine,
    Call,
    Command,
    CommandCall,
    Durability,
    Engine,
    ErrorMap,
    Failure,
    Load,
    Plan,
    RetryPolicy,
    Round,
    RoundResult,
    ScriptCall,
    Send,
    Step,
    SyncAdapter,
    Unacknowledged,
    Wire,
    acall_retrying,
    acknowledged,
    arun_plan,
    call_retrying,
    run_plan,
)

__all__ = [
    "DEFAULT_WAIT_TIMEOUT",
    "NO_WAIT",
    "AsyncAdapter",
    "AsyncClientAdapter",
    "Call",
    "ClientAdapter",
    "CommandCall",
    "Durability",
    "Plan",
    "RetryPolicy",
    "ScriptCall",
    "Step",
    "SyncAdapter",
    "Unacknowledged",
    "acknowledged",
    "adapter_for",
    "aretrying",
    "arun_plan",
    "family_for",
    "is_async_client",
    "is_repeat",
    "retrying",
    "run_plan",
]

_SUPPORTED: Final = ("valkey", "redis")
# Option understood by both libraries' parse_response (sync, asyncio, cluster, pipelines): the
# reply is read raw, so a decoding client still returns exact bytes.
_NEVER_DECODE: Final = "NEVER_DECODE"
logger = logging.getLogger(__name__)
_F = TypeVar("_F", bound=Callable[..., Any])

# -- retries of repository methods ---------------------------------------------------------------


# The attempt of the repository method running in this context (0: the first): a repeat after a
# lost reply may find its own earlier write done (a delete finds the session gone).
_ATTEMPT: ContextVar[int] = ContextVar("svsm_attempt", default=0)


def is_repeat() -> bool:
    """True inside a retried repository method from its second attempt on."""
    return _ATTEMPT.get() > 0


def retrying(method: _F) -> _F:
    """Repeat a repository method per ``self._db.retry`` (``_engine.call_retrying``)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        def attempt(n: int) -> Any:
            token = _ATTEMPT.set(n)
            try:
                return method(self, *args, **kwargs)
            finally:
                _ATTEMPT.reset(token)

        return call_retrying(self._db.retry, attempt, method.__name__, logger)

    return cast(_F, wrapper)


def aretrying(method: _F) -> _F:
    """:func:`retrying` for coroutine methods."""

    @functools.wraps(method)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        async def attempt(n: int) -> Any:
            token = _ATTEMPT.set(n)
            try:
                return await method(self, *args, **kwargs)
            finally:
                _ATTEMPT.reset(token)

        return await acall_retrying(self._db.retry, attempt, method.__name__, logger)

    return cast(_F, wrapper)


# -- the valkey-py / redis-py family -------------------------------------------------------------

# Errors that mean "the server did not do it (or we cannot know)": worth a retry later.
UNAVAILABLE_ERRORS: Final = (
    "ConnectionError",
    "TimeoutError",
    "ClusterDownError",
    "ClusterError",
    # Not under the library's base error; raised when no node can be reached.
    "ValkeyClusterException",
    "RedisClusterException",
    "SlotNotCoveredError",
    "ReadOnlyError",
    "OutOfMemoryError",
    "BusyLoadingError",
    "TryAgainError",
    "MasterDownError",
)


def _code(error: BaseException) -> str:
    """The error code of a reply the library did not map to a class: its first word."""
    return str(error).split(" ", 1)[0]


def is_async_client(client: Any) -> bool:
    """True for the asyncio clients of valkey-py and redis-py."""
    return inspect.iscoroutinefunction(getattr(type(client), "execute_command", None))


def _library(client: Any) -> str | None:
    """``"valkey"`` or ``"redis"`` for a client of those libraries, else ``None``."""
    family = type(client).__module__.split(".", 1)[0]
    return family if family in _SUPPORTED and hasattr(client, "execute_command") else None


def _socket_timeout(client: Any) -> float | None:
    """The ``socket_timeout`` a valkey-py/redis-py client (standalone, cluster, sync or asyncio) was made with."""
    for holder in (getattr(client, "connection_pool", None), getattr(client, "nodes_manager", None), client):
        kwargs = getattr(holder, "connection_kwargs", None)
        if isinstance(kwargs, dict):
            timeout = kwargs.get("socket_timeout")
            return float(timeout) if isinstance(timeout, (int, float)) else None
    return None


class _PyFamily:
    """What the sync and asyncio valkey-py/redis-py families share: the exception classes, queueing."""

    def __init__(self, client: Any) -> None:
        family = _library(client)
        assert family is not None
        exceptions = importlib.import_module(f"{family}.exceptions")
        self.client = client
        self.cluster = hasattr(client, "nodes_manager")
        self.socket_timeout = _socket_timeout(client)
        self._unavailable = tuple(getattr(exceptions, n) for n in UNAVAILABLE_ERRORS if hasattr(exceptions, n))
        self._response: type[BaseException] = exceptions.ResponseError
        self._no_script: type[BaseException] = exceptions.NoScriptError
        self._cross_slot: type[BaseException] = exceptions.ClusterCrossSlotError
        # A wrong password or user is refused access, not a server to retry later.
        self._denied = (exceptions.NoPermissionError, exceptions.AuthenticationError)
        self._base: type[BaseException] = getattr(exceptions, "ValkeyError" if family == "valkey" else "RedisError")

    def is_no_script(self, error: BaseException) -> bool:
        return isinstance(error, self._no_script)

    def classify(self, error: BaseException) -> Failure | None:
        """The meaning of a client exception, by its class (the libraries map error codes to classes)."""
        if isinstance(error, self._denied):
            return Failure.DENIED
        if isinstance(error, self._unavailable):
            return Failure.UNAVAILABLE
        if isinstance(error, self._cross_slot) or (type(error) is self._response and _code(error) == "CROSSSLOT"):
            # A cluster client's parser maps CROSSSLOT to its class; a standalone client's keeps
            # the code as the reply's first word (the libraries strip only the codes they map).
            return Failure.CROSS_SLOT
        if isinstance(error, self._response):
            return Failure.REFUSED
        if isinstance(error, UnicodeDecodeError):
            return Failure.UNDECODABLE
        if isinstance(error, self._base):
            return Failure.CLIENT
        return None

    @staticmethod
    def _options(command: Command) -> dict[str, Any]:
        return {_NEVER_DECODE: []} if command.raw else {}

    def _pipeline(self) -> Any:
        # A cluster pipeline is never a transaction; a standalone one must be asked not to be.
        return self.client.pipeline() if self.cluster else self.client.pipeline(transaction=False)

    def _queue(self, pipe: Any, op: Round) -> list[Any]:
        """Queue the round's commands, then its wait on each node written (``[None]`` standalone).

        A keyless ``WAIT`` in a cluster pipeline would go to every primary (the libraries' routing
        for it), so it is given each written key's node: the pipeline then sends it on the same
        connection, right after that node's share of the pipeline.
        """
        for command in op.commands:
            # Queues and returns the pipeline (awaitable on asyncio pipelines: not awaited here).
            pipe.execute_command(*command.args, **self._options(command))
        if op.wait is None:
            return []
        if not self.cluster:
            pipe.execute_command(*op.wait.args)
            return [None]
        nodes = {}
        for key in op.written:
            node = self.client.get_node_from_key(key)
            nodes[node.name] = node
        for node in nodes.values():
            pipe.execute_command(*op.wait.args, target_nodes=node)
        return list(nodes.values())

    def _result(self, op: Round, results: Sequence[Any], nodes: list[Any]) -> RoundResult:
        n = len(op.commands)
        waits = list(results[n:])
        moved = None
        if self.cluster and op.wait is not None:
            asked = {node.name for node in nodes}
            moved = next((k for k in op.written if self.client.get_node_from_key(k).name not in asked), None)
        # The generic ERR (an unknown command, WAITAOF without appendonly) is a plain ResponseError.
        refused = any(type(w) is self._response for w in waits)
        return RoundResult(list(results[:n]), waits, moved, refused)


class PyFamily(_PyFamily):
    """A synchronous valkey-py or redis-py client."""

    def do(self, op: Wire) -> Any:
        if isinstance(op, Send):
            command = op.command
            if command.raw:
                return self.client.execute_command(*command.args, **{_NEVER_DECODE: []})
            return self.client.execute_command(*command.args)
        if isinstance(op, Load):
            for name in op.names:
                self.client.script_load(_lua.source(name))
            return None
        pipe = self._pipeline()
        try:
            nodes = self._queue(pipe, op)
            return self._result(op, pipe.execute(raise_on_error=False), nodes)
        finally:
            pipe.reset()

    def release(self, owned: bool) -> None:
        """Close the client if the store made it."""
        if owned:
            self.client.close()


class AsyncPyFamily(_PyFamily):
    """An asyncio valkey-py or redis-py client."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self._ready = not self.cluster
        self._ready_lock: asyncio.Lock | None = None  # made on the loop that uses it

    async def prepare(self) -> None:
        """Initialise a cluster client alone, before other commands run.

        A cluster client learns the topology on its first command; redis-py 8.1 can fail
        ("'NoneType' object has no attribute 'writelines'") when many commands race through that
        first step; and the slot map is needed to route the waits.
        """
        if self._ready:
            return
        if self._ready_lock is None:
            self._ready_lock = asyncio.Lock()
        async with self._ready_lock:
            if not self._ready:
                await self.client.initialize()
                self._ready = True

    async def do(self, op: Wire) -> Any:
        if isinstance(op, Send):
            return await self.client.execute_command(*op.command.args, **self._options(op.command))
        if isinstance(op, Load):
            for name in op.names:
                await self.client.script_load(_lua.source(name))
            return None
        if op.wait is not None:
            await self.prepare()
        pipe = self._pipeline()
        try:
            nodes = self._queue(pipe, op)
            return self._result(op, await pipe.execute(raise_on_error=False), nodes)
        finally:
            reset = pipe.reset()
            if inspect.isawaitable(reset):
                await reset

    async def release(self, owned: bool) -> None:
        """Close the client if the store made it; else drop its connections only (they belong to
        the loop that made them) and leave it open: it reconnects on its next command."""
        if owned:
            closing = getattr(self.client, "aclose", None) or self.client.close
            await closing()
        elif self.cluster:
            # The startup nodes are separate objects with connections of their own.
            manager = self.client.nodes_manager
            nodes = {id(n): n for attr in ("nodes_cache", "startup_nodes") for n in getattr(manager, attr, {}).values()}
            await asyncio.gather(*(node.disconnect() for node in nodes.values()))
        else:
            await self.client.connection_pool.disconnect()


def _glide_library(client: Any) -> str | None:
    """``"glide_sync"`` or ``"glide"`` for a Valkey GLIDE client, else ``None``."""
    module = type(client).__module__
    if module.startswith("glide_sync"):
        return "glide_sync"
    if module.startswith("glide.") or module == "glide":
        return "glide"
    return None


def family_for(client: Any, *, is_async: bool | None = None) -> Any:
    """The engine family for ``client``: Valkey GLIDE (``glide``/``glide_sync``) or valkey-py/redis-py.

    ``is_async`` asks for one kind (the repository's faces); ``None`` takes the client's own.

    Raises:
        TypeError: If ``client`` is not a supported client (of the wanted kind).
    """
    glide = _glide_library(client)
    if glide is not None:
        from ._glide import AsyncGlideFamily, GlideFamily  # only when a GLIDE client is in use

        wanted = (glide == "glide") if is_async is None else is_async
        return AsyncGlideFamily(client) if wanted else GlideFamily(client)
    if _library(client) is not None:
        client_async = is_async_client(client)
        if is_async is None or is_async == client_async:
            return AsyncPyFamily(client) if client_async else PyFamily(client)
    kind = {True: "an asyncio ", False: "a synchronous ", None: "a "}[is_async]
    names = {
        True: "valkey.asyncio.Valkey, redis.asyncio.Redis, valkey.asyncio.ValkeyCluster, redis.asyncio.RedisCluster",
        False: "valkey.Valkey, redis.Redis, valkey.cluster.ValkeyCluster, redis.cluster.RedisCluster",
        None: "valkey.Valkey, redis.Redis, ValkeyCluster, RedisCluster, or their asyncio versions",
    }[is_async]
    glide_names = {
        True: "glide.GlideClient, glide.GlideClusterClient",
        False: "glide_sync.GlideClient, glide_sync.GlideClusterClient",
        None: "glide_sync or glide GlideClient, GlideClusterClient",
    }[is_async]
    raise TypeError(
        f"client must be {kind}valkey-py or redis-py client ({names}) or Valkey GLIDE client "
        f"({glide_names}), not {type(client).__qualname__}"
    )


class ClientAdapter(Engine):
    """The engine on a synchronous valkey-py or redis-py client."""

    def __init__(self, client: Any, retry: RetryPolicy | None = None, errors: ErrorMap = SESSION_ERRORS) -> None:
        super().__init__(family_for(client, is_async=False), retry, errors=errors)


class AsyncClientAdapter(AsyncEngine):
    """The engine on an asyncio valkey-py or redis-py client."""

    def __init__(self, client: Any, retry: RetryPolicy | None = None, errors: ErrorMap = SESSION_ERRORS) -> None:
        super().__init__(family_for(client, is_async=True), retry, errors=errors)


@overload
def adapter_for(
    client: Any, retry: RetryPolicy | None, *, is_async: Literal[False], durability: Durability = NO_WAIT
) -> Engine: ...
@overload
def adapter_for(
    client: Any, retry: RetryPolicy | None, *, is_async: Literal[True], durability: Durability = NO_WAIT
) -> AsyncEngine: ...
def adapter_for(
    client: Any, retry: RetryPolicy | None, *, is_async: bool, durability: Durability = NO_WAIT
) -> Engine | AsyncEngine:
    """The repository's engine for ``client``.

    Raises:
        TypeError: If ``client`` is not a supported client of the wanted kind (sync or asyncio).
    """
    family = family_for(client, is_async=is_async)
    if is_async:
        return AsyncEngine(family, retry, durability)
    return Engine(family, retry, durability)
