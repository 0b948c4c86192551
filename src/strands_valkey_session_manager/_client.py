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
import random
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, cast, overload

from . import _lua
from ._telemetry import Operation
from .exceptions import AccessDeniedError, CorruptRecordError, SessionStoreUnavailableError

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
    """Repeat a repository method on :class:`SessionStoreUnavailableError`, per ``self._db.retry``."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        policy: RetryPolicy = self._db.retry
        attempt = 0
        while True:
            try:
                return method(self, *args, **_for_attempt(method, kwargs, attempt))
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

    def errors(self, operation: str, session_id: str, key: str) -> AbstractContextManager[None]: ...

    def execute(self, call: Call | Sequence[Call]) -> Any: ...


class AsyncAdapter(Protocol):
    """What :func:`arun_plan` needs of an adapter (``AsyncClientAdapter``, ``_glide.AsyncGlideAdapter``)."""

    client: Any
    retry: RetryPolicy

    def errors(self, operation: str, session_id: str, key: str) -> AbstractContextManager[None]: ...

    async def execute(self, call: Call | Sequence[Call]) -> Any: ...


@overload
def adapter_for(client: Any, retry: RetryPolicy | None, *, is_async: Literal[False]) -> SyncAdapter: ...
@overload
def adapter_for(client: Any, retry: RetryPolicy | None, *, is_async: Literal[True]) -> AsyncAdapter: ...
def adapter_for(client: Any, retry: RetryPolicy | None, *, is_async: bool) -> SyncAdapter | AsyncAdapter:
    """The adapter for ``client``: Valkey GLIDE (``glide``/``glide_sync``) or valkey-py/redis-py.

    Raises:
        TypeError: If ``client`` is not a supported client of the wanted kind (sync or asyncio).
    """
    if type(client).__module__.startswith("glide"):
        from ._glide import AsyncGlideAdapter, GlideAdapter  # only when a GLIDE client is in use

        return AsyncGlideAdapter(client, retry) if is_async else GlideAdapter(client, retry)
    return AsyncClientAdapter(client, retry) if is_async else ClientAdapter(client, retry)


#: An operation as a generator: it yields the round trips it needs and receives their replies, so
#: the sync and the async face run the same code (``run_plan``/``arun_plan``).
Plan = Generator[Step, Any, _T]


def run_plan(db: SyncAdapter, plan: Plan[_T]) -> _T:
    """Drive a plan on a synchronous client."""
    measured = Operation()
    reply: Any = None
    try:
        while True:
            step = plan.send(reply)
            measured.step(step.operation, step.session_id, step.call)
            with db.errors(step.operation, step.session_id, step.key):
                reply = db.execute(step.call)
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
            with db.errors(step.operation, step.session_id, step.key):
                reply = await db.execute(step.call)
            measured.reply(reply)
    except StopIteration as done:
        measured.finish(done.value)
        return cast(_T, done.value)
    except BaseException as e:
        measured.finish(error=e)
        raise
