"""Write-behind: the session manager's writes run in order on one background thread.

An agent streaming in an event loop then spends only an enqueue per message instead of a round
trip. Writes keep their order (one worker), are flushed before an invocation returns, and the
first failure is raised to the caller at its next write or flush; writes queued after a failure
are not applied (they were built on a state the server never reached) and the error says how many.
"""

from __future__ import annotations

import atexit
import functools
import queue
import threading
import weakref
from collections.abc import Callable

from .exceptions import WriteBehindError

__all__ = ["WriteBehind", "WriteBehindError"]

_STOP = object()


class WriteBehind:
    """An ordered queue of writes drained by one daemon thread."""

    def __init__(self, name: str) -> None:
        self._queue: queue.Queue[object] = queue.Queue()
        self._error: BaseException | None = None
        self._skipped = 0
        self._closed = False
        self._thread = threading.Thread(target=self._drain, name=f"svsm-write-behind-{name}", daemon=True)
        self._thread.start()
        # Normal interpreter shutdown flushes what is queued (the thread is a daemon).
        self._atexit = functools.partial(_close_at_exit, weakref.ref(self))
        atexit.register(self._atexit)

    def submit(self, write: Callable[[], None]) -> None:
        """Queue a write; raises the error of an earlier write instead, if one failed."""
        if self._closed:
            raise WriteBehindError("write-behind queue is closed")
        self._raise_pending()
        self._queue.put(write)

    def flush(self) -> None:
        """Wait until every queued write is applied; raise the first failure, if any."""
        self._queue.join()
        self._raise_pending()

    def close(self) -> None:
        """Flush and stop the worker. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._atexit)
        try:
            self._queue.join()
        finally:
            self._queue.put(_STOP)
            self._thread.join(timeout=10)
        self._raise_pending()

    def _drain(self) -> None:
        while True:
            write = self._queue.get()
            try:
                if write is _STOP:
                    return
                if self._error is not None:
                    self._skipped += 1
                    continue
                assert callable(write)
                write()
            except BaseException as e:
                self._error = e
            finally:
                self._queue.task_done()

    def _raise_pending(self) -> None:
        error, skipped = self._error, self._skipped
        if error is None:
            return
        self._error, self._skipped = None, 0
        raise WriteBehindError(
            f"a queued write failed ({error}); {skipped} later queued write(s) were not applied"
        ) from error


def _close_at_exit(ref: weakref.ReferenceType[WriteBehind]) -> None:
    queue_ = ref()
    if queue_ is not None:
        queue_.close()
