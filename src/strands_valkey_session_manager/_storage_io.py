"""I/O for :class:`~strands_valkey_session_manager.storage.ValkeyStorage`: plans and the executors that run them.

Each storage operation is written once, as a *plan*: a generator that yields steps (:class:`Call`,
:class:`Script`, :class:`Batch`) and receives each step's reply. Plans do no I/O, so one plan
serves every client. An executor runs plans on one client:

* :class:`SyncExecutor` for ``valkey.Valkey``, ``redis.Redis``, ``ValkeyCluster``, ``RedisCluster``:
  the whole plan runs in a worker thread (``asyncio.to_thread``), so the caller's loop never blocks.
* :class:`AsyncExecutor` for the asyncio clients of both libraries (standalone and cluster): the
  plan runs on one private event loop in a daemon thread (shared by every asyncio client in the
  process), and the caller awaits the result from whatever loop it is on. An asyncio client is
  bound to the loop its connections were made on; the SDK calls storage from many short-lived
  loops (``strands._async.run_async``), so the client is only ever used on the private loop.

Values are read with the clients' ``NEVER_DECODE`` option, so ``decode_responses=True`` clients
return the exact stored bytes too; everything else the plans read is UTF-8 text.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import threading
from collections.abc import Callable, Coroutine, Generator, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, TypeVar

try:
    from strands.types.exceptions import StorageError
except ImportError:  # strands-agents before the unified storage API (1.0 has none): keep the package importable

    class StorageError(Exception):  # type: ignore[no-redef]
        """Stand-in for ``strands.types.exceptions.StorageError`` on SDKs that predate it."""


from . import _lua
from ._client import NO_WAIT, Durability, moved_key, queue_waits, unavailable_errors
from .exceptions import ReplicationTimeoutError, ValkeySessionError

__all__ = [
    "SCRIPT_NAMES",
    "AsyncExecutor",
    "Batch",
    "Call",
    "Executor",
    "InvalidStorageArgumentError",
    "Plan",
    "Script",
    "Step",
    "StorageError",
    "StorageReplicationTimeoutError",
    "StorageUnavailableError",
    "StorageValueTooLargeError",
    "SyncExecutor",
    "ValkeyStorageError",
    "executor_for",
    "is_async_client",
    "is_cluster_client",
    "is_cross_slot",
]

_T = TypeVar("_T")

# Option understood by both libraries' parse_response (sync, asyncio, cluster): read the reply raw.
_NEVER_DECODE: Final = "NEVER_DECODE"
_SUPPORTED_FAMILIES: Final = ("valkey", "redis")
SCRIPT_NAMES: Final = _lua.STORAGE_SCRIPTS
_CLOSE_TIMEOUT: Final = 10.0


class ValkeyStorageError(StorageError):
    """Root of the errors :class:`ValkeyStorage` raises; a ``StorageError``, as the protocol promises."""


class StorageUnavailableError(ValkeyStorageError):
    """The server could not be reached, timed out, or refused for now (READONLY, OOM, LOADING, cluster down).

    A write that raises this left no index entry without its value; it may be retried.
    """


class StorageReplicationTimeoutError(StorageUnavailableError, ReplicationTimeoutError):
    """A write or delete was applied by the primary but fewer replicas than ``wait_for_replicas``
    acknowledged it within ``wait_timeout`` (or, with ``wait_aof``, its AOF was not fsynced).

    The write is **not acknowledged**: a failover now may lose it. Both a ``StorageError`` and a
    :class:`~strands_valkey_session_manager.exceptions.ReplicationTimeoutError`.
    """


class StorageValueTooLargeError(ValkeyStorageError):
    """A value exceeds ``max_value_bytes``; nothing was sent to the server."""


class InvalidStorageArgumentError(ValkeyStorageError, TypeError):
    """A key that is not a ``str`` or data that is not bytes-like; also a ``TypeError``."""


# -- plans ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """One command. ``raw`` reads the reply without decoding (exact bytes)."""

    args: tuple[Any, ...]
    raw: bool = False


@dataclass(frozen=True, slots=True)
class Script:
    """One of the ``lua/storage_*.lua`` scripts."""

    name: str
    keys: tuple[str, ...]
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Batch:
    """Commands sent together in one non-transactional pipeline; the reply is the list of replies."""

    calls: tuple[Call, ...]


Step = Call | Script | Batch
Plan = Generator[Step, Any, _T]


_WRITE_COMMANDS: Final = frozenset({"ZADD", "ZREM", "SET", "DEL"})


def _acknowledged_calls(step: Step) -> tuple[Call | Script, ...]:
    """The calls of ``step`` if it writes (the durability wait follows it), else ``()``."""
    calls = step.calls if isinstance(step, Batch) else (step,)
    writes = any(isinstance(c, Script) or str(c.args[0]).upper() in _WRITE_COMMANDS for c in calls)
    return calls if writes else ()


def _routing_key(call: Call | Script) -> str:
    return call.keys[0] if isinstance(call, Script) else str(call.args[1])


def is_cross_slot(error: BaseException) -> bool:
    """True when the server refused a multi-key step because its keys are in different slots."""
    return isinstance(error, ValkeyStorageError) and str(error.__cause__).startswith("CROSSSLOT")


# -- client inspection ---------------------------------------------------------------------------


def _family(client: Any) -> str:
    family = type(client).__module__.split(".", 1)[0]
    if family not in _SUPPORTED_FAMILIES or not hasattr(client, "execute_command"):
        raise TypeError(
            "client must be a valkey-py or redis-py client (valkey.Valkey, redis.Redis, ValkeyCluster, "
            f"RedisCluster, or their asyncio versions), not {type(client).__qualname__}"
        )
    return family


def is_async_client(client: Any) -> bool:
    """True for the asyncio clients of valkey-py and redis-py."""
    return inspect.iscoroutinefunction(type(client).execute_command)


def is_cluster_client(client: Any) -> bool:
    """True for ``ValkeyCluster``/``RedisCluster``, sync or asyncio."""
    return hasattr(client, "nodes_manager")


class _ErrorMap:
    """Maps one client library's exceptions to storage errors naming the operation and key."""

    def __init__(self, family: str) -> None:
        exceptions = importlib.import_module(f"{family}.exceptions")
        self.unavailable = unavailable_errors(exceptions)
        self.no_permission: type[BaseException] = exceptions.NoPermissionError
        self.response: type[BaseException] = exceptions.ResponseError
        base_name = "ValkeyError" if family == "valkey" else "RedisError"
        self.base: type[BaseException] = getattr(exceptions, base_name)

    @contextmanager
    def mapped(self, operation: str, key: str) -> Iterator[None]:
        try:
            yield
        except self.no_permission as e:
            raise ValkeyStorageError(f"Failed to {operation} '{key}': not permitted by the server's ACL ({e})") from e
        except self.unavailable as e:
            raise StorageUnavailableError(f"Failed to {operation} '{key}': server unavailable ({e})") from e
        except self.response as e:
            raise ValkeyStorageError(f"Failed to {operation} '{key}': server refused ({e})") from e
        except self.base as e:
            raise ValkeyStorageError(f"Failed to {operation} '{key}': {type(e).__name__}: {e}") from e


