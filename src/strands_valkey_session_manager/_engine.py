"""The I/O engine of both stores: steps, plan runners, retries, errors, scripts, durability, telemetry.

The session repository (``_core.py`` and its faces) and ``ValkeyStorage`` (``storage.py``) write
each operation as a *plan*: a generator that yields :class:`Step` s (one round trip each: a raw
:class:`Command`, a :class:`ScriptCall`, or a sequence of them sent as one pipeline) and receives
their replies. This module runs plans, the same way for both stores and every client:

* :func:`run_plan` / :func:`arun_plan` drive a plan on a sync / asyncio :class:`Engine`, with
  telemetry (``_telemetry.Operation``) and the durability wait (:class:`Durability`) on writes;
* :func:`call_retrying` / :func:`acall_retrying` repeat an operation per a :class:`RetryPolicy`;
* :class:`Engine` / :class:`AsyncEngine` hold the one policy for scripts (EVALSHA sent directly;
  on NOSCRIPT ``SCRIPT LOAD`` and EVALSHA again; if a node still lacks it, the whole script with
  EVAL, routed by its keys), pipelines, and waits, written once as generators of wire operations
  (:class:`Wire`) that a client family carries out;
* :class:`ErrorMap` turns a family's classification of a client exception (:class:`Failure`) into
  the store's exception (:data:`SESSION_ERRORS` for the repository; ``storage.py`` has its own).

A client family (``_client.py``: valkey-py/redis-py; ``_glide.py``: Valkey GLIDE) only sends raw
commands and pipelines and classifies its exceptions; it imports this module, never the reverse.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import math
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar, Protocol, TypeVar, cast

from . import _lua
from ._redact import drop_frame_locals
from ._telemetry import Operation, collecting
from .exceptions import (
    AccessDeniedError,
    CorruptRecordError,
    ReplicationTimeoutError,
    SessionStoreUnavailableError,
    ValkeySessionError,
)

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

# -- steps ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    """One raw command (``("HGET", key, field)``). ``raw`` reads the reply undecoded (exact bytes,
    also on a client with ``decode_responses=True``)."""

    args: tuple[Any, ...]
    raw: bool = False


@dataclass(frozen=True)
class ScriptCall:
    """One of the package's Lua scripts (``lua/<name>.lua``)."""

    name: str
    keys: Sequence[str]
    args: Sequence[Any] = ()


@dataclass(frozen=True)
class CommandCall:
    """A command spelled as valkey-py's method and arguments (``CommandCall("zadd", (key, {m: 0}))``),
    for plans; sent as the raw :class:`Command` of :meth:`command`."""

    method: str
    args: Sequence[Any] = ()

    def command(self) -> Command:
        """The raw command: the method's name in capitals and its arguments, except for the few
        methods whose valkey-py signature differs from the command's."""
        shape = _SHAPES.get(self.method)
        if shape is not None:
            return shape(*self.args)
        return Command((self.method.upper(), *self.args))


def _zadd(key: Any, mapping: dict[Any, Any]) -> Command:
    return Command(("ZADD", key, *(x for member, score in mapping.items() for x in (score, member))))


def _by_lex(name: str) -> Callable[..., Command]:
    def shape(key: Any, first: Any, second: Any, *offset_count: Any) -> Command:
        limit = ("LIMIT", *offset_count) if offset_count else ()
        return Command((name, key, first, second, *limit))

    return shape


_SHAPES: dict[str, Callable[..., Command]] = {
    "zadd": _zadd,
    "zrevrangebylex": _by_lex("ZREVRANGEBYLEX"),
    "zrangebylex": _by_lex("ZRANGEBYLEX"),
    "dump": lambda key: Command(("DUMP", key), raw=True),  # a payload, never text
}

Call = Command | ScriptCall | CommandCall
Wired = Command | ScriptCall  # what a family sends: CommandCalls become Commands


@dataclass(frozen=True)
class Step:
    """One round trip of a plan: what to send, and what to name if it fails."""

    operation: str
    session_id: str
    key: str
    call: Call | Sequence[Call]


#: An operation as a generator: it yields the round trips it needs and receives their replies, so
#: every face (sync, asyncio; every client library) runs the same code.
Plan = Generator[Step, Any, _T]


def wired(call: Call) -> Wired:
    """``call`` as a family sends it."""
    return call.command() if isinstance(call, CommandCall) else call


