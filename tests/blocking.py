"""Run the asyncio repository through the synchronous test bodies, so both faces face one suite."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any


class BlockingFace:
    """Calls the coroutine methods of an asyncio repository on a private event loop.

    ``loop``: the loop to run on (default: a new one), for clients bound to the loop they were made
    in (Valkey GLIDE's); it is closed with the face.
    """

    def __init__(self, target: Any, *, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._target = target
        self._loop = loop or asyncio.new_event_loop()

    def run(self, awaitable: Any) -> Any:
        return self._loop.run_until_complete(awaitable)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if inspect.iscoroutinefunction(attr):
            method: Callable[..., Any] = attr

            def call(*args: Any, **kwargs: Any) -> Any:
                return self.run(method(*args, **kwargs))

            return call
        return attr

    def close(self) -> None:
        self.run(self._target.aclose())
        self._loop.close()