# -- executors -----------------------------------------------------------------------------------


class Executor:
    """Runs plans on one client. Subclasses define how a step is executed."""

    def __init__(self, client: Any, *, owned: bool) -> None:
        self.client = client
        self.owned = owned
        self.cluster = is_cluster_client(client)
        # Whether the groups index must be written apart from a key's own slot: always on a cluster
        # client; also on a standalone client once the server answered CROSSSLOT (a cluster-mode
        # server holding every slot, such as a one-shard managed cluster).
        self.split_groups = self.cluster
        self.errors = _ErrorMap(_family(client))
        self._scripts = {name: client.register_script(_lua.source(name)) for name in SCRIPT_NAMES}
        self._no_script: type[BaseException] = importlib.import_module(f"{_family(client)}.exceptions").NoScriptError
        self.closed = False
        self.durability: Durability = NO_WAIT

    async def run(self, plan: Plan[_T], operation: str, key: str) -> _T:
        """Run ``plan``, mapping client errors to storage errors that name ``operation`` and ``key``."""
        raise NotImplementedError

    def check_open(self, operation: str, key: str) -> None:
        """Refuse use after :meth:`close`.

        Raises:
            ValkeyStorageError: If the storage was closed.
        """
        if self.closed:
            raise ValkeyStorageError(f"Failed to {operation} '{key}': the storage is closed")

    def close(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    @staticmethod
    def _options(call: Call) -> dict[str, Any]:
        return {_NEVER_DECODE: []} if call.raw else {}

    def _pipeline(self) -> Any:
        # A cluster pipeline is never a transaction; a standalone one must be asked not to be.
        return self.client.pipeline() if self.cluster else self.client.pipeline(transaction=False)

    def _queue_acknowledged(self, pipe: Any, calls: Sequence[Call | Script], *, whole: bool) -> list[Any]:
        """Queue ``calls`` (scripts whole with EVAL when ``whole``) and the durability wait."""
        for call in calls:
            if isinstance(call, Call):
                pipe.execute_command(*call.args, **self._options(call))
            elif whole:
                pipe.execute_command("EVAL", _lua.source(call.name), len(call.keys), *call.keys, *call.args)
            else:
                sha = self._scripts[call.name].sha
                pipe.execute_command("EVALSHA", sha, len(call.keys), *call.keys, *call.args)
        return queue_waits(pipe, self.client, [_routing_key(c) for c in calls], self.durability)

    def _judge(self, calls: Sequence[Call | Script], results: Sequence[Any], nodes: list[Any], key: str) -> list[Any]:
        """The calls' replies (NOSCRIPT left in place for the caller); raises their first other
        error, then :class:`StorageReplicationTimeoutError` if the wait fell short."""
        replies, waits = list(results[: len(calls)]), results[len(calls) :]
        for reply in replies:
            if isinstance(reply, Exception) and not isinstance(reply, self._no_script):
                raise reply
        where = f"key=<{key}>"
        try:
            self.durability.check(waits, where)
        except ReplicationTimeoutError as e:
            raise StorageReplicationTimeoutError(str(e)) from e
        except ValkeySessionError as e:
            raise ValkeyStorageError(str(e)) from e
        moved = moved_key(self.client, [_routing_key(c) for c in calls], nodes)
        if moved is not None:
            raise StorageReplicationTimeoutError(
                f"{where} | the slot of {moved} moved to another node during the write; "
                "the write was applied but its replication is not acknowledged"
            )
        return replies

    def _unloaded(self, calls: Sequence[Call | Script], replies: Sequence[Any]) -> list[int]:
        return [i for i, (c, r) in enumerate(zip(calls, replies, strict=True)) if isinstance(r, self._no_script)]

    @staticmethod
    def _shape(step: Step, replies: list[Any]) -> Any:
        return replies if isinstance(step, Batch) else replies[0]


class SyncExecutor(Executor):
    """A synchronous client: each plan runs whole in a worker thread."""

    async def run(self, plan: Plan[_T], operation: str, key: str) -> _T:
        self.check_open(operation, key)
        return await asyncio.to_thread(self.run_blocking, plan, operation, key)

    def run_blocking(self, plan: Plan[_T], operation: str, key: str) -> _T:
        """Run a plan in the calling thread."""
        with self.errors.mapped(operation, key):
            try:
                step = next(plan)
                while True:
                    step = plan.send(self._execute(step, key))
            except StopIteration as done:
                result: _T = done.value
                return result

    def _execute(self, step: Step, key: str = "") -> Any:
        acknowledged = _acknowledged_calls(step) if self.durability.active else ()
        if acknowledged:
            return self._shape(step, self._execute_acknowledged(acknowledged, key))
        if isinstance(step, Call):
            return self.client.execute_command(*step.args, **self._options(step))
        if isinstance(step, Script):
            return self._scripts[step.name](keys=list(step.keys), args=list(step.args))
        if len(step.calls) == 1:
            return [self._execute(step.calls[0])]
        pipe = self._pipeline()
        try:
            for call in step.calls:
                pipe.execute_command(*call.args, **self._options(call))
            return pipe.execute()
        finally:
            pipe.reset()

    def _execute_acknowledged(self, calls: Sequence[Call | Script], key: str) -> list[Any]:
        """A write step and its durability wait, in one pipeline (see ``_client.Durability``)."""
        replies = self._acknowledged_round(calls, key, whole=False)
        unloaded = self._unloaded(calls, replies)
        if unloaded:
            again = [calls[i] for i in unloaded]
            for name in {c.name for c in again if isinstance(c, Script)}:
                self.client.script_load(_lua.source(name))
            redo = self._acknowledged_round(again, key, whole=False)
            if self._unloaded(again, redo):
                redo = self._acknowledged_round(again, key, whole=True)
            for i, reply in zip(unloaded, redo, strict=True):
                replies[i] = reply
        return replies

    def _acknowledged_round(self, calls: Sequence[Call | Script], key: str, *, whole: bool) -> list[Any]:
        pipe = self._pipeline()
        try:
            nodes = self._queue_acknowledged(pipe, calls, whole=whole)
            return self._judge(calls, pipe.execute(raise_on_error=False), nodes, key)
        finally:
            pipe.reset()

    def close(self) -> None:
        if self.owned and not self.closed:
            self.client.close()
        self.closed = True

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)