def as_calls(call: Call | Sequence[Call]) -> tuple[bool, list[Wired]]:
    """Whether ``call`` is a single call, and the calls as a list, as sent."""
    if isinstance(call, (Command, ScriptCall, CommandCall)):
        return True, [wired(call)]
    return False, [wired(c) for c in call]


def written_key(call: Wired) -> str:
    """The key that routes ``call`` on a cluster (every call names keys of one slot)."""
    if isinstance(call, ScriptCall):
        return str(call.keys[0])
    return str(call.args[1])


@cache
def script_sha(name: str) -> str:
    """SHA1 of a script as the server names it."""
    return hashlib.sha1(_lua.source(name).encode("utf-8")).hexdigest()


def script_command(call: ScriptCall, *, whole: bool = False) -> Command:
    """``EVALSHA`` of a script call (``EVAL`` of its text when ``whole``)."""
    head = ("EVAL", _lua.source(call.name)) if whole else _evalsha(call.name)
    return Command((*head, len(call.keys), *call.keys, *call.args))


@cache
def _evalsha(name: str) -> tuple[str, str]:
    return ("EVALSHA", script_sha(name))


# -- retries -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How often an operation is repeated after the server was unreachable, and how long to wait.

    Every operation of both stores is safe to repeat: repository writes carry what makes a repeat a
    no-op (the same record, the same creation nonce), and storage writes and deletes are idempotent.
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

    def again(self, error: BaseException, attempt: int) -> bool:
        """Whether an attempt that raised ``error`` is repeated: :class:`SessionStoreUnavailableError`
        (which every store's "unavailable" error is) while retries remain, never a
        :class:`ReplicationTimeoutError` (see :class:`Durability`)."""
        retryable = isinstance(error, SessionStoreUnavailableError) and not isinstance(error, ReplicationTimeoutError)
        return retryable and attempt < self.retries


def call_retrying(policy: RetryPolicy, attempt: Callable[[int], _T], name: str, log: logging.Logger = logger) -> _T:
    """``attempt(n)`` for n = 0, 1, ... until it returns or :meth:`RetryPolicy.again` says no."""
    n = 0
    while True:
        try:
            return attempt(n)
        except Exception as e:
            if not policy.again(e, n):
                raise
            pause = policy.delay(n)
            log.debug("operation=<%s>, attempt=<%d>, pause=<%.3f> | retrying: %s", name, n, pause, e)
            time.sleep(pause)
            n += 1


async def acall_retrying(
    policy: RetryPolicy, attempt: Callable[[int], Awaitable[_T]], name: str, log: logging.Logger = logger
) -> _T:
    """:func:`call_retrying` for coroutines."""
    n = 0
    while True:
        try:
            return await attempt(n)
        except Exception as e:
            if not policy.again(e, n):
                raise
            pause = policy.delay(n)
            log.debug("operation=<%s>, attempt=<%d>, pause=<%.3f> | retrying: %s", name, n, pause, e)
            await asyncio.sleep(pause)
            n += 1


# -- errors --------------------------------------------------------------------------------------


class Failure(enum.Enum):
    """What a client exception means, as a family classifies it (by its exception classes, and for
    server replies by their error code, the reply's first word)."""

    UNAVAILABLE = "server unavailable"  # connection, timeout, cluster down, READONLY, OOM, LOADING, ...
    DENIED = "not permitted by the server's ACL"  # NOPERM, a refused user or password
    CROSS_SLOT = "keys in different slots"  # CROSSSLOT: refused before running
    REFUSED = "server refused"  # WRONGTYPE, our scripts' SVSM-* replies, any other error reply
    UNDECODABLE = "not a valid record"  # a decoding client met bytes that are not UTF-8
    CLIENT = "client error"  # the library's own error (a bad argument, a cluster it cannot use)


@dataclass(frozen=True)
class Where:
    """The operation a failure belongs to: named in every error message."""

    operation: str
    session_id: str
    key: str

    def __str__(self) -> str:
        return f"operation=<{self.operation}>, session_id=<{self.session_id}>, key=<{self.key}>"


