"""Adapters over Valkey GLIDE: ``glide_sync`` (synchronous) and ``glide`` (asyncio), standalone and cluster.

The plan runners (``_client.run_plan``/``arun_plan``) need ``client``, ``retry``, ``errors()`` and
``execute()``; these adapters give them the same reply shapes as valkey-py with
``decode_responses=False`` (bytes values, dicts for ``HGETALL``, lists for ranges, ``None`` for
missing), so the plans never know which library they run on. ``adapter_for`` in ``_client.py``
picks them for a client whose class lives in ``glide``/``glide_sync``; this module is only imported
then, so GLIDE stays an optional dependency.

Scripts are GLIDE ``Script`` objects made once per library and script name: ``invoke_script`` sends
EVALSHA and loads the script on NOSCRIPT. In a batch (``Batch``/``ClusterBatch`` with
``is_atomic=False``: a pipeline, split per primary on a cluster) a script is an EVALSHA custom
command, and a call the server did not know yet is repeated with ``invoke_script``.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from glide_shared.commands.batch import Batch, ClusterBatch
from glide_shared.exceptions import CircuitBreakerError, ClosingError, RequestError
from glide_shared.exceptions import ConnectionError as GlideConnectionError
from glide_shared.exceptions import TimeoutError as GlideTimeoutError
from glide_shared.routes import SlotKeyRoute, SlotType

from . import _lua
from ._client import NO_WAIT, Call, CommandCall, RetryPolicy, ScriptCall, Unacknowledged, as_calls, written_key
from .exceptions import AccessDeniedError, CorruptRecordError, SessionStoreUnavailableError

# "the server did not do it (or we cannot know)": worth a retry later, as in ``_client._Family``.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    ClosingError,
    GlideConnectionError,
    GlideTimeoutError,
    CircuitBreakerError,
)
# Server error codes, as the server sends them ("READONLY ...") and as GLIDE names the ones it
# knows ("An error was signalled by the server: - ReadOnly: ...").
_UNAVAILABLE_CODES = frozenset(
    {
        "READONLY",
        "ReadOnly",
        "OOM",
        "LOADING",
        "BusyLoadingError",
        "TRYAGAIN",
        "TryAgain",
        "CLUSTERDOWN",
        "ClusterDown",
        "MASTERDOWN",
        "MasterDown",
        "IoError",
        "ClusterConnectionNotFound",
    }
)
# A refused user or password is access denied too, not a server to retry later.
_NO_PERMISSION_CODES = frozenset({"NOPERM", "PermissionDenied", "NOAUTH", "WRONGPASS", "AuthenticationFailed"})
_NO_SCRIPT_CODES = frozenset({"NOSCRIPT", "NoScriptError"})
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


def _zrevrangebylex(target: Any, key: Any, high: Any, low: Any, *offset_count: Any) -> Any:
    """valkey-py's ``zrevrangebylex(name, max, min, start=None, num=None)``."""
    limit = ("LIMIT", *(_arg(n) for n in offset_count)) if offset_count else ()
    return target.custom_command(["ZREVRANGEBYLEX", _arg(key), _arg(high), _arg(low), *limit])


def _zrangebylex(target: Any, key: Any, low: Any, high: Any, *offset_count: Any) -> Any:
    """valkey-py's ``zrangebylex(name, min, max, start=None, num=None)``."""
    limit = ("LIMIT", *(_arg(n) for n in offset_count)) if offset_count else ()
    return target.custom_command(["ZRANGEBYLEX", _arg(key), _arg(low), _arg(high), *limit])


# The client methods the plans name in a CommandCall (valkey-py signatures), on a GLIDE client or
# batch; ``target`` is either, so one table serves single calls and batches, sync and async.
_COMMANDS: dict[str, Callable[..., Any]] = {
    "hget": lambda target, key, field: target.hget(_arg(key), _arg(field)),
    "hgetall": lambda target, key: target.hgetall(_arg(key)),
    "zadd": lambda target, key, mapping: target.zadd(_arg(key), {_arg(m): float(s) for m, s in mapping.items()}),
    "zrem": lambda target, key, *members: target.zrem(_arg(key), [_arg(m) for m in members]),
    "zrevrangebylex": _zrevrangebylex,
    "zrangebylex": _zrangebylex,
    "dump": lambda target, key: target.dump(_arg(key)),
}


def _command(target: Any, call: CommandCall) -> Any:
    """Send (or queue, on a batch) one CommandCall; other commands go out as they are written."""
    method = _COMMANDS.get(call.method)
    if method is not None:
        return method(target, *call.args)
    return target.custom_command([call.method.upper(), *(_arg(a) for a in call.args)])


