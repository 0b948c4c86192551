"""``ValkeyStorage``: the SDK's unified ``strands.storage.Storage`` protocol on plain Valkey or Redis.

Use it wherever the SDK takes a ``Storage``, for example::

    from strands import Agent
    from strands.session import SnapshotSessionManager
    from strands_valkey_session_manager import ValkeyStorage

    storage = ValkeyStorage.from_url("valkey://localhost:6379")
    agent = Agent(session_manager=SnapshotSessionManager("s1", storage=storage))

Contract (the protocol's, checked by the SDK's own storage tests in ``tests/``): ``write``
overwrites, ``read`` returns ``None`` for a missing key, ``delete`` of a missing key is a no-op,
``list(prefix)`` returns full keys sorted ascending and ``""`` lists every key; every failure is a
``strands.types.exceptions.StorageError``. Keys are normalised exactly like the SDK's path-based
backends: runs of ``/`` collapse, leading and trailing ``/`` go, and empty keys, backslashes and
``..`` segments are refused.

Data model (details and the cluster slot rule in ``docs/storage.md``, "Data model and operations",
and in ``_storage_keys.py``): each value is a string key holding the exact bytes; each group (the
first two path segments of a key of three or more segments, else its first segment) has a sorted
set of its keys, updated in the same Lua script as the value; a sorted set of groups lets
``list`` find groups without SCAN or KEYS. A group is one hash tag, so all keys of one
``SnapshotSessionManager`` session (``session/<session_id>/...``) live in one slot.

Round trips (steady state): ``read`` 1 (``GET``); ``write`` and ``delete`` 1 script on a standalone
server, and a write on a cluster adds one ``ZADD`` to the groups index first; ``list`` of a prefix
with two or more ``/`` (such as ``session/<sid>/``) 1, otherwise 1 more to read the groups index,
with every group's range sent in one pipeline.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import functools
import hashlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Final

from . import _storage_keys
from . import search as _search
from ._client import family_for
from ._codec import text
from ._engine import (
    DEFAULT_WAIT_TIMEOUT,
    AsyncEngine,
    Command,
    Durability,
    Engine,
    ErrorMap,
    Failure,
    Plan,
    RetryPolicy,
    ScriptCall,
    Step,
    Where,
    acall_retrying,
    arun_plan,
    io_loop,
    run_plan,
)
from ._keys import validate_key_prefix
from ._telemetry import collecting
from .exceptions import (
    InvalidStorageArgumentError,
    StorageConflictError,
    StorageError,
    StorageReplicationTimeoutError,
    StorageUnavailableError,
    StorageValueTooLargeError,
    ValkeyStorageError,
)

try:  # The SDK's marker for "already a namespaced view": SDK constructs then do not prefix again.
    from strands.storage.storage import _NAMESPACED
except ImportError:  # strands-agents before the unified storage API: nothing reads the marker there
    _NAMESPACED = object()

if TYPE_CHECKING:
    from strands.storage.search.types import SearchStrategy
    from strands.storage.storage import StorageSearchResult

__all__ = [
    "DEFAULT_MAX_VALUE_BYTES",
    "DEFAULT_NAMESPACE",
    "InvalidStorageArgumentError",
    "KeyQuery",
    "StorageConflictError",
    "StorageError",
    "StorageReplicationTimeoutError",
    "StorageUnavailableError",
    "StorageValueTooLargeError",
    "ValkeyStorage",
    "ValkeyStorageError",
]

logger = logging.getLogger(__name__)

#: First component of every server key (``<namespace>:storage:...``).
DEFAULT_NAMESPACE: Final = "strands"
#: Default ceiling for one value. Far below the server's 512 MB limit; raise it with ``max_value_bytes``.
DEFAULT_MAX_VALUE_BYTES: Final = 32 * 1024 * 1024
# Group ranges sent per pipeline by list().
_LIST_BATCH: Final = 500
# Keys one storage_delete_many call deletes (delete_prefix sends every call in one pipeline).
_DELETE_BATCH: Final = 500
# Values at least this long are staged with SET and renamed into place by the write script, so
# the script never copies them (Lua would hold the whole value as a string).
STAGE_BYTES: Final = 64 * 1024
# A staged value nobody renamed (the writer died between its two commands) expires after this.
_STAGED_TTL_MS: Final = 60_000
# Search results that come with their values (read in one more round trip), as the SDK's keyword
# strategy returns them; FileMemoryStore reads 10 by default.
SEARCH_DATA_RESULTS: Final = 10
_CLOSE_TIMEOUT: Final = 10.0

_BYTES_LIKE: Final = (bytes, bytearray, memoryview)

# Steps are named "storage.<verb>" (telemetry spans "svsm.storage.<verb>"); messages say the verb.
_VERBS: Final = {
    "storage.write": "write",
    "storage.read": "read",
    "storage.delete": "delete",
    "storage.delete_prefix": "delete keys with prefix",
    "storage.list": "list",
    "storage.search": "search",
    "storage.index": "index",
}


@dataclass(frozen=True, slots=True)
class KeyQuery:
    """A richer :meth:`ValkeyStorage.list` query (the SDK's ``Storage`` lets ``list`` widen its query
    type beside ``str``): keys under ``prefix`` that sort after ``start_after``, at most ``limit``.

    A page of keys costs what its length costs, not what the prefix holds: ``list`` sends the
    bounds and the limit with each sorted-set range. To page, pass the last key of one page as
    ``start_after`` of the next.

    Attributes:
        prefix: Key prefix, as for ``list(prefix)`` (``""``: every key).
        start_after: Exclusive cursor: only keys greater than it (relative to the view, like keys).
        limit: At most this many keys (positive), or ``None`` for all.
    """

    prefix: str = ""
    start_after: str | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.prefix, str):
            raise InvalidStorageArgumentError(f"prefix must be a str, not {type(self.prefix).__name__}")
        if self.start_after is not None and not isinstance(self.start_after, str):
            raise InvalidStorageArgumentError(f"start_after must be a str, not {type(self.start_after).__name__}")
        limit = self.limit
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0):
            raise ValueError(f"limit=<{limit!r}> | must be a positive int or None")


class _CrossSlotError(ValkeyStorageError):
    """The server refused a multi-key step because its keys are in different slots (a standalone
    client on a cluster-mode server): nothing ran. Caught by :meth:`ValkeyStorage._run_indexed`."""


class _StorageErrors(ErrorMap):
    """The engine's failures as storage errors: ``Failed to <verb> '<key>': ...``."""

    classes: ClassVar[dict[Failure, type[Exception]]] = {
        Failure.UNAVAILABLE: StorageUnavailableError,
        Failure.CROSS_SLOT: _CrossSlotError,
    }
    default = ValkeyStorageError
    not_acknowledged_class = StorageReplicationTimeoutError
    wait_refused_class = ValkeyStorageError

    def describe(self, where: Where, detail: str) -> str:
        verb = _VERBS.get(where.operation, where.operation)
        if verb == "list":
            what = f"Failed to list keys with prefix '{where.key}'"
        elif verb == "delete keys with prefix":
            what = f"Failed to delete keys with prefix '{where.key}'"
        elif verb == "search":
            what = f"Failed to search for '{where.key}'"
        else:
            what = f"Failed to {verb} '{where.key}'"
        return f"{what}: {detail}"