class ErrorMap:
    """A store's exceptions for each :class:`Failure` and for waits that fell short.

    This one is the repository's: :class:`SessionStoreUnavailableError`, :class:`AccessDeniedError`,
    :class:`ValkeySessionError` for the library's own errors, :class:`CorruptRecordError` for the
    rest (the data under our key is not ours), :class:`ReplicationTimeoutError`. A store changes
    the tables and :meth:`describe`.
    """

    classes: ClassVar[dict[Failure, type[Exception]]] = {
        Failure.UNAVAILABLE: SessionStoreUnavailableError,
        Failure.DENIED: AccessDeniedError,
        Failure.CLIENT: ValkeySessionError,
    }
    default: type[Exception] = CorruptRecordError
    not_acknowledged_class: type[Exception] = ReplicationTimeoutError
    wait_refused_class: type[Exception] = ValkeySessionError

    def describe(self, where: Where, detail: str) -> str:
        """The message: the step, then what happened."""
        return f"{where} | {detail}"

    def failed(self, failure: Failure, where: Where, error: BaseException) -> Exception:
        """The exception for a client exception classified as ``failure`` (chained by the caller)."""
        detail = f"{type(error).__name__}: {error}" if failure is Failure.CLIENT else f"{failure.value}: {error}"
        return self.classes.get(failure, self.default)(self.describe(where, detail))

    def not_acknowledged(self, where: Where, detail: str) -> Exception:
        """A write applied by the primary but not acknowledged by its replicas (or AOF)."""
        return self.not_acknowledged_class(self.describe(where, detail))

    def wait_refused(self, where: Where, detail: str) -> Exception:
        """The server cannot wait as asked (no ``WAITAOF``, ``appendonly no``)."""
        return self.wait_refused_class(self.describe(where, detail))


SESSION_ERRORS = ErrorMap()


# -- durability ----------------------------------------------------------------------------------

#: Default for ``wait_timeout``: how long a write waits for its replicas, in seconds.
DEFAULT_WAIT_TIMEOUT = 1.0

# Reads: calls that never change data (``touch_on_read`` extends lifetimes, which reads may lose).
_READ_SCRIPTS = frozenset({"list_messages", "read_field", "session_info"})
_READ_COMMANDS = frozenset({"HGET", "HGETALL", "HMGET", "DUMP", "ZREVRANGEBYLEX", "ZRANGEBYLEX", "GET", "EXISTS"})
# Operations whose writes are housekeeping (stale or expired catalog entries, found again if lost).
_UNACKNOWLEDGED_OPERATIONS = frozenset({"list_sessions", "sweep_catalog"})


@dataclass(frozen=True)
class Durability:
    """When a write counts as done: ``wait_for_replicas``, ``wait_timeout``, ``wait_aof``.

    With ``replicas > 0`` (or ``aof``) every write step is followed, in the same pipeline and on
    the same connection and node, by ``WAIT replicas timeout_ms`` (or ``WAITAOF 1 replicas
    timeout_ms``: the primary's own AOF fsynced too). Fewer acknowledgements than asked raise
    :class:`ReplicationTimeoutError`: the primary applied the write, the replicas may not hold it.

    That error is not retried. Repeating the write is safe for the data, but a repeat that
    recognises its own earlier write writes nothing, so its ``WAIT`` (which counts replicas that
    hold the connection's last write) would prove nothing about the first attempt.
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

    def command(self) -> Command:
        """The ``WAIT`` or ``WAITAOF`` command that follows a write."""
        if self.aof:
            return Command(("WAITAOF", 1, self.replicas, self.timeout_ms))
        return Command(("WAIT", self.replicas, self.timeout_ms))

    def verdict(
        self, replies: Sequence[Any], where: Where, errors: ErrorMap = SESSION_ERRORS, *, refused: bool = False
    ) -> Exception | None:
        """Judge the replies of the ``WAIT``/``WAITAOF`` commands sent after a write.

        ``refused`` says the family classified an error reply among them as the server not knowing
        the command or not being able to fsync (the reply's code, not its text).

        Returns (does not raise) ``errors``' exception: not acknowledged (fewer replicas, no local
        fsync, or the wait failed), or the wait refused (``WAITAOF`` on Redis before 7.2 or with
        ``appendonly no``: the write was applied, not acknowledged). ``None`` when acknowledged.
        """
        name = "WAITAOF" if self.aof else "WAIT"
        for reply in replies:
            if isinstance(reply, BaseException):
                error: Exception
                if refused:
                    error = errors.wait_refused(
                        where,
                        "wait_aof=True needs WAITAOF (Valkey 8+, Redis 7.2+) on a server with appendonly yes; "
                        f"the server refused it ({reply}). The write was applied but is not acknowledged.",
                    )
                else:
                    error = errors.not_acknowledged(
                        where, f"{name} failed ({reply}); the write was applied by the primary but is not acknowledged"
                    )
                error.__cause__ = reply
                return error
            if self.aof:
                local, replicas = (int(n) for n in reply)
            else:
                local, replicas = 1, int(reply)
            if local < 1 or replicas < self.replicas:
                detail = f"{replicas} of {self.replicas} replicas" + ("" if local else ", local AOF not fsynced")
                return errors.not_acknowledged(
                    where,
                    f"{detail} acknowledged within {self.timeout_ms} ms; the write was applied by the primary but "
                    "is not acknowledged: a failover now may lose it",
                )
        return None


NO_WAIT = Durability()


class Unacknowledged(Exception):
    """Raised by an engine's ``execute_acknowledged`` when the write ran but its wait failed:
    carries the write's reply, for the plan to learn what it wrote (versions), and the error the
    caller gets."""

    def __init__(self, error: Exception, reply: Any) -> None:
        super().__init__(str(error))
        self.error = error
        self.reply = reply


def acknowledged(step: Step) -> bool:
    """True when ``step`` writes, so that a :class:`Durability` waits for it."""
    if step.operation in _UNACKNOWLEDGED_OPERATIONS:
        return False
    for call in as_calls(step.call)[1]:
        if isinstance(call, ScriptCall):
            if call.name not in _READ_SCRIPTS:
                return True
        elif str(call.args[0]).upper() not in _READ_COMMANDS:
            return True
    return False


# -- wire operations: what a family carries out --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """One command; the reply, or the client's exception thrown back."""

    command: Command