@functools.cache
def _scripts(library: str) -> dict[str, Any]:
    """The package's scripts as ``Script`` objects of ``library`` (each library has its own script cache).

    Kept for the life of the process: a ``Script`` drops its source from GLIDE's cache when collected.
    """
    script_type = importlib.import_module(library).Script
    return {name: script_type(_lua.source(name)) for name in _lua.SCRIPT_NAMES}


class _GlideFamily:
    """What the sync and async GLIDE adapters share: the client check, batches, the error mapping."""

    _library = ""  # "glide_sync" or "glide"

    def __init__(self, client: Any, retry: RetryPolicy | None) -> None:
        library = importlib.import_module(self._library)
        if not isinstance(client, (library.GlideClient, library.GlideClusterClient)):
            kind = "an asyncio" if self._library == "glide" else "a synchronous"
            raise TypeError(
                f"client must be {kind} Valkey GLIDE client ({self._library}.GlideClient, "
                f"{self._library}.GlideClusterClient), not {type(client).__module__}.{type(client).__qualname__}"
            )
        self.client = client
        self.retry = retry or RetryPolicy()
        self._cluster = isinstance(client, library.GlideClusterClient)
        self._scripts = _scripts(self._library)
        self.durability = NO_WAIT

    @contextmanager
    def errors(self, operation: str, session_id: str, key: str) -> Iterator[None]:
        """Translate GLIDE's exceptions into this package's, naming operation, session and key."""
        where = f"operation=<{operation}>, session_id=<{session_id}>, key=<{key}>"
        try:
            yield
        except _UNAVAILABLE as e:
            raise SessionStoreUnavailableError(f"{where} | server unavailable: {e}") from e
        except RequestError as e:
            code = _code(e)
            if code in _NO_PERMISSION_CODES:
                raise AccessDeniedError(f"{where} | not permitted by the ACL: {e}") from e
            if code in _UNAVAILABLE_CODES:
                raise SessionStoreUnavailableError(f"{where} | server unavailable: {e}") from e
            # WRONGTYPE and our scripts' SVSM-* replies: the data under our key is not ours.
            raise CorruptRecordError(f"{where} | server refused: {e}") from e

    def _script_call(self, call: ScriptCall) -> tuple[Any, list[str | bytes], list[str | bytes]]:
        return self._scripts[call.name], [_arg(k) for k in call.keys], [_arg(a) for a in call.args]

    def _batch(self, calls: Sequence[Call]) -> Batch | ClusterBatch:
        """A pipeline (not a transaction) of the calls; keys may lie in different slots."""
        batch: Batch | ClusterBatch = ClusterBatch(is_atomic=False) if self._cluster else Batch(is_atomic=False)
        for call in calls:
            if isinstance(call, ScriptCall):
                script, keys, args = self._script_call(call)
                batch.custom_command(["EVALSHA", script.get_hash(), str(len(keys)), *keys, *args])
            else:
                _command(batch, call)
        return batch

    def _wait_args(self) -> list[str | bytes | bytearray | memoryview]:
        return [_arg(a) for a in self.durability.command()]

    def _acknowledged_batch(self, calls: Sequence[Call]) -> Batch | ClusterBatch:
        """The calls, then the durability wait, in one pipeline.

        GLIDE keeps one multiplexed connection per node, so the wait follows the write on its
        connection. On a cluster GLIDE routes a keyless ``WAIT``/``WAITAOF`` to every primary and
        keeps the smallest count (its routing table for these commands; a batch cannot route one
        command apart): the write's own primary is among them, and a primary whose replicas lag
        makes the wait stricter, never looser.
        """
        batch = self._batch(calls)
        batch.custom_command(self._wait_args())
        return batch

    def _judge(self, calls: Sequence[Call], results: list[Any], where: str) -> tuple[list[Any], Any]:
        """The calls' replies (raising their first error other than NOSCRIPT) and the wait's verdict."""
        replies = results[: len(calls)]
        for i, reply in enumerate(replies):
            if isinstance(reply, Exception) and i not in self._unloaded(calls, replies):
                raise reply
        return replies, self.durability.verdict(results[len(calls) :], where)

    def _separate_wait(self, call: ScriptCall) -> tuple[list[str | bytes | bytearray | memoryview], dict[str, Any]]:
        """The wait after a script run on its own (its first use on a server): to the key's primary."""
        route = {"route": SlotKeyRoute(SlotType.PRIMARY, written_key(call))} if self._cluster else {}
        return self._wait_args(), route

    @staticmethod
    def _unloaded(calls: Sequence[Call], results: Sequence[Any]) -> list[int]:
        """Positions of script calls the server did not know yet (to run again, loading them)."""
        return [
            i
            for i, (call, result) in enumerate(zip(calls, results, strict=True))
            if isinstance(call, ScriptCall) and isinstance(result, RequestError) and _code(result) in _NO_SCRIPT_CODES
        ]

    @staticmethod
    def _raise_first_error(results: Sequence[Any]) -> list[Any]:
        for result in results:
            if isinstance(result, Exception):
                raise result
        return list(results)


