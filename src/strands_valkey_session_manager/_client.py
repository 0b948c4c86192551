"""Adapter over the client libraries: the only module (with ``_glide.py``) that knows which client it talks to.

valkey-py and redis-py (standalone and cluster clients, ``decode_responses`` either way) share one
command API, so one adapter serves all of them; what differs is the exception module, which is
looked up from the client's own package. Valkey GLIDE clients get the adapters of ``_glide.py``,
chosen by :func:`adapter_for`. Every command the repository sends goes through here.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import math
import random
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, cast, overload

from . import _lua
from ._telemetry import Operation
from .exceptions import (
    AccessDeniedError,
    CorruptRecordError,
    ReplicationTimeoutError,
    SessionStoreUnavailableError,
    ValkeySessionError,
)

_SUPPORTED = ("valkey", "redis")
logger = logging.getLogger(__name__)
_F = TypeVar("_F", bound=Callable[..., Any])
_T = TypeVar("_T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often an operation is repeated after the server was unreachable, and how long to wait.

    Every operation of the repository is safe to repeat: writes carry what makes a repeat a no-op
    (the same record, the same creation nonce), so a reply lost in a disconnect is not a duplicate.
    """

    retries: int = 2
    backoff: float = 0.05
    max_backoff: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            raise ValueError(f"retries=<{self.retries!r}> | must be a non-negative int")
        if not isinstance(self.backoff, (int, float)) or self.backoff < 0:
            raise ValueError(f"retry_backoff=<{self.backoff!r}> | must be a non-negative number of seconds")

    def delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter, in seconds."""
        return random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))


#: Default for ``wait_timeout``: how long a write waits for its replicas, in seconds.
DEFAULT_WAIT_TIMEOUT = 1.0

# Reads: calls that never change data (``touch_on_read`` extends lifetimes, which reads may lose).
_READ_SCRIPTS = frozenset({"list_messages", "read_field", "session_info"})
_READ_COMMANDS = frozenset({"hget", "hgetall", "hmget", "dump", "zrevrangebylex", "zrangebylex", "get", "exists"})
# Operations whose writes are housekeeping (stale or expired catalog entries, found again if lost).
_UNACKNOWLEDGED_OPERATIONS = frozenset({"list_sessions", "sweep_catalog"})


@dataclass(frozen=True)
class Durability:
    """When a write counts as done: ``wait_for_replicas``, ``wait_timeout``, ``wait_aof``.

    With ``replicas > 0`` (or ``aof``) every write step is followed, in the same pipeline and on
    the same connection and node, by ``WAIT replicas timeout_ms`` (or ``WAITAOF 1 replicas
    timeout_ms``: the primary's own AOF fsynced too). Fewer acknowledgements than asked raise
    :class:`ReplicationTimeoutError`: the primary applied the write, the replicas may not hold it.

    That error is not retried. Repeating the write is safe for the data (no duplicate), but a
    repeat that recognises its own earlier write writes nothing, so its ``WAIT`` (which counts
    replicas that hold the connection's last write) would prove nothing about the first attempt.
    """

    replicas: int = 0
    timeout: float = DEFAULT_WAIT_TIMEOUT
    aof: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.replicas, int) or isinstance(self.replicas, bool) or self.replicas < 0:
            raise ValueError(f"wait_for_replicas=<{self.replicas!r}> | must be a non-negative int")
        timeout = self.timeout
        if (
            not isinstance(timeout, (int, float))
            or isinstance(timeout, bool)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ValueError(f"wait_timeout=<{timeout!r}> | must be a positive number of seconds")
        if not isinstance(self.aof, bool):
            raise ValueError(f"wait_aof=<{self.aof!r}> | must be a bool")

    @property
    def active(self) -> bool:
        """True when writes wait for anything."""
        return self.replicas > 0 or self.aof

    @property
    def timeout_ms(self) -> int:
        """The timeout as the server takes it (whole milliseconds, at least 1: 0 would block forever)."""
        return max(1, round(self.timeout * 1000))

    def command(self) -> tuple[str | int, ...]:
        """The ``WAIT`` or ``WAITAOF`` command that follows a write."""
        if self.aof:
            return ("WAITAOF", 1, self.replicas, self.timeout_ms)
        return ("WAIT", self.replicas, self.timeout_ms)

    def check(self, replies: Sequence[Any], where: str) -> None:
        """Raise :meth:`verdict`'s error, if any."""
        error = self.verdict(replies, where)
        if error is not None:
            raise error

    def verdict(self, replies: Sequence[Any], where: str) -> ValkeySessionError | None:
        """Judge the replies of the ``WAIT``/``WAITAOF`` commands sent after a write.

        Returns (does not raise):
            ReplicationTimeoutError: If fewer replicas (or no local fsync) acknowledged in time.
            ValkeySessionError: If the server has no ``WAITAOF`` (Redis before 7.2) or cannot
                fsync (``appendonly no``): the write was applied, not acknowledged.
        """
        name = "WAITAOF" if self.aof else "WAIT"
        for reply in replies:
            if isinstance(reply, BaseException):
                text = str(reply)
                error: ValkeySessionError
                if "unknown command" in text.lower() or "appendonly" in text.lower():
                    error = ValkeySessionError(
                        f"{where} | wait_aof=True needs WAITAOF (Valkey 8+, Redis 7.2+) on a server with "
                        f"appendonly yes; the server refused it ({text}). The write was applied but is not "
                        "acknowledged."
                    )
                else:
                    error = ReplicationTimeoutError(
                        f"{where} | {name} failed ({text}); the write was applied by the primary but is not "
                        "acknowledged"
                    )
                error.__cause__ = reply
                return error
            if self.aof:
                local, replicas = (int(n) for n in reply)
            else:
                local, replicas = 1, int(reply)
            if local < 1 or replicas < self.replicas:
                detail = f"{replicas} of {self.replicas} replicas" + ("" if local else ", local AOF not fsynced")
                return ReplicationTimeoutError(
                    f"{where} | {detail} acknowledged within {self.timeout_ms} ms; the write was applied by the "
                    "primary but is not acknowledged: a failover now may lose it"
                )
        return None


class Unacknowledged(Exception):
    """Raised by an adapter's ``execute_acknowledged`` when the write ran but its wait failed:
    carries the write's reply, for the plan to learn what it wrote (versions), and the error the
    caller gets."""

    def __init__(self, error: ValkeySessionError, reply: Any) -> None:
        super().__init__(str(error))
        self.error = error
        self.reply = reply


NO_WAIT = Durability()


def acknowledged(step: Step) -> bool:
    """True when ``step`` writes, so that a :class:`Durability` waits for it."""
    if step.operation in _UNACKNOWLEDGED_OPERATIONS:
        return False
    calls = (step.call,) if isinstance(step.call, (ScriptCall, CommandCall)) else step.call
    for call in calls:
        if isinstance(call, ScriptCall):
            if call.name not in _READ_SCRIPTS:
                return True
        elif call.method not in _READ_COMMANDS:
            return True
    return False


def as_calls(call: Call | Sequence[Call]) -> tuple[bool, list[Call]]:
    """Whether ``call`` is a single call, and the calls as a list."""
    if isinstance(call, (ScriptCall, CommandCall)):
        return True, [call]
    return False, list(call)


def written_key(call: Call) -> str:
    """The key that routes ``call`` on a cluster (every call names keys of one slot)."""
    if isinstance(call, ScriptCall):
        return str(call.keys[0])
    return str(call.args[0])


def repeat_aware(method: _F) -> _F:
    """Mark a method whose repeats (after a lost reply) must know they are repeats: the retry
    wrappers then pass ``_repeated=True`` from the second attempt on."""
    method._repeat_aware = True  # type: ignore[attr-defined]
    return method


def _for_attempt(method: Callable[..., Any], kwargs: dict[str, Any], attempt: int) -> dict[str, Any]:
    if attempt and getattr(method, "_repeat_aware", False):
        return {**kwargs, "_repeated": True}
    return kwargs


def retrying(method: _F) -> _F:
    """Repeat a repository method on :class:`SessionStoreUnavailableError`, per ``self._db.retry``.

    Not on :class:`ReplicationTimeoutError` (see :class:`Durability`).
    """

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        policy: RetryPolicy = self._db.retry
        attempt = 0
        while True:
            try:
                return method(self, *args, **_for_attempt(method, kwargs, attempt))
            except ReplicationTimeoutError:
                raise  # see Durability: a repeat could not prove the first attempt replicated
            except SessionStoreUnavailableError as e:
                if attempt >= policy.retries:
                    raise
                pause = policy.delay(attempt)
                logger.debug(
                    "operation=<%s>, attempt=<%d>, pause=<%.3f> | retrying: %s", method.__name__, attempt, pause, e
                )
                time.sleep(pause)
                attempt += 1

    return cast(_F, wrapper)


def aretrying(method: _F) -> _F:
    """:func:`retrying` for coroutine methods."""

    @functools.wraps(method)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        policy: RetryPolicy = self._db.retry
        attempt = 0
        while True:
            try:
                return await method(self, *args, **_for_attempt(method, kwargs, attempt))
            except ReplicationTimeoutError:
                raise  # see Durability
            except SessionStoreUnavailableError:
                if attempt >= policy.retries:
                    raise
                await asyncio.sleep(policy.delay(attempt))
                attempt += 1

    return cast(_F, wrapper)


# Errors that mean "the server did not do it (or we cannot know)": worth a retry later. Shared
# by the repository and ValkeyStorage so both treat a failing server alike.
UNAVAILABLE_ERRORS = (
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


def unavailable_errors(exceptions: Any) -> tuple[type[BaseException], ...]:
    """The classes of ``UNAVAILABLE_ERRORS`` that a client library's exceptions module defines."""
    return tuple(getattr(exceptions, name) for name in UNAVAILABLE_ERRORS if hasattr(exceptions, name))


def queue_waits(pipe: Any, client: Any, keys: Sequence[str], durability: Durability) -> list[Any]:
    """Queue ``durability``'s wait on ``pipe`` for each node that holds one of ``keys``; returns
    those nodes (``[None]`` for a standalone client).

    A keyless ``WAIT`` in a valkey-py/redis-py cluster pipeline would go to every primary (their
    default routing for it), so it is given each written key's node: the pipeline then sends it on
    the same connection, right after that node's share of the pipeline.
    """
    command = durability.command()
    if not hasattr(client, "get_nodes"):
        pipe.execute_command(*command)
        return [None]
    nodes = {}
    for key in keys:
        node = client.get_node_from_key(key)
        nodes[node.name] = node
    for node in nodes.values():
        pipe.execute_command(*command, target_nodes=node)
    return list(nodes.values())


def moved_key(client: Any, keys: Sequence[str], nodes: Sequence[Any]) -> str | None:
    """A key whose slot now belongs to another node than those in ``nodes`` (a redirected write), if any."""
    if not hasattr(client, "get_nodes"):
        return None
    asked = {node.name for node in nodes}
    return next((key for key in keys if client.get_node_from_key(key).name not in asked), None)


class _Family:
    """What the sync and async adapters share: which library, its error classes, the mapping."""

    def __init__(self, client: Any, *, is_async: bool) -> None:
        module = type(client).__module__
        family = module.split(".", 1)[0]
        if family not in _SUPPORTED or (".asyncio" in module) != is_async or not hasattr(client, "register_script"):
            kind = "an asyncio" if is_async else "a synchronous"
            names = (
                "valkey.asyncio.Valkey, redis.asyncio.Redis, valkey.asyncio.ValkeyCluster, redis.asyncio.RedisCluster"
                if is_async
                else "valkey.Valkey, redis.Redis, valkey.cluster.ValkeyCluster, redis.cluster.RedisCluster"
            )
            glide = "glide" if is_async else "glide_sync"
            raise TypeError(
                f"client must be {kind} valkey-py or redis-py client ({names}) or Valkey GLIDE client "
                f"({glide}.GlideClient, {glide}.GlideClusterClient), not {type(client).__qualname__}"
            )
        exceptions = importlib.import_module(f"{family}.exceptions")
        self.client = client
        self.family = family
        self._unavailable = unavailable_errors(exceptions)
        self._response_error: type[BaseException] = exceptions.ResponseError
        self._no_script: type[BaseException] = exceptions.NoScriptError
        # A wrong password or user is refused access, not a server to retry later.
        self._no_permission: tuple[type[BaseException], ...] = (
            exceptions.NoPermissionError,
            exceptions.AuthenticationError,
        )
        self._scripts = {name: client.register_script(_lua.source(name)) for name in _lua.SCRIPT_NAMES}
        self._standalone = not hasattr(client, "get_nodes")
        self.durability = NO_WAIT

    @contextmanager
    def errors(self, operation: str, session_id: str, key: str) -> Iterator[None]:
        """Translate the client's exceptions into this package's, naming operation, session and key."""
        try:
            yield
        except self._no_permission as e:
            raise AccessDeniedError(
                f"operation=<{operation}>, session_id=<{session_id}>, key=<{key}> | not permitted by the ACL: {e}"
            ) from e
        except self._unavailable as e:
            raise SessionStoreUnavailableError(
                f"operation=<{operation}>, session_id=<{session_id}>, key=<{key}> | server unavailable: {e}"
            ) from e
        except self._response_error as e:
            # WRONGTYPE and our scripts' SVSM-* replies: the data under our key is not ours.
            raise CorruptRecordError(
                f"operation=<{operation}>, session_id=<{session_id}>, key=<{key}> | server refused: {e}"
            ) from e
        except UnicodeDecodeError as e:
            # A client with decode_responses=True met bytes that are not UTF-8: not our record.
            raise CorruptRecordError(
                f"operation=<{operation}>, session_id=<{session_id}>, key=<{key}> | not a valid record: {e}"
            ) from e

    def _pipeline(self) -> Any:
        return self.client.pipeline(transaction=False) if self._standalone else self.client.pipeline()

    def _queue(self, pipe: Any, calls: Sequence[Call]) -> None:
        for call in calls:
            if isinstance(call, ScriptCall):
                script = self._scripts[call.name]
                # execute_command: cluster pipelines refuse the evalsha() helper but route EVALSHA by key.
                pipe.execute_command("EVALSHA", script.sha, len(call.keys), *call.keys, *call.args)
            else:
                getattr(pipe, call.method)(*call.args)

    def _queue_acknowledged(self, pipe: Any, calls: Sequence[Call], *, whole: bool = False) -> list[Any]:
        """Queue ``calls`` (scripts whole with EVAL when ``whole``), then the durability wait on
        each node they write to (:func:`queue_waits`); returns those nodes."""
        if whole:
            for call in calls:
                if isinstance(call, ScriptCall):
                    pipe.execute_command("EVAL", _lua.source(call.name), len(call.keys), *call.keys, *call.args)
                else:
                    getattr(pipe, call.method)(*call.args)
        else:
            self._queue(pipe, calls)
        return queue_waits(pipe, self.client, [written_key(c) for c in calls], self.durability)

    def _judge(
        self, calls: Sequence[Call], results: list[Any], nodes: list[Any], where: str
    ) -> tuple[list[Any], ValkeySessionError | None]:
        """Split a round's replies into the calls' (returned) and the waits' (judged).

        Raises the first error reply of the calls other than NOSCRIPT (their calls are run again by
        the caller), then :class:`ReplicationTimeoutError` if the waits fell short, or if a call's
        slot now belongs to another node than the one that was asked (a redirected write).
        """
        replies, waits = results[: len(calls)], results[len(calls) :]
        for reply in replies:
            if isinstance(reply, Exception) and not isinstance(reply, self._no_script):
                raise reply
        error = self.durability.verdict(waits, where)
        moved = moved_key(self.client, [written_key(c) for c in calls], nodes)
        if error is None and moved is not None:
            error = ReplicationTimeoutError(
                f"{where} | the slot of {moved} moved to another node during the write; "
                "the write was applied but its replication is not acknowledged"
            )
        return replies, error

    def _unloaded(self, calls: Sequence[Call], results: Sequence[Any]) -> list[int]:
        """Positions of script calls the server did not know yet (to run again, loading them)."""
        return [
            i
            for i, (call, result) in enumerate(zip(calls, results, strict=True))
            if isinstance(result, self._no_script) and isinstance(call, ScriptCall)
        ]

    @staticmethod
    def _raise_first_error(results: Sequence[Any]) -> list[Any]:
        for result in results:
            if isinstance(result, Exception):
                raise result
        return list(results)


class ClientAdapter(_Family):
    """Sends commands and scripts on a synchronous valkey-py or redis-py client."""

    def __init__(self, client: Any, retry: RetryPolicy | None = None) -> None:
        super().__init__(client, is_async=False)
        self.retry = retry or RetryPolicy()

    def hget(self, key: str, field: str) -> Any:
        return self.client.hget(key, field)

    def script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one of the package's Lua scripts (EVALSHA, loading it on NOSCRIPT).

        If the server still lacks the script after the load (a cluster client whose view of which
        node is primary went stale loads it elsewhere), the script is sent whole with EVAL, which is
        routed by its keys like any command.
        """
        script = self._scripts[name]
        try:
            # EVALSHA sent directly: valkey-py's Script.__call__ costs microseconds on the hot path.
            return self.client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except self._no_script:
            pass
        try:
            return script(keys=keys, args=args)  # loads the script, then EVALSHA again
        except self._no_script:
            return self.client.eval(_lua.source(name), len(keys), *keys, *args)

    def batch(self, calls: Sequence[Call]) -> list[Any]:
        """Send several commands and scripts in one pipeline (not a transaction).

        Keys may lie in different slots: a cluster client sends each node its share. A script the
        server does not know yet is loaded and its call repeated (only on a server's first use).
        Error replies come back as exception objects in the result list, for the caller to judge.
        """
        if not calls:
            return []
        pipe = self._pipeline()
        self._queue(pipe, calls)
        results: list[Any] = pipe.execute(raise_on_error=False)
        for i in self._unloaded(calls, results):
            call = calls[i]
            assert isinstance(call, ScriptCall)
            results[i] = self.script(call.name, call.keys, call.args)
        return results

    def execute(self, call: Call | Sequence[Call]) -> Any:
        """Run one call, or a batch of calls (raising the first error reply)."""
        if isinstance(call, ScriptCall):
            return self.script(call.name, call.keys, call.args)
        if isinstance(call, CommandCall):
            return getattr(self.client, call.method)(*call.args)
        return self._raise_first_error(self.batch(call))

    def execute_acknowledged(self, call: Call | Sequence[Call], where: str) -> Any:
        """As :meth:`execute`, with the durability wait in the same pipeline (one round trip).

        A script the server did not know yet is loaded and run again with its own wait (only on a
        server's first use), sent whole with EVAL if a node still lacks it.

        Raises:
            Unacknowledged: If the write ran but is not acknowledged (see :class:`Durability`).
        """
        single, calls = as_calls(call)
        replies, error = self._acknowledged_round(calls, where)
        unloaded = self._unloaded(calls, replies)
        if unloaded:
            again = [calls[i] for i in unloaded]
            for name in {c.name for c in again if isinstance(c, ScriptCall)}:
                self.client.script_load(_lua.source(name))
            redo, error_again = self._acknowledged_round(again, where)
            if self._unloaded(again, redo):
                redo, error_again = self._acknowledged_round(again, where, whole=True)
            for i, reply in zip(unloaded, redo, strict=True):
                replies[i] = reply
            error = error or error_again
        result = replies[0] if single else replies
        if error is not None:
            raise Unacknowledged(error, result)
        return result

    def _acknowledged_round(
        self, calls: Sequence[Call], where: str, *, whole: bool = False
    ) -> tuple[list[Any], ValkeySessionError | None]:
        pipe = self._pipeline()
        nodes = self._queue_acknowledged(pipe, calls, whole=whole)
        return self._judge(calls, pipe.execute(raise_on_error=False), nodes, where)


class AsyncClientAdapter(_Family):
    """The same, on an asyncio client of valkey-py or redis-py."""

    def __init__(self, client: Any, retry: RetryPolicy | None = None) -> None:
        super().__init__(client, is_async=True)
        self.retry = retry or RetryPolicy()

    async def script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """As :meth:`ClientAdapter.script`."""
        try:
            return await self._scripts[name](keys=keys, args=args)
        except self._no_script:
            return await self.client.eval(_lua.source(name), len(keys), *keys, *args)

    async def batch(self, calls: Sequence[Call]) -> list[Any]:
        """As :meth:`ClientAdapter.batch`."""
        if not calls:
            return []
        pipe = self._pipeline()
        self._queue(pipe, calls)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        for i in self._unloaded(calls, results):
            call = calls[i]
            assert isinstance(call, ScriptCall)
            results[i] = await self.script(call.name, call.keys, call.args)
        return results

    async def execute(self, call: Call | Sequence[Call]) -> Any:
        """As :meth:`ClientAdapter.execute`."""
        if isinstance(call, ScriptCall):
            return await self.script(call.name, call.keys, call.args)
        if isinstance(call, CommandCall):
            return await getattr(self.client, call.method)(*call.args)
        return self._raise_first_error(await self.batch(call))

    async def execute_acknowledged(self, call: Call | Sequence[Call], where: str) -> Any:
        """As :meth:`ClientAdapter.execute_acknowledged`."""
        if not self._standalone and not self.client.nodes_manager.slots_cache:
            await self.client.initialize()  # the slot map is needed to route the waits
        single, calls = as_calls(call)
        replies, error = await self._acknowledged_round(calls, where)
        unloaded = self._unloaded(calls, replies)
        if unloaded:
            again = [calls[i] for i in unloaded]
            for name in {c.name for c in again if isinstance(c, ScriptCall)}:
                await self.client.script_load(_lua.source(name))
            redo, error_again = await self._acknowledged_round(again, where)
            if self._unloaded(again, redo):
                redo, error_again = await self._acknowledged_round(again, where, whole=True)
            for i, reply in zip(unloaded, redo, strict=True):
                replies[i] = reply
            error = error or error_again
        result = replies[0] if single else replies
        if error is not None:
            raise Unacknowledged(error, result)
        return result

    async def _acknowledged_round(
        self, calls: Sequence[Call], where: str, *, whole: bool = False
    ) -> tuple[list[Any], ValkeySessionError | None]:
        pipe = self._pipeline()
        nodes = self._queue_acknowledged(pipe, calls, whole=whole)
        return self._judge(calls, await pipe.execute(raise_on_error=False), nodes, where)


@dataclass(frozen=True)
class ScriptCall:
    """One of the package's scripts, for :meth:`ClientAdapter.batch`."""

    name: str
    keys: Sequence[str]
    args: Sequence[Any] = ()


@dataclass(frozen=True)
class CommandCall:
    """A client method and its arguments, for :meth:`ClientAdapter.batch`."""

    method: str
    args: Sequence[Any] = ()


Call = ScriptCall | CommandCall


@dataclass(frozen=True)
class Step:
    """One round trip of a plan: what to send, and what to name if it fails."""

    operation: str
    session_id: str
    key: str
    call: Call | Sequence[Call]


class SyncAdapter(Protocol):
    """What :func:`run_plan` needs of an adapter (``ClientAdapter``, ``_glide.GlideAdapter``)."""

    client: Any
    retry: RetryPolicy
    durability: Durability

    def errors(self, operation: str, session_id: str, key: str) -> AbstractContextManager[None]: ...

    def execute(self, call: Call | Sequence[Call]) -> Any: ...

    def execute_acknowledged(self, call: Call | Sequence[Call], where: str) -> Any: ...


class AsyncAdapter(Protocol):
    """What :func:`arun_plan` needs of an adapter (``AsyncClientAdapter``, ``_glide.AsyncGlideAdapter``)."""

    client: Any
    retry: RetryPolicy
    durability: Durability

    def errors(self, operation: str, session_id: str, key: str) -> AbstractContextManager[None]: ...

    async def execute(self, call: Call | Sequence[Call]) -> Any: ...

    async def execute_acknowledged(self, call: Call | Sequence[Call], where: str) -> Any: ...


@overload
def adapter_for(
    client: Any, retry: RetryPolicy | None, *, is_async: Literal[False], durability: Durability = NO_WAIT
) -> SyncAdapter: ...
@overload
def adapter_for(
    client: Any, retry: RetryPolicy | None, *, is_async: Literal[True], durability: Durability = NO_WAIT
) -> AsyncAdapter: ...
def adapter_for(
    client: Any, retry: RetryPolicy | None, *, is_async: bool, durability: Durability = NO_WAIT
) -> SyncAdapter | AsyncAdapter:
    """The adapter for ``client``: Valkey GLIDE (``glide``/``glide_sync``) or valkey-py/redis-py.

    Raises:
        TypeError: If ``client`` is not a supported client of the wanted kind (sync or asyncio).
    """
    adapter: SyncAdapter | AsyncAdapter
    if type(client).__module__.startswith("glide"):
        from ._glide import AsyncGlideAdapter, GlideAdapter  # only when a GLIDE client is in use

        adapter = AsyncGlideAdapter(client, retry) if is_async else GlideAdapter(client, retry)
    else:
        adapter = AsyncClientAdapter(client, retry) if is_async else ClientAdapter(client, retry)
    adapter.durability = durability
    return adapter


#: An operation as a generator: it yields the round trips it needs and receives their replies, so
#: the sync and the async face run the same code (``run_plan``/``arun_plan``).
Plan = Generator[Step, Any, _T]


def _where(step: Step) -> str:
    return f"operation=<{step.operation}>, session_id=<{step.session_id}>, key=<{step.key}>"


def _settle(plan: Plan[Any], reply: Any) -> None:
    """Give a plan the reply of a write that is applied but not acknowledged, so that it learns
    what it wrote (the agent version it made: the next write must not see its own write as another
    writer's), then drop it. An error the plan raises on the reply (a conflict: nothing was
    written) is the outcome, not the replication timeout."""
    try:
        plan.send(reply)
    except StopIteration:
        pass
    finally:
        plan.close()


def run_plan(db: SyncAdapter, plan: Plan[_T]) -> _T:
    """Drive a plan on a synchronous client."""
    measured = Operation()
    reply: Any = None
    try:
        while True:
            step = plan.send(reply)
            measured.step(step.operation, step.session_id, step.call)
            try:
                with db.errors(step.operation, step.session_id, step.key):
                    if db.durability.active and acknowledged(step):
                        reply = db.execute_acknowledged(step.call, _where(step))
                    else:
                        reply = db.execute(step.call)
            except Unacknowledged as e:
                measured.reply(e.reply)
                _settle(plan, e.reply)
                raise e.error from e.error.__cause__
            measured.reply(reply)
    except StopIteration as done:
        measured.finish(done.value)
        return cast(_T, done.value)
    except BaseException as e:
        measured.finish(error=e)
        raise


async def arun_plan(db: AsyncAdapter, plan: Plan[_T]) -> _T:
    """Drive a plan on an asyncio client."""
    measured = Operation()
    reply: Any = None
    try:
        while True:
            step = plan.send(reply)
            measured.step(step.operation, step.session_id, step.call)
            try:
                with db.errors(step.operation, step.session_id, step.key):
                    if db.durability.active and acknowledged(step):
                        reply = await db.execute_acknowledged(step.call, _where(step))
                    else:
                        reply = await db.execute(step.call)
            except Unacknowledged as e:
                measured.reply(e.reply)
                _settle(plan, e.reply)
                raise e.error from e.error.__cause__
            measured.reply(reply)
    except StopIteration as done:
        measured.finish(done.value)
        return cast(_T, done.value)
    except BaseException as e:
        measured.finish(error=e)
        raise