@dataclass(frozen=True, slots=True)
class Round:
    """One pipeline (not a transaction) of ``commands``, then ``wait`` on each node written by
    ``written`` (keys). Reply: a :class:`RoundResult`; error replies are exception objects in it."""

    commands: tuple[Command, ...]
    wait: Command | None = None
    written: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Load:
    """``SCRIPT LOAD`` of scripts, on every primary."""

    names: tuple[str, ...]


Wire = Send | Round | Load


@dataclass
class RoundResult:
    """A pipeline's replies: the commands', the waits', and whether a written key's slot moved
    during it (the waits then proved nothing about that key)."""

    replies: list[Any]
    waits: list[Any]
    moved: str | None = None
    wait_refused: bool = False


class Family(Protocol):
    """What a client family knows: its client, how its exceptions classify."""

    client: Any
    cluster: bool
    #: Seconds the client waits for a reply before giving up, None when unbounded or unknown.
    socket_timeout: float | None

    def is_no_script(self, error: BaseException) -> bool: ...

    def classify(self, error: BaseException) -> Failure | None: ...


class SyncFamily(Family, Protocol):
    def do(self, op: Wire) -> Any: ...


class AsyncFamily(Family, Protocol):
    async def do(self, op: Wire) -> Any: ...

    async def prepare(self) -> None: ...

    async def release(self, owned: bool) -> None: ...


_Wiring = Generator[Wire, Any, _T]
_Op = TypeVar("_Op")