class GlideAdapter(_GlideFamily):
    """Sends commands and scripts on a synchronous GLIDE client (``glide_sync``)."""

    _library = "glide_sync"

    def script(self, call: ScriptCall) -> Any:
        """Run one of the package's Lua scripts (EVALSHA, loading it on NOSCRIPT)."""
        script, keys, args = self._script_call(call)
        return self.client.invoke_script(script, keys=keys, args=args)

    def batch(self, calls: Sequence[Call]) -> list[Any]:
        """Several calls in one pipeline; error replies come back as exceptions in the list."""
        if not calls:
            return []
        results = list(self.client.exec(self._batch(calls), raise_on_error=False) or ())
        for i in self._unloaded(calls, results):
            call = calls[i]
            assert isinstance(call, ScriptCall)
            results[i] = self.script(call)
        return results

    def execute(self, call: Call | Sequence[Call]) -> Any:
        """Run one call, or a batch of calls (raising the first error reply)."""
        if isinstance(call, ScriptCall):
            return self.script(call)
        if isinstance(call, CommandCall):
            return _command(self.client, call)
        return self._raise_first_error(self.batch(call))

    def execute_acknowledged(self, call: Call | Sequence[Call], where: str) -> Any:
        """As :meth:`execute`, with the durability wait in the same batch (one round trip).

        A script the server did not know yet is run again with ``invoke_script`` (which loads it)
        and followed by its own wait (only on a server's first use).
        """
        single, calls = as_calls(call)
        results = list(self.client.exec(self._acknowledged_batch(calls), raise_on_error=False) or ())
        replies, error = self._judge(calls, results, where)
        for i in self._unloaded(calls, replies):
            again = calls[i]
            assert isinstance(again, ScriptCall)
            replies[i] = self.script(again)
            args, route = self._separate_wait(again)
            error = error or self.durability.verdict([self.client.custom_command(args, **route)], where)
        result = replies[0] if single else replies
        if error is not None:
            raise Unacknowledged(error, result)
        return result


class AsyncGlideAdapter(_GlideFamily):
    """The same, on an asyncio GLIDE client (``glide``)."""

    _library = "glide"

    async def script(self, call: ScriptCall) -> Any:
        """As :meth:`GlideAdapter.script`."""
        script, keys, args = self._script_call(call)
        return await self.client.invoke_script(script, keys=keys, args=args)

    async def batch(self, calls: Sequence[Call]) -> list[Any]:
        """As :meth:`GlideAdapter.batch`."""
        if not calls:
            return []
        results = list(await self.client.exec(self._batch(calls), raise_on_error=False) or ())
        for i in self._unloaded(calls, results):
            call = calls[i]
            assert isinstance(call, ScriptCall)
            results[i] = await self.script(call)
        return results

    async def execute(self, call: Call | Sequence[Call]) -> Any:
        """As :meth:`GlideAdapter.execute`."""
        if isinstance(call, ScriptCall):
            return await self.script(call)
        if isinstance(call, CommandCall):
            return await _command(self.client, call)
        return self._raise_first_error(await self.batch(call))

    async def execute_acknowledged(self, call: Call | Sequence[Call], where: str) -> Any:
        """As :meth:`GlideAdapter.execute_acknowledged`."""
        single, calls = as_calls(call)
        results = list(await self.client.exec(self._acknowledged_batch(calls), raise_on_error=False) or ())
        replies, error = self._judge(calls, results, where)
        for i in self._unloaded(calls, replies):
            again = calls[i]
            assert isinstance(again, ScriptCall)
            replies[i] = await self.script(again)
            args, route = self._separate_wait(again)
            error = error or self.durability.verdict([await self.client.custom_command(args, **route)], where)
        result = replies[0] if single else replies
        if error is not None:
            raise Unacknowledged(error, result)
        return result