class _IOLoop:
    """One event loop in a daemon thread, shared by every asyncio client of the process.

    Started on first use and again in a forked child (the parent's thread does not survive a fork).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            alive = self._thread is not None and self._thread.is_alive() and self._pid == os.getpid()
            if self._loop is None or not alive:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=self._serve, args=(loop,), name="strands-valkey-storage-io", daemon=True
                )
                thread.start()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, _T]) -> Future[_T]:
        return asyncio.run_coroutine_threadsafe(coro, self.get())

    def in_loop_thread(self) -> bool:
        return self._thread is threading.current_thread()


_io_loop = _IOLoop()


class AsyncExecutor(Executor):
    """An asyncio client: every command runs on the process's private I/O loop.

    The client must be dedicated to storage use: its connections belong to that loop, so using the
    same client object from another event loop at the same time breaks both.
    """

    def __init__(self, client: Any, *, owned: bool) -> None:
        super().__init__(client, owned=owned)
        self._ready = not self.cluster
        self._ready_lock: asyncio.Lock | None = None  # made on the I/O loop, where it is used

    async def run(self, plan: Plan[_T], operation: str, key: str) -> _T:
        self.check_open(operation, key)
        return await asyncio.wrap_future(_io_loop.submit(self._drive(plan, operation, key)))

    async def _initialize(self) -> None:
        # A cluster client learns the topology on its first command. redis-py 8.1 can fail
        # ("'NoneType' object has no attribute 'writelines'") when many commands race through that
        # first step, as the SDK's delete_session does with its concurrent deletes; so the first
        # plan initialises the client alone.
        if self._ready_lock is None:
            self._ready_lock = asyncio.Lock()
        async with self._ready_lock:
            if not self._ready:
                await self.client.initialize()
                self._ready = True

    async def _drive(self, plan: Plan[_T], operation: str, key: str) -> _T:
        with self.errors.mapped(operation, key):
            if not self._ready:
                await self._initialize()
            try:
                step = next(plan)
                while True:
                    step = plan.send(await self._execute(step, key))
            except StopIteration as done:
                result: _T = done.value
                return result

    async def _execute(self, step: Step, key: str = "") -> Any:
        acknowledged = _acknowledged_calls(step) if self.durability.active else ()
        if acknowledged:
            return self._shape(step, await self._execute_acknowledged(acknowledged, key))
        if isinstance(step, Call):
            return await self.client.execute_command(*step.args, **self._options(step))
        if isinstance(step, Script):
            return await self._scripts[step.name](keys=list(step.keys), args=list(step.args))
        if len(step.calls) == 1:
            return [await self._execute(step.calls[0])]
        pipe = self._pipeline()
        try:
            for call in step.calls:
                # Queues the command and returns the pipeline, which is awaitable: do not await it.
                pipe.execute_command(*call.args, **self._options(call))
            return await pipe.execute()
        finally:
            await _maybe_await(pipe.reset)

    async def _execute_acknowledged(self, calls: Sequence[Call | Script], key: str) -> list[Any]:
        """As :meth:`SyncExecutor._execute_acknowledged`."""
        replies = await self._acknowledged_round(calls, key, whole=False)
        unloaded = self._unloaded(calls, replies)
        if unloaded:
            again = [calls[i] for i in unloaded]
            for name in {c.name for c in again if isinstance(c, Script)}:
                await self.client.script_load(_lua.source(name))
            redo = await self._acknowledged_round(again, key, whole=False)
            if self._unloaded(again, redo):
                redo = await self._acknowledged_round(again, key, whole=True)
            for i, reply in zip(unloaded, redo, strict=True):
                replies[i] = reply
        return replies

    async def _acknowledged_round(self, calls: Sequence[Call | Script], key: str, *, whole: bool) -> list[Any]:
        pipe = self._pipeline()
        try:
            nodes = self._queue_acknowledged(pipe, calls, whole=whole)
            return self._judge(calls, await pipe.execute(raise_on_error=False), nodes, key)
        finally:
            await _maybe_await(pipe.reset)

    async def _release(self) -> None:
        if self.owned:
            await _maybe_await(getattr(self.client, "aclose", None) or self.client.close)
        elif self.cluster:
            # Drop the node connections (they belong to the I/O loop) but leave the client open:
            # it is the caller's, and reconnects on its next command.
            # The startup nodes are separate objects with connections of their own.
            manager = self.client.nodes_manager
            nodes = {id(n): n for attr in ("nodes_cache", "startup_nodes") for n in getattr(manager, attr, {}).values()}
            await asyncio.gather(*(node.disconnect() for node in nodes.values()))
        else:
            await self.client.connection_pool.disconnect()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if _io_loop.in_loop_thread():
            raise RuntimeError("close() called on the storage I/O loop")
        _io_loop.submit(self._release()).result(timeout=_CLOSE_TIMEOUT)

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        await asyncio.wrap_future(_io_loop.submit(self._release()))


async def _maybe_await(method: Callable[[], Any]) -> None:
    result = method()
    if inspect.isawaitable(result):
        await result


def executor_for(client: Any, *, owned: bool) -> Executor:
    """The executor matching ``client``.

    Raises:
        TypeError: If ``client`` is not a valkey-py or redis-py client.
    """
    _family(client)
    return AsyncExecutor(client, owned=owned) if is_async_client(client) else SyncExecutor(client, owned=owned)