class _Logic:
    """The engine's policy, as generators of :class:`Wire` operations run by the sync and asyncio
    engines alike: scripts and NOSCRIPT, pipelines, waits."""

    family: Family
    durability: Durability
    error_map: ErrorMap
    retry: RetryPolicy

    def __init__(self, family: Family, retry: RetryPolicy | None, durability: Durability, errors: ErrorMap) -> None:
        timeout = family.socket_timeout
        if durability.active and timeout is not None and timeout <= durability.timeout:
            # The WAIT's reply would time out on the socket first; the write, retried on a new
            # connection, would find itself done and its WAIT would prove nothing about it.
            raise ValueError(
                f"wait_timeout=<{durability.timeout}> | must be below the client's socket_timeout=<{timeout}>: "
                "a write waiting for its replicas would time out on the socket before the server answers"
            )
        self.family = family
        self.client = family.client
        self.retry = retry or RetryPolicy()
        self.durability = durability
        self.error_map = errors

    @contextmanager
    def errors(self, operation: str, session_id: str, key: str) -> Iterator[None]:
        """Translate the client's exceptions into the store's (:attr:`error_map`), naming the step."""
        try:
            yield
        except Exception as e:
            mapped = self.failed(e, operation, session_id, key)
            if mapped is None:
                raise
            raise mapped from e

    def failed(self, error: Exception, operation: str, session_id: str, key: str) -> Exception | None:
        """The store's exception for a client exception raised by a step (``None``: not the
        client's, raised as it is); the client's frames are cleared of their locals."""
        failure = self.family.classify(error)
        if failure is None:
            return None
        drop_frame_locals(error)  # the client's frames hold its password (AUTH) among their locals
        return self.error_map.failed(failure, Where(operation, session_id, key), error)

    def _script(self, call: ScriptCall) -> _Wiring[Any]:
        """EVALSHA; on NOSCRIPT, load and EVALSHA again; if still unknown (a cluster client whose
        view of which node is primary went stale loaded it elsewhere), the whole script with EVAL."""
        try:
            return (yield Send(script_command(call)))
        except Exception as e:
            if not self.family.is_no_script(e):
                raise
        return (yield from self._reloaded(call))

    def _reloaded(self, call: ScriptCall) -> _Wiring[Any]:
        """:meth:`_script` after the server answered NOSCRIPT to the first EVALSHA."""
        yield Load((call.name,))
        try:
            return (yield Send(script_command(call)))
        except Exception as e:
            if not self.family.is_no_script(e):
                raise
        return (yield Send(script_command(call, whole=True)))

    def _unloaded(self, calls: Sequence[Wired], replies: Sequence[Any]) -> list[int]:
        """Positions of script calls the server did not know yet (to run again, loading them)."""
        return [
            i
            for i, (call, reply) in enumerate(zip(calls, replies, strict=True))
            if isinstance(call, ScriptCall) and isinstance(reply, Exception) and self.family.is_no_script(reply)
        ]

    def _execute(self, call: Call | Sequence[Call]) -> _Wiring[Any]:
        """One call, or a pipeline of calls (raising the first error reply)."""
        single, calls = as_calls(call)
        if single:
            only = calls[0]
            if isinstance(only, ScriptCall):
                return (yield from self._script(only))
            return (yield Send(only))
        if not calls:
            return []
        done: RoundResult = yield Round(tuple(self._as_command(c) for c in calls))
        replies = done.replies
        unloaded = self._unloaded(calls, replies)
        if unloaded:
            # A server's first use: load the scripts once, then send the calls again in one round
            # trip (a pipeline of many calls of one script stays two round trips more, not one per call).
            again = [calls[i] for i in unloaded]
            yield Load(tuple(dict.fromkeys(c.name for c in again if isinstance(c, ScriptCall))))
            redone: RoundResult = yield Round(tuple(self._as_command(c) for c in again))
            for i, reply in zip(unloaded, redone.replies, strict=True):
                replies[i] = reply
            for i in self._unloaded(calls, replies):
                script = calls[i]
                assert isinstance(script, ScriptCall)
                replies[i] = yield from self._script(script)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    @staticmethod
    def _as_command(call: Wired, whole: bool = False) -> Command:
        return script_command(call, whole=whole) if isinstance(call, ScriptCall) else call

    def _execute_acknowledged(self, call: Call | Sequence[Call], where: Where) -> _Wiring[Any]:
        """As :meth:`_execute`, with the durability wait in the same pipeline (one round trip).

        A script the server did not know yet is loaded and run again with its own wait (only on a
        server's first use), sent whole with EVAL if a node still lacks it.

        Raises:
            Unacknowledged: If the write ran but is not acknowledged (see :class:`Durability`).
        """
        single, calls = as_calls(call)
        replies, error = yield from self._acknowledged_round(calls, where, whole=False)
        unloaded = self._unloaded(calls, replies)
        if unloaded:
            again = [calls[i] for i in unloaded]
            yield Load(tuple(dict.fromkeys(c.name for c in again if isinstance(c, ScriptCall))))
            redo, error_again = yield from self._acknowledged_round(again, where, whole=False)
            if self._unloaded(again, redo):
                redo, error_again = yield from self._acknowledged_round(again, where, whole=True)
            for i, reply in zip(unloaded, redo, strict=True):
                replies[i] = reply
            error = error or error_again
        result = replies[0] if single else replies
        if error is not None:
            raise Unacknowledged(error, result)
        return result

    def _acknowledged_round(
        self, calls: Sequence[Wired], where: Where, *, whole: bool
    ) -> _Wiring[tuple[list[Any], Exception | None]]:
        """One pipeline of the calls and the waits; raises the calls' first error reply other than
        NOSCRIPT (left for the caller), returns their replies and the waits' verdict."""
        done: RoundResult = yield Round(
            tuple(self._as_command(c, whole) for c in calls),
            self.durability.command(),
            tuple(written_key(c) for c in calls),
        )
        unloaded = set(self._unloaded(calls, done.replies))
        for i, reply in enumerate(done.replies):
            if isinstance(reply, Exception) and i not in unloaded:
                raise reply
        error = self.durability.verdict(done.waits, where, self.error_map, refused=done.wait_refused)
        if error is None and done.moved is not None:
            error = self.error_map.not_acknowledged(
                where,
                f"the slot of {done.moved} moved to another node during the write; "
                "the write was applied but its replication is not acknowledged",
            )
        return done.replies, error


