"""The package's own Python cost per call on the hot paths, with the server's I/O stubbed.

    python -m benchmarks.overhead [--calls N] [--profile]

Starts a Valkey 9, makes one real call of each operation to record the server's replies, then
replaces the client's ``execute_command`` with a stub returning the recorded reply of the same
command: what is left is our Python (and valkey-py's argument handling above the socket, none of
its packing). Measured: ``ValkeySessionRepository.create_message`` (1 KiB, version checks on),
``ValkeyStorage.write`` (1 KiB) and ``ValkeyStorage.read`` on a synchronous ``valkey.Valkey``.
Reported: the median of many runs of the per-call mean, in µs. ``--profile`` prints cProfile's
top functions per operation instead.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

import valkey
from strands.types.content import Message
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import ValkeySessionRepository
from strands_valkey_session_manager.servers import start_server
from strands_valkey_session_manager.storage import ValkeyStorage


def _sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (a storage on a synchronous client, stubbed)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the coroutine suspended")


def _stub(client: Any) -> None:
    """Record the replies of the real client by command name, then answer with them."""
    real = client.execute_command
    replies: dict[Any, Any] = {}

    def recording(*args: Any, **options: Any) -> Any:
        reply = real(*args, **options)
        replies[args[0]] = reply
        return reply

    def stub(*args: Any, **options: Any) -> Any:
        return replies[args[0]]

    client.execute_command = recording
    client._svsm_stub = lambda: setattr(client, "execute_command", stub)


def _measure(fn: Callable[[], Any], calls: int, runs: int) -> float:
    for _ in range(calls):
        fn()
    means = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        means.append((time.perf_counter_ns() - start) / calls / 1000)
    return statistics.median(means)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--profile", action="store_true")
    options = parser.parse_args()
    server = start_server("valkey9")
    try:
        client = valkey.Valkey(host=server.host, port=server.port)
        repo = ValkeySessionRepository(client, check_versions=True)
        repo.create_session(Session(session_id="s", session_type=SessionType.AGENT))
        repo.create_agent("s", SessionAgent(agent_id="a", state={}, conversation_manager_state={}))
        text = "x" * 1000
        message = SessionMessage(message=Message(role="user", content=[{"text": text}]), message_id=0)
        storage_client = valkey.Valkey(host=server.host, port=server.port)
        storage = ValkeyStorage(storage_client)
        value = b"v" * 1024
        _stub(client)
        _stub(storage_client)
        repo.create_message("s", "a", message)
        _sync(storage.write("k/1", value))
        _sync(storage.read("k/1"))
        client._svsm_stub()
        storage_client._svsm_stub()
        cases: dict[str, Callable[[], Any]] = {
            "create_message 1 KiB": lambda: repo.create_message("s", "a", message),
            "ValkeyStorage.write 1 KiB": lambda: _sync(storage.write("k/1", value)),
            "ValkeyStorage.read": lambda: _sync(storage.read("k/1")),
        }
        for name, fn in cases.items():
            if options.profile:
                profile = cProfile.Profile()
                profile.runcall(lambda fn=fn: [fn() for _ in range(options.calls)])
                print(f"== {name}")
                pstats.Stats(profile).sort_stats("tottime").print_stats(18)
            else:
                print(f"{name:28} {_measure(fn, options.calls, options.runs):7.2f} µs of Python per call")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