_STORAGE_ERRORS: Final = _StorageErrors()


class _Connection:
    """The engine of one storage and what its views share: ownership, closed, the cluster plan.

    A synchronous client runs each plan on the caller's event loop, blocking it for the round trip
    as ``LocalFileStorage`` blocks it for file I/O (or, with ``run_in_thread``, whole in a worker
    thread: ``asyncio.to_thread``). An asyncio client runs every plan on the engine's private I/O
    loop (``_engine.io_loop``): it is bound to the loop its connections were made on, and the SDK
    calls storage from many short-lived loops. With ``caller_loop`` it runs on the caller's loop
    instead, which must then be one loop for the storage's whole life (:meth:`home_loop`).
    """

    def __init__(
        self, client: Any, retry: RetryPolicy, durability: Durability, run_in_thread: bool, caller_loop: bool = False
    ) -> None:
        family = family_for(client)
        self.asynchronous = hasattr(family, "prepare")
        if caller_loop and not self.asynchronous:
            raise ValueError(
                "caller_loop=True | applies to asyncio clients; a synchronous client runs on the caller's loop already"
            )
        self.caller_loop = caller_loop
        # caller_loop: the loop every call must come from (an asyncio GLIDE client's own; else the
        # first caller's). Held strongly, so no later loop can be mistaken for it.
        self.home: asyncio.AbstractEventLoop | None = getattr(client, "_loop", None) if caller_loop else None
        if self.asynchronous and not caller_loop and getattr(client, "_loop", io_loop.get()) is not io_loop.get():
            # An asyncio GLIDE client answers on the loop that created it (GLIDE keeps it as
            # ``_loop``); the storage drives its clients on its own loop.
            raise TypeError(
                "an asyncio Valkey GLIDE client must be created on the storage's I/O loop: use "
                "ValkeyStorage.from_glide(config), or pass a glide_sync client"
            )
        if self.asynchronous:
            self.engine: Engine | AsyncEngine = AsyncEngine(family, retry, durability, _STORAGE_ERRORS)
        else:
            self.engine = Engine(family, retry, durability, _STORAGE_ERRORS)
        self.family = family
        self.client = client
        self.cluster: bool = family.cluster
        self.owned = False
        self.closed = False
        # Whether the groups index must be written apart from a key's own slot: always on a cluster
        # client; also on a standalone client once the server answered CROSSSLOT (a cluster-mode
        # server holding every slot, such as a one-shard managed cluster).
        self.split_groups = self.cluster
        # A synchronous client's plans run on the caller's event loop (no thread hop) unless asked.
        self.inline = not self.asynchronous and not run_in_thread
        # The engine a one-round-trip call can be sent on directly (:meth:`call`): an inline
        # synchronous client's; None otherwise.
        self.direct: Engine | AsyncEngine | None = self.engine if self.inline or caller_loop else None

    def direct_for(self, write: bool) -> Engine | AsyncEngine | None:
        """The engine to send a one-round-trip ``read`` (``write``: a write or delete without a
        durability wait) on through :meth:`call`, or None when it must run as a plan: an asyncio
        client on the storage's own loop or a thread per call, a write waiting for replicas, or
        OpenTelemetry measuring (its spans are made by the plan runner)."""
        engine = self.direct
        if engine is None or (write and engine.durability.active) or collecting():
            return None
        return engine

    async def call(self, engine: Engine | AsyncEngine, call: Command | ScriptCall, operation: str, key: str) -> Any:
        """Send one call on ``engine`` (from :meth:`direct_for`) with what :meth:`run` gives a plan
        of one step: the storage's errors and the retry policy, without a plan, step or thread."""
        attempt = 0
        while True:
            if self.closed:
                raise ValkeyStorageError(_STORAGE_ERRORS.describe(Where(operation, "", key), "the storage is closed"))
            if isinstance(engine, AsyncEngine):
                self.home_loop(operation, key)
            try:
                if isinstance(engine, Engine):
                    return engine.execute(call)
                await engine.family.prepare()
                return await engine.execute(call)
            except Exception as error:
                mapped = engine.failed(error, operation, "", key)
                if mapped is None:
                    raise
                if not engine.retry.again(mapped, attempt):
                    raise mapped from error
                pause = engine.retry.delay(attempt)
                logger.debug(
                    "operation=<%s>, attempt=<%d>, pause=<%.3f> | retrying: %s", operation, attempt, pause, mapped
                )
                await asyncio.sleep(pause)
                attempt += 1

    async def run(self, plan: Callable[[], Plan[Any]], operation: str, key: str) -> Any:
        """Run a fresh ``plan()`` per attempt, repeated on unavailability per the retry policy."""
        if self.closed:
            raise ValkeyStorageError(_STORAGE_ERRORS.describe(Where(operation, "", key), "the storage is closed"))
        engine = self.engine

        if isinstance(engine, AsyncEngine) and self.caller_loop:

            async def attempt(_: int) -> Any:
                self.home_loop(operation, key)
                return await self._arun(engine, plan(), operation, key)

        elif isinstance(engine, AsyncEngine):

            async def attempt(_: int) -> Any:
                return await asyncio.wrap_future(io_loop.submit(self._arun(engine, plan(), operation, key)))

        elif self.inline:

            async def attempt(_: int) -> Any:
                return run_plan(engine, plan())

        else:

            async def attempt(_: int) -> Any:
                return await asyncio.to_thread(run_plan, engine, plan())

        return await acall_retrying(engine.retry, attempt, operation, logger)

    def home_loop(self, operation: str, key: str) -> None:
        """With ``caller_loop``: refuse a call from another loop than the storage's one (its
        client's connections belong to that loop); the first call's loop becomes it."""
        loop = asyncio.get_running_loop()
        if self.home is None:
            self.home = loop
        elif loop is not self.home:
            raise ValkeyStorageError(
                _STORAGE_ERRORS.describe(
                    Where(operation, "", key),
                    "caller_loop=True, and this call runs on another event loop than the storage's first call "
                    "(its client's connections belong to that loop); nothing was sent. The SDK's synchronous "
                    "paths (SnapshotSessionManager, hooks of a synchronous Agent) call storage on short-lived "
                    "loops: give them a storage with caller_loop=False",
                )
            )

    @staticmethod
    async def _arun(engine: AsyncEngine, plan: Plan[Any], operation: str, key: str) -> Any:
        with engine.errors(operation, "", key):
            await engine.family.prepare()
        return await arun_plan(engine, plan)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.caller_loop:
            return  # a client passed in, whose connections belong to the caller's loop: left as it is
        if not self.asynchronous:
            self.family.release(self.owned)
            return
        if io_loop.in_loop_thread():
            raise RuntimeError("close() called on the storage I/O loop")
        io_loop.submit(self.family.release(self.owned)).result(timeout=_CLOSE_TIMEOUT)

    async def aclose(self) -> None:
        if self.closed:
            return
        if self.caller_loop:
            self.close()
            return
        if not self.asynchronous:
            await asyncio.to_thread(self.close)
            return
        self.closed = True
        await asyncio.wrap_future(io_loop.submit(self.family.release(self.owned)))