def _drive(gen: Generator[_Op, Any, _T], do: Callable[[_Op], Any]) -> _T:
    """Run a generator of operations, ``do`` carrying out each (its error thrown back in)."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = gen.throw(error) if error is not None else gen.send(reply)
        except StopIteration as done:
            return cast(_T, done.value)
        error = None
        try:
            reply = do(op)
        except BaseException as e:
            error = e


async def _adrive(gen: Generator[_Op, Any, _T], do: Callable[[_Op], Awaitable[Any]]) -> _T:
    """:func:`_drive` with an asynchronous ``do``."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = gen.throw(error) if error is not None else gen.send(reply)
        except StopIteration as done:
            return cast(_T, done.value)
        error = None
        try:
            reply = await do(op)
        except BaseException as e:
            error = e


class Engine(_Logic):
    """Runs calls on a synchronous client family; what :func:`run_plan` drives."""

    family: SyncFamily

    def __init__(
        self,
        family: SyncFamily,
        retry: RetryPolicy | None = None,
        durability: Durability = NO_WAIT,
        errors: ErrorMap = SESSION_ERRORS,
    ) -> None:
        super().__init__(family, retry, durability, errors)

    def execute(self, call: Call | Sequence[Call]) -> Any:
        """Run one call, or a pipeline of calls (raising the first error reply)."""
        kind = type(call)
        if kind is Command:  # the common cases sent directly, as :meth:`_execute` would
            return self.family.do(Send(cast(Command, call)))
        if kind is ScriptCall:
            script = cast(ScriptCall, call)
            try:
                return self.family.do(Send(script_command(script)))
            except Exception as e:
                if not self.family.is_no_script(e):
                    raise
            return _drive(self._reloaded(script), self.family.do)
        return _drive(self._execute(call), self.family.do)

    def execute_acknowledged(self, call: Call | Sequence[Call], where: Where) -> Any:
        """As :meth:`execute`, followed by the durability wait in the same pipeline."""
        return _drive(self._execute_acknowledged(call, where), self.family.do)


class AsyncEngine(_Logic):
    """The same on an asyncio client family; what :func:`arun_plan` drives."""

    family: AsyncFamily

    def __init__(
        self,
        family: AsyncFamily,
        retry: RetryPolicy | None = None,
        durability: Durability = NO_WAIT,
        errors: ErrorMap = SESSION_ERRORS,
    ) -> None:
        super().__init__(family, retry, durability, errors)

    async def execute(self, call: Call | Sequence[Call]) -> Any:
        """As :meth:`Engine.execute`."""
        return await _adrive(self._execute(call), self.family.do)

    async def execute_acknowledged(self, call: Call | Sequence[Call], where: Where) -> Any:
        """As :meth:`Engine.execute_acknowledged`."""
        return await _adrive(self._execute_acknowledged(call, where), self.family.do)


# -- plan runners --------------------------------------------------------------------------------


class SyncAdapter(Protocol):
    """What :func:`run_plan` needs (an :class:`Engine`, or a wrapper around one)."""

    client: Any
    retry: RetryPolicy
    durability: Durability

    def errors(self, operation: str, session_id: str, key: str) -> Any: ...

    def execute(self, call: Call | Sequence[Call]) -> Any: ...

    def execute_acknowledged(self, call: Call | Sequence[Call], where: Where) -> Any: ...