class ValkeyStorage:
    """Stores raw bytes under ``/``-separated keys on Valkey or Redis (standalone or cluster).

    Args:
        client: A configured client of valkey-py or redis-py: ``valkey.Valkey``, ``redis.Redis``,
            ``valkey.cluster.ValkeyCluster``, ``redis.cluster.RedisCluster``, or the asyncio version of
            any of them, with ``decode_responses`` either way (values always come back as the exact
            bytes written); or a Valkey GLIDE client (``glide_sync.GlideClient``,
            ``glide_sync.GlideClusterClient``; an asyncio ``glide`` client made by
            :meth:`from_glide`). A synchronous client runs on the caller's event loop (see
            ``run_in_thread``). An asyncio
            client is driven from one private event loop thread, because the SDK calls storage from
            many short-lived event loops: give the storage a client of its own, not one your code
            also uses from another loop. The storage closes only clients it created
            (:meth:`from_url`, :meth:`from_glide`).
        namespace: First component of every server key (default ``"strands"``); no braces, glob
            characters or whitespace. Not to be confused with :meth:`namespace`, the SDK's
            key-prefix view.
        max_value_bytes: Largest value accepted; a larger one raises
            :class:`StorageValueTooLargeError` before any I/O.
        search_strategy: Optional SDK search strategy: ``write`` indexes through it and ``search``
            delegates to it. Without one (and without ``search_index``), ``search`` is the SDK's
            keyword scan, which reads every key.
        search_index: The native search index (``search.py``): ``True`` indexes every key, a
            sequence of key prefixes (``("memory/",)``) the keys under them. Each write and delete
            of such a key updates the index in its own script; ``search`` then reads the index
            (ranked like the SDK's keyword strategy) instead of scanning, and covers indexed keys
            only. Data written before is indexed by :meth:`build_search_index`. ``False``: no index.
        wait_for_replicas: ``write`` and ``delete`` are acknowledged only once this many replicas
            hold them (``WAIT`` in the same pipeline: no extra round trip); fewer within
            ``wait_timeout`` raise :class:`StorageReplicationTimeoutError` (also a
            ``ReplicationTimeoutError``): applied by the primary, not acknowledged. ``0``: no wait.
        wait_timeout: Seconds a write waits for its replicas (default 1.0; positive).
        wait_aof: Wait with ``WAITAOF 1 <wait_for_replicas>`` instead (the primary's AOF fsynced
            too; Valkey 8+, Redis 7.2+, ``appendonly yes``).
        retries: How often an operation that met an unavailable server
            (:class:`StorageUnavailableError`) is repeated (default 2; every operation is safe to
            repeat). Never a :class:`StorageReplicationTimeoutError`.
        retry_backoff: First pause between attempts, in seconds (exponential, with jitter).
        run_in_thread: With a synchronous client, run each call in a worker thread
            (``asyncio.to_thread``) so the caller's event loop never waits for the server. Off by
            default: a call then runs on the caller's loop, blocking it for one round trip (tens of
            microseconds on a nearby server; up to the client's ``socket_timeout`` when the server
            does not answer), which saves the thread hop (about 100 µs). No effect on asyncio clients.
        caller_loop: With an asyncio client (valkey-py, redis-py, or a GLIDE client made on that
            loop), run each call on the caller's event loop instead of the storage's private one:
            no thread hop per call (two thread crossings). Every call must then come from one loop,
            the loop of the first call (a GLIDE client's own loop); a call from another loop raises
            :class:`ValkeyStorageError` and sends nothing. For an application that uses the storage
            from one long-lived loop (``FileMemoryStore`` and ``MemoryManager`` in an asyncio
            service); not for the SDK's synchronous paths (``SnapshotSessionManager``, plugins of a
            synchronous ``Agent``), which call storage on a new loop each time. ``close()`` leaves
            the client and its connections alone. A synchronous client is a ``ValueError``.

    Raises:
        TypeError: If ``client`` is not a supported client.
        ValueError: If ``namespace``, ``max_value_bytes``, a wait or a retry option is invalid.
    """

    def __init__(
        self,
        client: Any,
        namespace: str = DEFAULT_NAMESPACE,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        *,
        search_strategy: SearchStrategy[ValkeyStorage] | None = None,
        search_index: bool | Sequence[str] = False,
        wait_for_replicas: int = 0,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        wait_aof: bool = False,
        retries: int = 2,
        retry_backoff: float = 0.05,
        run_in_thread: bool = False,
        caller_loop: bool = False,
    ) -> None:
        if not isinstance(max_value_bytes, int) or isinstance(max_value_bytes, bool) or max_value_bytes <= 0:
            raise ValueError(f"max_value_bytes=<{max_value_bytes!r}> | must be a positive int")
        durability = Durability(wait_for_replicas, wait_timeout, wait_aof)
        retry = RetryPolicy(retries, retry_backoff)
        self._io = _Connection(client, retry, durability, run_in_thread, caller_loop)
        self._layout = _storage_keys.StorageLayout(validate_key_prefix(namespace))
        self._max_value_bytes = max_value_bytes
        self._search_strategy = search_strategy
        self._indexed = _index_scopes(search_index)
        # Key prefix of a view made by namespace(): "" or a normalised prefix ending in "/".
        self._prefix = ""
        # Conditional writes of one key name (a view made by _conditional), else None.
        self._guard: _Guard | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        cluster: bool = False,
        namespace: str = DEFAULT_NAMESPACE,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        search_strategy: SearchStrategy[ValkeyStorage] | None = None,
        search_index: bool | Sequence[str] = False,
        wait_for_replicas: int = 0,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        wait_aof: bool = False,
        retries: int = 2,
        retry_backoff: float = 0.05,
        run_in_thread: bool = False,
        **client_kwargs: Any,
    ) -> ValkeyStorage:
        """Build a storage on a new synchronous valkey-py client that :meth:`close` will close.

        Args:
            url: ``valkey://``, ``valkeys://`` (TLS), ``redis://``, ``rediss://`` or ``unix://`` URL.
            cluster: Connect with ``valkey.cluster.ValkeyCluster`` instead of ``valkey.Valkey``.
            namespace: See the class.
            max_value_bytes: See the class.
            search_strategy: See the class.
            search_index: See the class.
            wait_for_replicas: See the class.
            wait_timeout: See the class.
            wait_aof: See the class.
            retries: See the class.
            retry_backoff: See the class.
            run_in_thread: See the class.
            **client_kwargs: Passed to the client's ``from_url`` (timeouts, TLS, retries, ...).

        Raises:
            StorageUnavailableError: If a cluster client cannot reach any node (it connects at once).
            TypeError: If a keyword is not an option of the storage nor of the client.
            ValueError: If an argument is invalid, or the URL cannot be parsed (a ``/``, ``?``, ``#`` or
                ``@`` in the password must be percent-encoded). Errors show the URL with its password as
                ``***``.
        """
        import valkey
        from valkey.cluster import ValkeyCluster

        from ._redact import check_client_options, client_from_url

        check_client_options(f"{cls.__name__}.from_url", client_kwargs, cluster=cluster)
        # Errors name the URL without its password, and hold it nowhere (see _redact.py).
        factory: Any = ValkeyCluster.from_url if cluster else valkey.Valkey.from_url
        try:
            client: Any = client_from_url(factory, url, unavailable=StorageUnavailableError, **client_kwargs)
        finally:
            del url, client_kwargs  # tracebacks keep this frame: no password among its locals
        try:
            storage = cls(
                client,
                namespace=namespace,
                max_value_bytes=max_value_bytes,
                search_strategy=search_strategy,
                search_index=search_index,
                wait_for_replicas=wait_for_replicas,
                wait_timeout=wait_timeout,
                wait_aof=wait_aof,
                retries=retries,
                retry_backoff=retry_backoff,
                run_in_thread=run_in_thread,
            )
        except BaseException:
            client.close()
            raise
        storage._io.owned = True
        return storage

    @classmethod
    def from_glide(cls, config: Any, **options: Any) -> ValkeyStorage:
        """Build a storage on a new asyncio Valkey GLIDE client that :meth:`close` will close.

        The client (``glide.GlideClusterClient`` for a ``GlideClusterClientConfiguration``, else
        ``glide.GlideClient``) is created on the storage's I/O loop, the only loop an asyncio GLIDE
        client can then be used from. A ``glide_sync`` client needs no such care: pass it to the
        constructor.

        Args:
            config: A GLIDE client configuration (``glide.GlideClientConfiguration`` or
                ``glide.GlideClusterClientConfiguration``).
            **options: The constructor's keyword arguments (``namespace``, ``wait_for_replicas``, ...).

        Raises:
            StorageUnavailableError: If the client cannot connect.
        """
        import glide
        from glide_shared.exceptions import GlideError

        client_type: Any = (
            glide.GlideClusterClient if isinstance(config, glide.GlideClusterClientConfiguration) else glide.GlideClient
        )
        try:
            client = io_loop.submit(client_type.create(config)).result()
        except GlideError as e:
            raise StorageUnavailableError(f"Failed to connect with the GLIDE configuration: {e}") from e
        try:
            storage = cls(client, **options)
        except BaseException:
            io_loop.submit(client.close()).result(timeout=_CLOSE_TIMEOUT)
            raise
        storage._io.owned = True
        return storage

    # -- the Storage protocol -------------------------------------------------------------------

    async def write(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, overwriting any existing value.

        Atomic: the value and its index entry are written by one script (on a cluster, the key's
        group is first added to the groups index, which only ever makes ``list`` look at a group
        that may be empty). Nothing is written when an error is raised before the script ran.

        Raises:
            StorageError: If the key is invalid.
            InvalidStorageArgumentError: If ``key`` is not a ``str`` or ``data`` not bytes-like.
            StorageValueTooLargeError: If ``data`` is longer than ``max_value_bytes``.
            StorageConflictError: Only on a view made for a conditional ``snapshot_latest``
                (``ValkeySnapshotSessionManager(conditional_latest=True)``), see there.
            StorageUnavailableError: If the server cannot be reached.
            ValkeyStorageError: If the server refuses the write.
        """
        full_key = self._normalize_key(key)
        guard = self._guard
        if guard is not None and guard.covers(full_key):
            await self._store(key, full_key, data, guard.expected(full_key))
            return
        await self._store(key, full_key, data, None)

    async def compare_and_write(self, key: str, data: bytes, expected: bytes | None) -> None:
        """Store ``data`` under ``key`` only if the stored value is ``expected`` (``None``: no value).

        Compare and set on the value itself: the script compares the SHA1 of the stored value with
        that of ``expected`` and writes in the same atomic step, so of two writers that both read
        the same value, the second gets :class:`StorageConflictError` instead of overwriting the
        first. Repeating a write that already happened (its reply was lost, and the storage
        retried it) succeeds: a stored value equal to ``data`` counts as written, never as a
        conflict. Identical values are one state: a value changed and changed back compares equal.
        One round trip, like :meth:`write` (the script reads the stored value: O(its size) on the
        server).

        Raises:
            StorageConflictError: If the stored value is neither ``expected`` nor ``data``; nothing
                was written.
            StorageError: As :meth:`write`.
        """
        if expected is not None and not isinstance(expected, _BYTES_LIKE):
            raise InvalidStorageArgumentError(
                f"Failed to write '{key}': expected must be bytes-like or None, not {type(expected).__name__}"
            )
        full_key = self._normalize_key(key)
        await self._store(key, full_key, data, "" if expected is None else _digest(bytes(expected)))

    async def _store(self, key: str, full_key: str, data: object, expected: str | None) -> None:
        """Write ``data``; with ``expected`` (a SHA1 in hex, ``""`` for no value) conditionally."""
        value = _as_bytes(data, key)
        if len(value) > self._max_value_bytes:
            raise StorageValueTooLargeError(
                f"Failed to write '{key}': value of {len(value)} bytes exceeds "
                f"max_value_bytes={self._max_value_bytes}; nothing was written"
            )
        location = self._locate(full_key)
        terms = _search.index_terms(location.rest, value) if self._indexes(full_key) else ""
        condition = None if expected is None else (expected, _digest(value))
        # An unconditional write of a value small enough for the script is its one script call:
        # sent without a plan where the client allows (see _Connection.direct_for).
        direct = None
        if condition is None and len(value) < STAGE_BYTES:
            direct = ScriptCall(
                "storage_write",
                (location.value, location.index, location.docs, location.value, self._layout.groups),
                (location.rest, value, "v", location.group, location.postings, terms),
            )
        written = await self._run_indexed(
            lambda: self._write_plan(location, value, key, terms, condition), "storage.write", key, direct
        )
        if not written:
            raise StorageConflictError(
                f"Failed to write '{key}': the stored value is not the one this write expected "
                "(another writer changed it); nothing was written"
            )
        if condition is not None and self._guard is not None and self._guard.covers(full_key):
            self._guard.seen(full_key, condition[1])
        logger.debug("key=<%s>, bytes=<%d> | wrote value", key, len(value))
        if self._search_strategy is not None:
            try:
                # Keys reach the strategy relative to this view, as in the SDK's own backends.
                await self._search_strategy.index(self, full_key[len(self._prefix) :], value)
            except Exception as error:
                raise StorageError(f"Wrote '{key}' but indexing failed") from error

    async def read(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or ``None`` if there are none. One round trip (``GET``).

        Raises:
            StorageError: If the key is invalid or the read fails.
        """
        full_key = self._normalize_key(key)
        location = self._locate(full_key)
        engine = self._io.direct_for(write=False)
        if engine is not None:
            raw = await self._io.call(engine, Command(("GET", location.value), raw=True), "storage.read", key)
        else:
            raw = await self._io.run(lambda: self._read_plan(location, key), "storage.read", key)
        if raw is None or isinstance(raw, bytes):
            guard = self._guard
            if guard is not None and guard.covers(full_key):
                guard.seen(full_key, "" if raw is None else _digest(raw))
            return raw
        raise ValkeyStorageError(f"Failed to read '{key}': unexpected reply of type {type(raw).__name__}")

    async def delete(self, key: str) -> None:
        """Delete the value under ``key`` and its index entry, atomically; a no-op if there is none.

        Raises:
            StorageError: If the key is invalid or the delete fails.
        """
        location = self._locate(self._normalize_key(key))
        direct = ScriptCall(
            "storage_delete",
            (location.value, location.index, location.docs, self._layout.groups),
            (location.rest, location.postings, location.group),
        )
        await self._run_indexed(lambda: self._delete_plan(location, key), "storage.delete", key, direct)

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix`` (relative to this view); return how many values went.

        Bounded round trips whatever the number of keys: one to list them (the group indexes, in
        one pipeline; one more first to read the groups index when ``prefix`` has fewer than two
        ``/``), one pipeline of scripts that each delete up to 500 keys of one group with their
        index entries and search postings. So a ``SnapshotSessionManager`` session
        (``session/<sid>/``), with any number of snapshots, goes in 2 round trips on a standalone
        server (on a cluster: the same two steps, one request per node). Each script is atomic;
        the whole is not: a key written under the prefix after the listing is kept, as with
        ``list`` then ``delete``. An empty prefix deletes every key of the storage.

        Raises:
            StorageError: If the prefix is invalid or a step fails (what was deleted stays deleted;
                repeat to finish).
        """
        if not isinstance(prefix, str):
            raise InvalidStorageArgumentError(f"prefix must be a str, not {type(prefix).__name__}")
        full = self._prefix + _storage_keys.normalize_prefix(prefix)
        deleted: int = await self._run_indexed(
            lambda: self._delete_prefix_plan((full,), prefix), "storage.delete_prefix", prefix
        )
        logger.debug("prefix=<%s>, deleted=<%d> | deleted keys", prefix, deleted)
        return deleted

    async def list(self, query: str | KeyQuery = "") -> builtins.list[str]:
        """Keys starting with the prefix ``query``, sorted ascending; ``""`` lists every key.

        Reads indexes only, never SCAN or KEYS: one sorted-set range when the prefix has two or more
        ``/`` (for example one session's ``session/<sid>/``), else the groups index and then, in one
        pipeline, a range of each group that can match. A :class:`KeyQuery` adds a cursor and a
        limit, sent with each range, so a page reads no more than it returns (plus one key per group).

        Raises:
            StorageError: If the prefix is invalid or the listing fails.
        """
        if isinstance(query, KeyQuery):
            text_prefix, after, limit = query.prefix, query.start_after, query.limit
        elif isinstance(query, str):
            text_prefix, after, limit = query, None, None
        else:
            raise InvalidStorageArgumentError(f"prefix must be a str or KeyQuery, not {type(query).__name__}")
        prefix = self._prefix + _storage_keys.normalize_prefix(text_prefix)
        full_after = None if after is None else self._prefix + after
        keys = await self._io.run(
            lambda: self._list_plan(prefix, text_prefix, full_after, limit), "storage.list", text_prefix
        )
        cut = len(self._prefix)
        return [k[cut:] for k in keys]

    async def search(self, query: str) -> builtins.list[StorageSearchResult]:
        """Search stored content: the configured strategy; else, with ``search_index``, the native
        index (:meth:`search_index_query`); else the SDK's keyword scan (``list`` + ``read``)."""
        if self._search_strategy is not None:
            return await self._search_strategy.search(self, query)
        if self._indexed is not None:
            return await self.search_index_query(query)
        from strands.storage.search.keyword import KeywordSearchStrategy  # not in SDKs before the storage API

        return await KeywordSearchStrategy().search(self, query)

    # -- the search index -----------------------------------------------------------------------

    @property
    def search_indexed(self) -> bool:
        """True when the storage keeps the native search index (``search_index``)."""
        return self._indexed is not None

    async def search_index_query(self, query: str) -> builtins.list[StorageSearchResult]:
        """Ranked matches of ``query`` among the indexed keys under this view (see ``search.py``).

        Scores and order are the SDK keyword strategy's (distinct query terms in the key's name,
        relative to this view, or in the value; ties in ascending key order). The first
        ``SEARCH_DATA_RESULTS`` results carry their values. Round trips: one for the postings of
        every group the view reaches (one group for a view such as ``memory/<name>``; for a wider
        view, one more to read the groups index), one for the values.

        Raises:
            StorageError: If the search fails.
        """
        from strands.storage.storage import StorageSearchResult

        if not isinstance(query, str):
            raise InvalidStorageArgumentError(f"query must be a str, not {type(query).__name__}")
        terms = _search.query_terms(query)
        if not terms:
            return []
        found = await self._io.run(lambda: self._search_plan(terms, query), "storage.search", query)
        return [StorageSearchResult(key=key, score=points, data=data) for points, key, data in found]

    async def build_search_index(
        self,
        prefix: str = "",
        *,
        start_after: str | None = None,
        batch: int = 200,
        progress: Callable[[_search.IndexProgress], None] | None = None,
    ) -> _search.IndexProgress:
        """Post the values already stored under ``prefix`` (relative to this view) in the index.

        For data written before ``search_index`` was on. Resumable: keys are handled in ascending
        order, ``batch`` per two round trips (read, then post), and ``progress`` is called after
        each batch with the last key handled; pass it as ``start_after`` to go on from there.
        Safe beside live writers: a value is posted only if it is still the one read (a write or
        delete meanwhile has updated the index itself). Keys outside ``search_index`` are skipped.

        Raises:
            ValueError: If the storage has no ``search_index`` or ``batch`` is not positive.
            StorageError: If a read or a post fails (resume from the last reported key).
        """
        if self._indexed is None:
            raise ValueError("build_search_index needs a storage created with search_index=...")
        if not isinstance(batch, int) or isinstance(batch, bool) or batch <= 0:
            raise ValueError(f"batch=<{batch!r}> | must be a positive int")
        keys = [k for k in await self.list(prefix) if start_after is None or k > start_after]
        seen = indexed = 0
        last: str | None = start_after
        for start in range(0, len(keys), batch):
            chunk = [k for k in keys[start : start + batch] if self._indexes(self._prefix + k)]
            if chunk:
                located = [self._locate(self._prefix + k) for k in chunk]
                indexed += await self._io.run(
                    lambda located=located: self._index_plan(located, prefix),  # type: ignore[misc]
                    "storage.index",
                    prefix,
                )
            seen += min(batch, len(keys) - start)
            last = keys[min(start + batch, len(keys)) - 1]
            if progress is not None:
                progress(_search.IndexProgress(seen, indexed, last, done=start + batch >= len(keys)))
        final = _search.IndexProgress(seen, indexed, last, done=True)
        if not keys and progress is not None:
            progress(final)
        return final

    # -- views and lifetime ---------------------------------------------------------------------

    def namespace(self, prefix: str) -> ValkeyStorage:
        """A view whose keys are relative to ``prefix``; it shares this storage's client and strategy.

        Marked as namespaced for the SDK, so ``SnapshotSessionManager`` and other SDK constructs use
        it as given instead of prefixing again. Server keys are the same as for the full key (the
        slot rule applies to the full key).

        Raises:
            StorageError: If the prefix is invalid.
        """
        normalized = _storage_keys.normalize_prefix(prefix).rstrip("/")
        scoped = copy.copy(self)
        scoped._prefix = f"{self._prefix}{normalized}/" if normalized else self._prefix
        scoped._namespaced = _NAMESPACED  # type: ignore[attr-defined]
        return scoped

    def _conditional(self, name: str) -> ValkeyStorage:
        """A view (same keys, same client) whose writes of keys named ``name`` (their last segment)
        are conditional on the value the view last read or wrote there (no value, for a key it
        never saw): another writer's change in between raises :class:`StorageConflictError`.
        Used by ``ValkeySnapshotSessionManager(conditional_latest=True)`` for ``snapshot_latest``.
        Views made from it by :meth:`namespace` share what it saw."""
        guarded = copy.copy(self)
        guarded._guard = _Guard(name)
        return guarded

    @property
    def client(self) -> Any:
        """The client this storage sends commands on."""
        return self._io.client

    @property
    def cluster(self) -> bool:
        """True when the client is a cluster client."""
        return self._io.cluster

    @property
    def max_value_bytes(self) -> int:
        """Largest value :meth:`write` accepts."""
        return self._max_value_bytes

    def close(self) -> None:
        """Release the client: close it if :meth:`from_url` created it.

        For an asyncio client passed in, only its connections (which belong to the storage's I/O
        loop) are closed; the client stays usable. Views made by :meth:`namespace` share the client,
        so closing any of them closes it for all. Idempotent.
        """
        self._io.close()

    async def aclose(self) -> None:
        """Async form of :meth:`close`."""
        await self._io.aclose()

    def __enter__(self) -> ValkeyStorage:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> ValkeyStorage:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        view = f", prefix={self._prefix!r}" if self._prefix else ""
        return f"ValkeyStorage(namespace={self._layout.namespace!r}{view}, client={type(self.client).__name__})"

    # -- plans ----------------------------------------------------------------------------------

    def _normalize_key(self, key: str) -> str:
        """The full key (view prefix included) of a caller's key."""
        if not isinstance(key, str):
            raise InvalidStorageArgumentError(f"key must be a str, not {type(key).__name__}")
        return self._prefix + _normalized(key)

    def _locate(self, full_key: str) -> _storage_keys.Location:
        return self._layout.locate(full_key)

    async def _run_indexed(
        self, plan: Callable[[], Plan[Any]], operation: str, key: str, direct: ScriptCall | None = None
    ) -> Any:
        """Run a write or delete plan; on CROSSSLOT, switch to the cluster plan once and retry.

        ``direct`` is the plan's one script call on a standalone server: sent as it is when the
        client allows (:meth:`_Connection.direct_for`), its reply returned instead of the plan's
        result (the same truth value).

        A standalone client can be talking to a cluster-mode server that holds every slot. The
        server refuses the standalone script (its keys span two slots) before running it, so
        nothing was written and the retry is safe.
        """
        io = self._io
        try:
            if direct is not None and not io.split_groups:
                engine = io.direct_for(write=True)
                if engine is not None:
                    return await io.call(engine, direct, operation, key)
            return await io.run(plan, operation, key)
        except _CrossSlotError:
            if self._io.split_groups:
                raise
            logger.info("key=<%s> | server is in cluster mode: writing the groups index apart from now on", key)
            self._io.split_groups = True
            return await self._io.run(plan, operation, key)

    def _indexes(self, full_key: str) -> bool:
        scopes = self._indexed
        if scopes is None:
            return False
        return any(not scope or full_key == scope or full_key.startswith(scope + "/") for scope in scopes)

    def _write_plan(
        self,
        loc: _storage_keys.Location,
        value: bytes,
        key: str,
        terms: str,
        condition: tuple[str, str] | None = None,
    ) -> Plan[bool]:
        """The write; with ``condition`` (expected SHA1, new SHA1) a conditional one. True: written."""
        op = "storage.write"
        staged = len(value) >= STAGE_BYTES
        holder = self._layout.staged(loc.group, uuid.uuid4().hex) if staged else loc.value
        keys: tuple[str, ...] = (loc.value, loc.index, loc.docs, holder)
        args: tuple[Any, ...] = (loc.rest, b"" if staged else value, "s" if staged else "v")
        if self._io.split_groups:
            # The groups index lives in another slot: list the group first, so a failure between
            # the two steps leaves at most a group with no keys, never a key nobody can list.
            yield Step(op, "", key, Command(("ZADD", self._layout.groups, 0, loc.group)))
            args = (*args, "", loc.postings, terms)
        else:
            keys = (*keys, self._layout.groups)
            args = (*args, loc.group, loc.postings, terms)
        if condition is not None:
            args = (*args, *condition)
        script = ScriptCall("storage_write", keys, args)
        if staged:
            # One round trip: the value is staged (expiring) beside the key, then the script renames
            # it into place with the index entries; the value never passes through Lua.
            replies = yield Step(op, "", key, [Command(("SET", holder, value, "PX", _STAGED_TTL_MS)), script])
            return int(replies[1]) == 1
        reply = yield Step(op, "", key, script)
        return int(reply) == 1

    @staticmethod
    def _read_plan(loc: _storage_keys.Location, key: str) -> Plan[Any]:
        raw = yield Step("storage.read", "", key, Command(("GET", loc.value), raw=True))
        return raw

    def _delete_plan(self, loc: _storage_keys.Location, key: str) -> Plan[None]:
        keys: tuple[str, ...] = (loc.value, loc.index, loc.docs)
        if self._io.split_groups:
            call = ScriptCall("storage_delete", keys, (loc.rest, loc.postings))
        else:
            call = ScriptCall("storage_delete", (*keys, self._layout.groups), (loc.rest, loc.postings, loc.group))
        yield Step("storage.delete", "", key, call)

    def _view_groups(self, prefix: str, operation: str, what: str) -> Plan[builtins.list[str]]:
        """Every group that can hold keys under ``prefix`` (a full key prefix)."""
        layout = self._layout
        groups = [r.group for r in layout.containing_groups(prefix)]
        bounds = layout.groups_range(prefix)
        if bounds is not None:
            listed = yield Step(operation, "", what, Command(("ZRANGEBYLEX", layout.groups, *bounds)))
            groups.extend(text(group) for group in listed)
        return builtins.list(dict.fromkeys(groups))

    def _search_plan(self, terms: set[str], query: str) -> Plan[builtins.list[tuple[int, str, bytes]]]:
        op = "storage.search"
        layout = self._layout
        view = self._prefix
        groups = yield from self._view_groups(view, op, query)
        ordered = sorted(terms)
        commands: builtins.list[Command] = []
        shapes: builtins.list[tuple[str, bool]] = []
        for group in groups:
            postings = layout.postings(group)
            for term in ordered:
                # Members posted for the value ((0, +inf)), then those posted for the key's name only.
                commands.append(Command(("ZRANGEBYSCORE", postings + term, "(0", "+inf")))
                commands.append(Command(("ZRANGEBYSCORE", postings + term, "-inf", "0")))
            # The part of the group's name inside the view is in every key's name: when it holds a
            # query term, every indexed key of the group is a candidate.
            whole = bool(terms & _search.tokenize(group[len(view) :])) if len(group) >= len(view) else False
            if whole:
                commands.append(Command(("HKEYS", layout.docs(group))))
            shapes.append((group, whole))
        hits: builtins.list[_search.GroupHits] = []
        replies = (yield Step(op, "", query, commands)) if commands else []
        at = 0
        for group, whole in shapes:
            content: dict[str, set[str]] = {}
            for term in ordered:
                for member in replies[at]:
                    content.setdefault(text(member), set()).add(term)
                for member in replies[at + 1]:
                    content.setdefault(text(member), set())
                at += 2
            if whole:
                for member in replies[at]:
                    content.setdefault(text(member), set())
                at += 1
            hits.append(_search.GroupHits(group, content))
        ranked = _search.rank(terms, hits, view, _storage_keys.join)
        top = ranked[:SEARCH_DATA_RESULTS]
        values: builtins.list[Any] = []
        if top:
            reads = [
                Command(("GET", layout.locate(_storage_keys.join(g, rest)).value), raw=True) for _, _, g, rest in top
            ]
            values = yield Step(op, "", query, reads)
        found: builtins.list[tuple[int, str, Any]] = []
        for i, (points, relative, _, _) in enumerate(ranked):
            if i < len(top):
                if values[i] is None:
                    continue  # deleted since the postings were read
                found.append((points, relative, values[i]))
            else:
                found.append((points, relative, None))
        return found

    def _index_plan(self, locations: builtins.list[_storage_keys.Location], prefix: str) -> Plan[int]:
        op = "storage.index"
        values = yield Step(op, "", prefix, [Command(("GET", loc.value), raw=True) for loc in locations])
        calls: builtins.list[ScriptCall] = []
        for loc, value in zip(locations, values, strict=True):
            if value is None:
                continue  # deleted since it was listed
            data = bytes(value)
            terms = _search.index_terms(loc.rest, data)
            calls.append(ScriptCall("storage_index", (loc.value, loc.docs), (loc.rest, data, loc.postings, terms)))
        if not calls:
            return 0
        replies = yield Step(op, "", prefix, calls)
        return sum(1 for reply in replies if int(reply) == 1)

    def _ranges(self, prefix: str, operation: str, what: str) -> Plan[builtins.list[_storage_keys.GroupRange]]:
        """Every group range that can hold keys under ``prefix`` (a full key prefix)."""
        layout = self._layout
        ranges = builtins.list(layout.containing_groups(prefix))
        bounds = layout.groups_range(prefix)
        if bounds is not None:
            groups = yield Step(operation, "", what, Command(("ZRANGEBYLEX", layout.groups, *bounds)))
            ranges.extend(layout.whole_group(text(group)) for group in groups)
        return ranges

    def _members(
        self,
        ranges: builtins.list[_storage_keys.GroupRange],
        operation: str,
        what: str,
        after: str | None = None,
        limit: int | None = None,
    ) -> Plan[builtins.list[tuple[str, str]]]:
        """(group, rest) of every key in ``ranges``: with ``after``/``limit``, at least the first
        ``limit`` keys after ``after`` (each range sends its cursor and ``limit + 1``: the group's
        own key may be skipped), and possibly more."""
        found: builtins.list[tuple[str, str]] = []
        tail: tuple[Any, ...] = () if limit is None else ("LIMIT", 0, limit + 1)
        for start in range(0, len(ranges), _LIST_BATCH):
            chunk = ranges[start : start + _LIST_BATCH]
            batch = [Command(("ZRANGEBYLEX", r.index, _after(r, after), r.high, *tail)) for r in chunk]
            replies = yield Step(operation, "", what, batch)
            for group_range, members in zip(chunk, replies, strict=True):
                for member in members:
                    rest = text(member)
                    if rest or not group_range.skip_group_key:
                        found.append((group_range.group, rest))
        return found

    def _list_plan(
        self, prefix: str, query: str, after: str | None = None, limit: int | None = None
    ) -> Plan[builtins.list[str]]:
        ranges = yield from self._ranges(prefix, "storage.list", query)
        members = yield from self._members(ranges, "storage.list", query, after, limit)
        keys = [_storage_keys.join(group, rest) for group, rest in members]
        if after is not None:
            keys = [k for k in keys if k > after]
        keys.sort()
        return keys if limit is None else keys[:limit]

    def _delete_prefix_plan(self, prefixes: Sequence[str], what: str) -> Plan[int]:
        """Delete every key under the full key ``prefixes``: list them, then one pipeline of scripts."""
        op = "storage.delete_prefix"
        layout = self._layout
        ranges: builtins.list[_storage_keys.GroupRange] = []
        for prefix in prefixes:
            ranges.extend((yield from self._ranges(prefix, op, what)))
        members = yield from self._members(ranges, op, what)
        by_group: dict[str, dict[str, None]] = {}
        for group, rest in members:
            by_group.setdefault(group, {})[rest] = None  # two prefixes can list a key twice
        calls: builtins.list[ScriptCall] = []
        for group, listed in by_group.items():
            rests = builtins.list(listed)
            index = layout.index(group)
            head: tuple[str, ...] = (index, layout.docs(group), index if self._io.split_groups else layout.groups)
            name = "" if self._io.split_groups else group
            for start in range(0, len(rests), _DELETE_BATCH):
                chunk = rests[start : start + _DELETE_BATCH]
                values = tuple(layout.locate(_storage_keys.join(group, rest)).value for rest in chunk)
                args = (layout.postings(group), name, *chunk)
                calls.append(ScriptCall("storage_delete_many", (*head, *values), args))
        if not calls:
            return 0
        replies = yield Step(op, "", what, calls)
        return sum(int(reply) for reply in replies)


def _index_scopes(search_index: bool | Sequence[str]) -> tuple[str, ...] | None:
    """``search_index`` as normalised key prefixes (``("",)``: every key), or ``None`` (off)."""
    if search_index is True:
        return ("",)
    if search_index is False:
        return None
    if isinstance(search_index, str) or not isinstance(search_index, Sequence):
        raise ValueError("search_index must be True, False or a sequence of key prefixes")
    scopes: builtins.list[str] = []
    for scope in search_index:
        if not isinstance(scope, str):
            raise ValueError(f"search_index prefixes must be str, not {type(scope).__name__}")
        scopes.append(_storage_keys.normalize_prefix(scope).rstrip("/"))
    return tuple(scopes)


# The keys of the last few thousand calls, normalised (a pure function; invalid keys still raise).
_normalized = functools.lru_cache(maxsize=4096)(_storage_keys.normalize_key)


def _as_bytes(data: object, key: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, _BYTES_LIKE):
        return bytes(data)  # a copy: later changes to the caller's buffer do not reach the store
    hint = "; encode it first, e.g. data.encode('utf-8')" if isinstance(data, str) else ""
    raise InvalidStorageArgumentError(
        f"Failed to write '{key}': data must be bytes, bytearray or memoryview, not {type(data).__name__}{hint}"
    )


def _after(group_range: _storage_keys.GroupRange, after: str | None) -> bytes:
    """The low bound of a group range, raised to exclude keys up to the cursor ``after`` (a full key)
    when the cursor lies in the group; other keys the cursor excludes are filtered by the caller."""
    if after is None or not after.startswith(group_range.group + "/"):
        return group_range.low
    cursor = after[len(group_range.group) + 1 :].encode("utf-8", "surrogatepass")
    low = group_range.low
    if low == b"-" or cursor >= low[1:]:
        return b"(" + cursor
    return low


def _digest(value: bytes) -> str:
    """What a conditional write compares: the value's SHA1 in hex (``redis.sha1hex`` in Lua)."""
    return hashlib.sha1(value).hexdigest()


class _Guard:
    """The conditional ``snapshot_latest`` writes of one view: for each key whose last segment is
    ``name``, the SHA1 of the value the view last read or wrote there (``""``: none)."""

    __slots__ = ("_digests", "_suffix", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._suffix = "/" + name
        self._digests: dict[str, str] = {}

    def covers(self, full_key: str) -> bool:
        return full_key.endswith(self._suffix) or full_key == self.name

    def expected(self, full_key: str) -> str:
        """What a write must find: the last value seen, or no value for a key never seen."""
        return self._digests.get(full_key, "")

    def seen(self, full_key: str, digest: str) -> None:
        self._digests[full_key] = digest