class AsyncAdapter(Protocol):
    """What :func:`arun_plan` needs (an :class:`AsyncEngine`, or a wrapper around one)."""

    client: Any
    retry: RetryPolicy
    durability: Durability

    def errors(self, operation: str, session_id: str, key: str) -> Any: ...

    async def execute(self, call: Call | Sequence[Call]) -> Any: ...

    async def execute_acknowledged(self, call: Call | Sequence[Call], where: Where) -> Any: ...


@dataclass(frozen=True, slots=True)
class _Trip:
    """A plan's round trip for a runner: the call, and the step's place if it must be acknowledged."""

    call: Call | Sequence[Call]
    acknowledged: Where | None


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


def _running(db: SyncAdapter | AsyncAdapter, plan: Plan[_T]) -> Generator[_Trip, Any, _T]:
    """A plan's run, measured (``_telemetry``), as :class:`_Trip` s for a sync or asyncio driver:
    each inside ``db.errors`` (the store's exceptions), with the durability wait on writes."""
    measured = Operation()
    reply: Any = None
    try:
        while True:
            step = plan.send(reply)
            measured.step(step.operation, step.session_id, step.call)
            where = Where(step.operation, step.session_id, step.key)
            wait = db.durability.active and acknowledged(step)
            try:
                with db.errors(step.operation, step.session_id, step.key):
                    reply = yield _Trip(step.call, where if wait else None)
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


def run_plan(db: SyncAdapter, plan: Plan[_T]) -> _T:
    """Drive a plan on a synchronous engine."""
    if isinstance(db, Engine):
        return _run_on_engine(db, plan)

    def trip(t: _Trip) -> Any:
        return db.execute(t.call) if t.acknowledged is None else db.execute_acknowledged(t.call, t.acknowledged)

    return _drive(_running(db, plan), trip)


def _run_on_engine(db: Engine, plan: Plan[_T]) -> _T:
    """:func:`run_plan` on an :class:`Engine`, as one loop: what ``_drive(_running(...))`` does,
    without a generator and a context manager per round trip (the hot path of every operation)."""
    measured = Operation() if collecting() else None
    durable = db.durability.active
    reply: Any = None
    try:
        while True:
            step = plan.send(reply)
            if measured is not None:
                measured.step(step.operation, step.session_id, step.call)
            try:
                if durable and acknowledged(step):
                    reply = db.execute_acknowledged(step.call, Where(step.operation, step.session_id, step.key))
                else:
                    reply = db.execute(step.call)
            except Unacknowledged as e:
                if measured is not None:
                    measured.reply(e.reply)
                _settle(plan, e.reply)
                raise e.error from e.error.__cause__
            except Exception as e:
                mapped = db.failed(e, step.operation, step.session_id, step.key)
                if mapped is None:
                    raise
                raise mapped from e
            if measured is not None:
                measured.reply(reply)
    except StopIteration as done:
        if measured is not None:
            measured.finish(done.value)
        return cast(_T, done.value)
    except BaseException as e:
        if measured is not None:
            measured.finish(error=e)
        raise


async def arun_plan(db: AsyncAdapter, plan: Plan[_T]) -> _T:
    """Drive a plan on an asyncio engine."""

    async def trip(t: _Trip) -> Any:
        if t.acknowledged is None:
            return await db.execute(t.call)
        return await db.execute_acknowledged(t.call, t.acknowledged)

    return await _adrive(_running(db, plan), trip)


# -- the private I/O loop ------------------------------------------------------------------------


class IOLoop:
    """One event loop in a daemon thread, shared by every asyncio client a store drives there.

    An asyncio client (valkey-py, redis-py, GLIDE) belongs to the loop its connections were made
    on; a caller that runs on many short-lived loops (the SDK's ``run_async``) hands its coroutines
    to this loop instead. Started on first use and again in a forked child (the parent's thread
    does not survive a fork).
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
        """Schedule ``coro`` on the loop; a future any thread can wait on."""
        return asyncio.run_coroutine_threadsafe(coro, self.get())

    def in_loop_thread(self) -> bool:
        return self._thread is threading.current_thread()


io_loop = IOLoop()
