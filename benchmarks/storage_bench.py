"""Benchmark of ``ValkeyStorage`` (the SDK's ``Storage`` protocol on Valkey) against its floors.

One command, from the repository root with the dev venv active::

    python benchmarks/storage_bench.py                 # full run, about 5 minutes on 2 cores (scale: 100,000 keys)
    python benchmarks/storage_bench.py --quick         # CI smoke: small sizes, few runs, ~10 s
    python benchmarks/storage_bench.py --output-dir D  # write storage.json / storage.md into D

It starts its own Valkey 9 (``strands_valkey_session_manager.servers.start_server("valkey9")``,
127.0.0.1, free port, no persistence, ``DEBUG`` allowed from loopback), measures, prints the tables
and writes ``benchmarks/results/storage.json`` (every number, configuration, machine) and
``benchmarks/results/storage.md``. The exit status is 0 whatever the timings: targets are printed
as PASS/FAIL, never asserted.

Measured (all on one server, one process):

1. ``ValkeyStorage.write``/``read`` of 1 KiB and 1 MiB values on a synchronous
   ``valkey.Valkey`` client, against raw ``SET``/``GET`` of the same value with the same client
   library on the same server. Target: <= 1.3x. The same on asyncio clients (information only),
   and the cost of one ``asyncio.to_thread`` hop (what a sync client pays per call with
   ``run_in_thread=True``; by default it runs on the caller's event loop).
2. ``ValkeyStorage.list`` of the 10,000 keys under one prefix in database 0, which also holds
   1,000,000 unrelated keys (``DEBUG POPULATE``), against the same 10,000 keys in database 1, which
   holds nothing else. Target: within 20%. Both a prefix with two ``/`` (one sorted-set range) and
   a one-segment prefix (groups index first).
4. Scale: with 1,000, 10,000 and 100,000 keys (``--quick``: 1,000) of about 100 bytes in one
   group (one memory store ``memory/scale``, indexed) and as many immutable snapshots of one
   agent: ``write``/``read`` against raw ``SET``/``GET`` and ``LocalFileStorage``; ``list`` of the
   whole prefix and one ``KeyQuery`` page of 100 against ``LocalFileStorage``; ``search`` (native
   index) against the SDK keyword scan on ``LocalFileStorage`` (up to 10,000 keys); the latest
   snapshot's save and restore, ``list_snapshot_ids(limit=100)`` and ``delete_session`` (timed
   once: it is destructive) for ``ValkeySnapshotSessionManager`` against the SDK's manager on
   ``LocalFileStorage``. Information only.
3. The SDK's ``SnapshotSessionManager`` saving (``save_snapshot(is_latest=True)``) and restoring
   (``restore_snapshot``) a 1,000-message agent on ``ValkeyStorage`` against the SDK's
   ``LocalFileStorage`` on a temporary directory (warm page cache, no fsync: its best case).
   Information only.

Method: every call is timed on its own (``time.perf_counter_ns``) after warm-up calls. Operations
that are compared run interleaved in many short runs (run 1 of A, run 1 of B, run 2 of B, run 2 of
A, ...), so a burst of load from another process falls on both. Reported per operation: the median
and p90 of all calls and the interquartile range of the run medians. A ratio is the quotient of the
two medians; its spread is the interquartile range of the per-run quotients (run medians timed back
to back).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "benchmarks" / "results"
RESULT_NAME = "storage"
PACKAGES = ("strands-valkey-session-manager", "strands-agents", "valkey", "redis", "orjson", "hiredis")
KIB = 1024
MIB = 1024 * 1024

Op = Callable[[int], Awaitable[Any]]


@dataclass(frozen=True)
class Config:
    quick: bool
    blob_runs: int
    small_calls: int
    large_calls: int
    list_keys: int
    list_unrelated: int
    list_runs: int
    list_calls: int
    snapshot_messages: int
    snapshot_runs: int
    snapshot_calls: int
    scale_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    scale_runs: int = 5
    scale_calls: int = 4


FULL = Config(
    quick=False,
    blob_runs=40,
    small_calls=200,
    large_calls=15,
    list_keys=10_000,
    list_unrelated=1_000_000,
    list_runs=30,
    list_calls=3,
    snapshot_messages=1_000,
    snapshot_runs=15,
    snapshot_calls=2,
)
QUICK = Config(
    quick=True,
    blob_runs=6,
    small_calls=40,
    large_calls=4,
    list_keys=1_000,
    list_unrelated=100_000,
    list_runs=6,
    list_calls=2,
    snapshot_messages=1_000,
    snapshot_runs=3,
    snapshot_calls=1,
    scale_sizes=(1_000,),
    scale_runs=2,
    scale_calls=2,
)


# -- statistics ---------------------------------------------------------------------------------------


def _quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (``q`` in [0, 1]) of a non-empty sequence."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


@dataclass
class Row:
    """One measured operation."""

    name: str
    section: str
    median_us: float
    p90_us: float
    runs_p25_us: float
    runs_p75_us: float
    calls: int
    note: str = ""


@dataclass
class Comparison:
    """Subject against baseline: quotient of medians, spread of per-run quotients, target verdict."""

    name: str
    section: str
    subject: str
    baseline: str
    ratio: float
    runs_p25: float
    runs_p75: float
    target: str | None
    passed: bool | None

    @property
    def verdict(self) -> str:
        return "info" if self.passed is None else ("PASS" if self.passed else "FAIL")


@dataclass
class Samples:
    """Per-call times (ns) of one operation, grouped by run."""

    runs: list[list[int]] = field(default_factory=list)

    def row(self, name: str, section: str, note: str = "") -> Row:
        every = [t for run in self.runs for t in run]
        medians = [statistics.median(run) for run in self.runs]
        return Row(
            name=name,
            section=section,
            median_us=statistics.median(every) / 1000,
            p90_us=_quantile(every, 0.9) / 1000,
            runs_p25_us=_quantile(medians, 0.25) / 1000,
            runs_p75_us=_quantile(medians, 0.75) / 1000,
            calls=len(every),
            note=note,
        )


def _compare(
    name: str,
    section: str,
    subject: tuple[str, Samples],
    baseline: tuple[str, Samples],
    *,
    target: str | None = None,
    check: Callable[[float], bool] | None = None,
) -> Comparison:
    s_every = [t for run in subject[1].runs for t in run]
    b_every = [t for run in baseline[1].runs for t in run]
    ratio = statistics.median(s_every) / statistics.median(b_every)
    per_run = [
        statistics.median(s) / statistics.median(b) for s, b in zip(subject[1].runs, baseline[1].runs, strict=True)
    ]
    return Comparison(
        name=name,
        section=section,
        subject=subject[0],
        baseline=baseline[0],
        ratio=ratio,
        runs_p25=_quantile(per_run, 0.25),
        runs_p75=_quantile(per_run, 0.75),
        target=target,
        passed=None if check is None else check(ratio),
    )


async def _interleaved(ops: dict[str, Op], *, runs: int, calls: int, warmup: int) -> dict[str, Samples]:
    """Time every op ``runs`` times ``calls`` calls, alternating the order of the ops run by run."""
    names = list(ops)
    for name in names:
        for i in range(warmup):
            await ops[name](i)
    samples = {name: Samples() for name in names}
    clock = time.perf_counter_ns
    for run in range(runs):
        order = names if run % 2 == 0 else names[::-1]
        for name in order:
            op = ops[name]
            times = []
            for i in range(calls):
                start = clock()
                await op(i)
                times.append(clock() - start)
            samples[name].runs.append(times)
    return samples


# -- the measurements -----------------------------------------------------------------------------------


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


def _at_most(limit: float) -> Callable[[float], bool]:
    return lambda ratio: ratio <= limit


def _within(fraction: float) -> Callable[[float], bool]:
    return lambda ratio: abs(ratio - 1.0) <= fraction


async def bench_blobs(port: int, cfg: Config, out: Results) -> None:
    """``ValkeyStorage.write``/``read`` against raw ``SET``/``GET``, sync and asyncio clients."""
    import valkey
    import valkey.asyncio

    from strands_valkey_session_manager import ValkeyStorage

    section = "blobs"
    client: Any = valkey.Valkey("127.0.0.1", port)
    aclient: Any = valkey.asyncio.Valkey(host="127.0.0.1", port=port)
    storage_aclient: Any = valkey.asyncio.Valkey(host="127.0.0.1", port=port)
    caller_aclient: Any = valkey.asyncio.Valkey(host="127.0.0.1", port=port)
    storage = ValkeyStorage(client)
    astorage = ValkeyStorage(storage_aclient)
    # The benchmark's one long-lived loop: calls can run on it, without the hop to the storage's loop.
    cstorage = ValkeyStorage(caller_aclient, caller_loop=True)
    try:
        for size, label, calls in ((KIB, "1 KiB", cfg.small_calls), (MIB, "1 MiB", cfg.large_calls)):
            value = os.urandom(size)
            key = f"bench/blob/{label.replace(' ', '')}"
            raw_key = f"bench:raw:{label.replace(' ', '')}"
            await storage.write(key, value)
            await cstorage.write(key, value)
            client.set(raw_key, value)
            assert await storage.read(key) == value and client.get(raw_key) == value
            # name -> (operation, label); each group below is measured interleaved.
            ops: dict[str, tuple[Op, str]] = {
                "write": (_op(storage.write, key, value), f"ValkeyStorage.write {label} (sync client)"),
                "set": (_sync_op(client.set, raw_key, value), f"SET {label} (valkey-py, sync)"),
                "set_hop": (_op(asyncio.to_thread, client.set, raw_key, value), f"asyncio.to_thread(SET {label})"),
                "read": (_op(storage.read, key), f"ValkeyStorage.read {label} (sync client)"),
                "get": (_sync_op(client.get, raw_key), f"GET {label} (valkey-py, sync)"),
                "get_hop": (_op(asyncio.to_thread, client.get, raw_key), f"asyncio.to_thread(GET {label})"),
                "awrite": (_op(astorage.write, key, value), f"ValkeyStorage.write {label} (asyncio client)"),
                "aset": (_op(aclient.set, raw_key, value), f"SET {label} (valkey-py asyncio)"),
                "aread": (_op(astorage.read, key), f"ValkeyStorage.read {label} (asyncio client)"),
                "aget": (_op(aclient.get, raw_key), f"GET {label} (valkey-py asyncio)"),
                "cwrite": (_op(cstorage.write, key, value), f"ValkeyStorage.write {label} (asyncio, caller_loop)"),
                "cread": (_op(cstorage.read, key), f"ValkeyStorage.read {label} (asyncio, caller_loop)"),
            }
            # (group measured together, [(subject, baseline, targeted)])
            plan = [
                (("write", "set", "set_hop"), [("write", "set", True), ("write", "set_hop", False)]),
                (("read", "get", "get_hop"), [("read", "get", True), ("read", "get_hop", False)]),
                (("awrite", "cwrite", "aset"), [("awrite", "aset", False), ("cwrite", "aset", True)]),
                (("aread", "cread", "aget"), [("aread", "aget", False), ("cread", "aget", True)]),
            ]
            for group, comparisons in plan:
                client.config_resetstat()
                got = await _interleaved(
                    {name: ops[name][0] for name in group}, runs=cfg.blob_runs, calls=calls, warmup=min(calls, 20)
                )
                server = _server_usec(client)
                out.facts.setdefault("server_usec_per_call", {})[f"{label}: {', '.join(group)}"] = server
                out.rows += [got[name].row(ops[name][1], section, _server_note(name, server)) for name in group]
                for subject, baseline, targeted in comparisons:
                    out.comparisons.append(
                        _compare(
                            f"{ops[subject][1]} / {ops[baseline][1]}",
                            section,
                            (ops[subject][1], got[subject]),
                            (ops[baseline][1], got[baseline]),
                            target="<= 1.3x" if targeted else None,
                            check=_at_most(1.3) if targeted else None,
                        )
                    )
    finally:
        storage.close()
        await astorage.aclose()
        await cstorage.aclose()
        client.close()
        await aclient.aclose()
        await storage_aclient.aclose()
        await caller_aclient.aclose()


def _server_usec(client: Any) -> dict[str, float]:
    """``usec_per_call`` of the commands the blob rows send, from ``INFO commandstats`` (reset per group).

    Commands a script runs are counted under their own names too (a storage write's inner ``SET``
    shows up under ``set``), so ``evalsha`` is the whole script and ``set`` mixes both kinds.
    """
    stats = client.info("commandstats")
    found: dict[str, float] = {}
    for command in ("set", "get", "evalsha"):
        entry = stats.get(f"cmdstat_{command}")
        if isinstance(entry, dict) and "usec_per_call" in entry:
            found[command] = float(entry["usec_per_call"])
    return found


def _server_note(name: str, server: dict[str, float]) -> str:
    command = "evalsha" if name in ("write", "awrite") else ("set" if "set" in name else "get")
    value = server.get(command)
    return "" if value is None else f"server: {command.upper()} {value:.1f} µs/call"


def _op(function: Callable[..., Awaitable[Any]], *args: Any) -> Op:
    """An ``Op`` awaiting ``function(*args)``."""

    def op(_: int) -> Awaitable[Any]:
        return function(*args)

    return op


def _sync_op(function: Callable[..., Any], *args: Any) -> Op:
    """An ``Op`` calling the blocking ``function(*args)`` directly, as code without an event loop would."""

    async def op(_: int) -> Any:
        return function(*args)

    return op


async def _populate_storage(storage: Any, keys: Sequence[str], value: bytes, width: int = 64) -> None:
    for start in range(0, len(keys), width):
        await asyncio.gather(*(storage.write(k, value) for k in keys[start : start + width]))


def _populate_unrelated(client: Any, count: int) -> str:
    """``count`` unrelated keys in the client's database: ``DEBUG POPULATE``, else pipelined ``MSET``."""
    try:
        client.execute_command("DEBUG", "POPULATE", count, "unrelated", 64)
        return "DEBUG POPULATE"
    except Exception:  # DEBUG refused (enable-debug-command): fall back to plain writes
        pipe = client.pipeline(transaction=False)
        for start in range(0, count, 1000):
            pipe.mset({f"unrelated:{i}": b"x" * 64 for i in range(start, min(start + 1000, count))})
            if len(pipe) >= 20:
                pipe.execute()
        pipe.execute()
        return "pipelined MSET"


async def bench_list(port: int, cfg: Config, out: Results) -> None:
    """``list`` of N keys next to a large unrelated keyspace (database 0) against an otherwise empty one (db 1)."""
    import valkey

    from strands_valkey_session_manager import ValkeyStorage

    section = "list"
    crowded_client: Any = valkey.Valkey("127.0.0.1", port, db=0)
    empty_client: Any = valkey.Valkey("127.0.0.1", port, db=1)
    crowded, empty = ValkeyStorage(crowded_client), ValkeyStorage(empty_client)
    crowded_client.flushall()
    try:
        keys = [f"bench/list/item-{i:06d}" for i in range(cfg.list_keys)]
        value = b"v" * 100
        for storage in (crowded, empty):
            await _populate_storage(storage, keys, value)
        started = time.perf_counter()
        how = _populate_unrelated(crowded_client, cfg.list_unrelated)
        out.facts["unrelated_keys"] = {
            "count": cfg.list_unrelated,
            "made_with": how,
            "seconds": round(time.perf_counter() - started, 2),
        }
        out.facts["dbsize"] = {"db0": crowded_client.dbsize(), "db1": empty_client.dbsize()}
        for storage in (crowded, empty):
            assert await storage.list("bench/list/") == keys
            assert await storage.list("bench/") == keys

        n = f"{cfg.list_keys:,}"
        crowd = f"{cfg.list_unrelated:,}"
        for prefix, how_listed in (("bench/list/", "one sorted-set range"), ("bench/", "groups index + ranges")):

            async def in_crowd(_: int, prefix: str = prefix) -> None:
                await crowded.list(prefix)

            async def alone(_: int, prefix: str = prefix) -> None:
                await empty.list(prefix)

            subject = f"list({prefix!r}), {n} keys, {crowd} unrelated keys in the database"
            baseline = f"list({prefix!r}), {n} keys, nothing else in the database"
            got = await _interleaved(
                {subject: in_crowd, baseline: alone}, runs=cfg.list_runs, calls=cfg.list_calls, warmup=2
            )
            out.rows += [got[subject].row(subject, section, how_listed), got[baseline].row(baseline, section)]
            out.comparisons.append(
                _compare(
                    f"list({prefix!r}): {crowd} unrelated keys / none",
                    section,
                    (subject, got[subject]),
                    (baseline, got[baseline]),
                    target="within 20%",
                    check=_within(0.2),
                )
            )
    finally:
        crowded.close()
        empty.close()
        crowded_client.close()
        empty_client.close()


def _conversation(count: int) -> list[dict[str, Any]]:
    """``count`` messages: user and assistant turns of ~400 characters, a tool call every 50 messages."""
    messages: list[dict[str, Any]] = []
    words = ("valkey", "snapshot", "session", "agent", "storage", "latency", "cluster", "message", "restore")
    for i in range(count):
        text = " ".join(words[(i + j) % len(words)] for j in range(55))[:400]
        if i % 2 == 0:
            content: list[dict[str, Any]] = [{"text": f"[{i}] {text}"}]
            if i % 50 == 2:
                content = [{"toolResult": {"toolUseId": f"t-{i}", "status": "success", "content": [{"text": text}]}}]
            messages.append({"role": "user", "content": content, "tracking_id": f"00000000-0000-4000-8000-{i:012d}"})
        else:
            content = [{"text": f"[{i}] {text}"}]
            if i % 50 == 1:
                content.append({"toolUse": {"toolUseId": f"t-{i + 1}", "name": "lookup", "input": {"q": text[:40]}}})
            messages.append(
                {"role": "assistant", "content": content, "tracking_id": f"00000000-0000-4000-8000-{i:012d}"}
            )
    return messages


async def bench_snapshots(port: int, cfg: Config, out: Results) -> None:
    """``SnapshotSessionManager`` save and restore on ``ValkeyStorage`` against ``LocalFileStorage``."""
    import warnings

    import valkey
    from strands import Agent
    from strands.session import SnapshotSessionManager
    from strands.storage import LocalFileStorage

    from strands_valkey_session_manager import ValkeyStorage
    from strands_valkey_session_manager.scripted_model import ScriptedModel

    section = "SnapshotSessionManager"
    warnings.filterwarnings("ignore", message=".*context_window_limit.*")
    client: Any = valkey.Valkey("127.0.0.1", port)
    directory = tempfile.mkdtemp(prefix="svsm-storage-bench-")
    storages: dict[str, Any] = {"ValkeyStorage": ValkeyStorage(client), "LocalFileStorage": LocalFileStorage(directory)}
    try:
        source = Agent(model=ScriptedModel(), agent_id="bench-agent", callback_handler=None)
        source.messages = _conversation(cfg.snapshot_messages)  # type: ignore[assignment]
        source.state.set("profile", {"tier": "gold", "visits": 42})
        managers = {name: SnapshotSessionManager("bench-session", storage=s) for name, s in storages.items()}
        targets = {
            name: Agent(model=ScriptedModel(), agent_id="bench-agent", callback_handler=None) for name in storages
        }
        for name, manager in managers.items():
            await manager.save_snapshot(source, is_latest=True)
            assert await manager.restore_snapshot(targets[name])
            assert targets[name].messages == source.messages
        key = "session/bench-session/scopes/agent/bench-agent/snapshots/snapshot_latest.json"
        size = len(await storages["ValkeyStorage"].read(key))
        out.facts["snapshot_bytes"] = size
        n = f"{cfg.snapshot_messages:,}"

        def saver(name: str) -> Op:
            async def op(_: int) -> None:
                await managers[name].save_snapshot(source, is_latest=True)

            return op

        def restorer(name: str) -> Op:
            async def op(_: int) -> None:
                await managers[name].restore_snapshot(targets[name])

            return op

        for verb, make in (("save", saver), ("restore", restorer)):
            labels = {name: f"{verb} {n} messages ({size / MIB:.2f} MiB), {name}" for name in storages}
            got = await _interleaved(
                {labels[name]: make(name) for name in storages},
                runs=cfg.snapshot_runs,
                calls=cfg.snapshot_calls,
                warmup=1,
            )
            out.rows += [got[label].row(label, section) for label in labels.values()]
            out.comparisons.append(
                _compare(
                    f"{verb} {n} messages: ValkeyStorage / LocalFileStorage",
                    section,
                    (labels["ValkeyStorage"], got[labels["ValkeyStorage"]]),
                    (labels["LocalFileStorage"], got[labels["LocalFileStorage"]]),
                )
            )
    finally:
        storages["ValkeyStorage"].close()
        client.close()
        shutil.rmtree(directory, ignore_errors=True)


# -- machine facts --------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError):
        pass
    return None


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _revision() -> str:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short=12", "HEAD")
    if not commit:
        return "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src")
    return f"{commit}{' (with local changes in src/)' if dirty else ''}"


def machine_facts(server_version: str, load_before: str) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": versions,
        "server": server_version,
        "revision": _revision(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_before": load_before,
        "load_average_after": _load(),
    }


# -- output ---------------------------------------------------------------------------------------------


def _fmt_us(us: float) -> str:
    return f"{us / 1000:,.2f} ms" if us >= 1000 else f"{us:,.1f} µs"


def _rows_table(rows: Sequence[Row]) -> list[str]:
    lines = ["| operation | median | p90 | runs p25-p75 | calls | note |", "|---|---:|---:|---:|---:|---|"]
    lines += [
        f"| {r.name} | {_fmt_us(r.median_us)} | {_fmt_us(r.p90_us)} | "
        f"{_fmt_us(r.runs_p25_us)} - {_fmt_us(r.runs_p75_us)} | {r.calls} | {r.note} |"
        for r in rows
    ]
    return lines


def _comparisons_table(comparisons: Sequence[Comparison]) -> list[str]:
    lines = ["| comparison | ratio | runs p25-p75 | target | verdict |", "|---|---:|---:|---|---|"]
    lines += [
        f"| {c.name} | {c.ratio:.2f}x | {c.runs_p25:.2f}x - {c.runs_p75:.2f}x | {c.target or '-'} | {c.verdict} |"
        for c in comparisons
    ]
    return lines


def render_markdown(data: dict[str, Any], results: Results) -> str:
    m = data["machine"]
    cfg = data["config"]
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    lines = [
        "# ValkeyStorage benchmark",
        "",
        f"`python benchmarks/storage_bench.py{' --quick' if cfg['quick'] else ''}`, {m['date']}, "
        f"{data['seconds']:.0f} s. Method and what each row means: the docstring of "
        "`benchmarks/storage_bench.py`.",
        "",
        f"- Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['memory_gib']} GiB; {m['os']}",
        f"- Load average (1/5/15 min): {m['load_average_before']} before, {m['load_average_after']} after",
        f"- {m['python']}; {packages}",
        f"- Server: {m['server']} on 127.0.0.1 (same machine), no persistence; source revision {m['revision']}",
        f"- Unrelated keys: {data['facts'].get('unrelated_keys')}; DBSIZE {data['facts'].get('dbsize')}; "
        f"snapshot of the agent: {data['facts'].get('snapshot_bytes')} bytes",
        "",
        "## Targets and comparisons",
        "",
        *_comparisons_table(results.comparisons),
        "",
        "## Operations",
        "",
        *_rows_table(results.rows),
        "",
        "## Reading the results",
        "",
        "- The `Storage` protocol is async. On a synchronous client `ValkeyStorage` runs each call on the",
        "  caller's event loop (as `LocalFileStorage` does its file I/O); `run_in_thread=True` adds the",
        "  `asyncio.to_thread` hop the `/ asyncio.to_thread(...)` rows measure. What is left against raw",
        "  `SET`/`GET` is the storage's own code and, for writes, the Lua script that keeps the key index",
        "  (three server calls for an unindexed value: `ZADD NX` of the group index, then the groups index",
        "  for a new key or the key's postings for an existing one, then `SET`).",
        "- On an asyncio client every call is handed to the storage's private I/O loop thread (the SDK calls",
        "  storage from many short-lived loops, and an asyncio client belongs to one loop): another thread hop.",
        "- `server:` notes are `usec_per_call` from `INFO commandstats` (reset per group). `EVALSHA` is the whole",
        "  write script. A 1 MiB value never enters Lua: it is staged with `SET` in the same pipeline and",
        "  renamed into place by the script, so the 1 MiB `SET` figure mixes the staging and the raw rows.",
        "- `list` reads only the key indexes (no `SCAN`), so unrelated keys in the database should not matter;",
        "  the two databases live in the same server process and are measured interleaved.",
        "- Search: the SDK's `FileMemoryStore.search` (top 10) over the same notes on each storage; the",
        "  native index reads the postings of the query's terms and the first values, the keyword scan",
        "  lists and reads every note. `search_same_top_results` in the JSON: all three gave the same keys.",
        "- Snapshot save and restore time is mostly the SDK's capture, JSON and `load_snapshot`, the same on",
        "  both storages; the difference is the storage call.",
        "- Scale rows (`scale`): one group of N notes (`memory/scale/`, search-indexed, so each write also",
        "  re-posts its terms) and N immutable snapshots of one agent, at each N. `delete_session` is timed",
        "  once per N (it deletes the data). The keyword scan is left out at 100,000 notes (seconds per call).",
        "",
    ]
    return "\n".join(lines)


def _print_report(results: Results) -> None:
    width = max(len(c.name) for c in results.comparisons)
    print("\noperations (median / p90 / runs p25-p75):")
    for r in results.rows:
        print(
            f"  {r.name:<{width + 10}} {_fmt_us(r.median_us):>11} {_fmt_us(r.p90_us):>11} "
            f"{_fmt_us(r.runs_p25_us):>11} - {_fmt_us(r.runs_p75_us):<11}"
        )
    print("\ntargets and comparisons:")
    for c in results.comparisons:
        target = f"target {c.target}" if c.target else "no target"
        print(f"  {c.verdict:<4} {c.name:<{width}} {c.ratio:6.2f}x (runs {c.runs_p25:.2f}-{c.runs_p75:.2f}x, {target})")
    verdicts = [c.verdict for c in results.comparisons]
    print(f"\ntargets: {verdicts.count('PASS')} PASS, {verdicts.count('FAIL')} FAIL ({verdicts.count('info')} info)")


# -- main -----------------------------------------------------------------------------------------------


SEARCH_WORDS = (  # noqa: SIM905
    "oauth token refresh dark mode toggle deploy cluster valkey redis python agent memory user prefers "
    "tea coffee quarterly report budget review travel flight hotel meeting calendar invoice customer "
    "support ticket bug release branch merge test coverage latency throughput cache eviction"
).split()
SEARCH_QUERIES = ("user prefers dark mode", "quarterly budget review", "flight hotel travel", "cache eviction latency")


async def bench_search(port: int, cfg: Config, results: Results) -> None:
    """FileMemoryStore.search over N notes: LocalFileStorage (the SDK's keyword scan), ValkeyStorage
    with the native index, and ValkeyStorage without it (the same scan over the server)."""
    import random

    import valkey
    from strands.storage import LocalFileStorage
    from strands.vended_memory_stores.file_memory_store import FileMemoryStore

    from strands_valkey_session_manager.storage import ValkeyStorage

    notes = 500 if cfg.quick else 5_000
    rng = random.Random(7)
    client = valkey.Valkey("127.0.0.1", port, db=2)
    client.flushdb()
    indexed = ValkeyStorage(client, search_index=("memory/",))
    scanned = ValkeyStorage(valkey.Valkey("127.0.0.1", port, db=3))
    scanned.client.flushdb()
    tmp = tempfile.mkdtemp(prefix="svsm-search-bench-")
    try:
        local = LocalFileStorage(tmp)
        stores = {
            "LocalFileStorage (keyword scan)": FileMemoryStore(name="bench", storage=local),
            "ValkeyStorage, native index": FileMemoryStore(name="bench", storage=indexed),
            "ValkeyStorage, keyword scan": FileMemoryStore(name="bench", storage=scanned),
        }
        # Notes of 40 words drawn from a vocabulary of 2,000 (Zipf-like weights), the topic words among them.
        vocabulary = [*SEARCH_WORDS, *(f"w{n}" for n in range(2_000 - len(SEARCH_WORDS)))]
        weights = [1 / (rank + 10) for rank in range(len(vocabulary))]
        rng.shuffle(vocabulary)
        for i in range(notes):
            words = rng.choices(vocabulary, weights=weights, k=43)
            text = "# " + " ".join(words[:3]) + "\n" + " ".join(words[3:])
            key = f"note-{i:05}.md"
            for store in stores.values():
                await store._storage.write(key, text.encode())
        answers = {
            name: [[e.metadata["path"] for e in await s.search(q)] for q in SEARCH_QUERIES]
            for name, s in stores.items()
        }
        results.facts["search_notes"] = notes
        results.facts["search_same_top_results"] = len({json.dumps(a) for a in answers.values()}) == 1

        def op(store: Any) -> Op:
            return lambda i: store.search(SEARCH_QUERIES[i % len(SEARCH_QUERIES)])

        runs, calls = (3, 2) if cfg.quick else (4, 4)
        samples = await _interleaved({n: op(s) for n, s in stores.items()}, runs=runs, calls=calls, warmup=1)
        section = "search"
        for name, sample in samples.items():
            results.rows.append(sample.row(f"FileMemoryStore.search, {notes:,} notes, {name}", section))
        local_name, index_name, scan_name = list(stores)
        results.comparisons.append(
            _compare(
                f"search {notes:,} notes: LocalFileStorage keyword scan / ValkeyStorage native index",
                section,
                (local_name, samples[local_name]),
                (index_name, samples[index_name]),
                target=">= 20x",
                check=lambda ratio: ratio >= 20,
            )
        )
        results.comparisons.append(
            _compare(
                f"search {notes:,} notes: ValkeyStorage keyword scan / ValkeyStorage native index",
                section,
                (scan_name, samples[scan_name]),
                (index_name, samples[index_name]),
            )
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        indexed.close()
        scanned.close()
        client.close()


_WORDS = [
    "tea",
    "coffee",
    "lisbon",
    "paris",
    "editor",
    "dark",
    "mode",
    "launch",
    "report",
    "quarter",
    "budget",
    "travel",
    "train",
    "flight",
    "hotel",
    "music",
    "jazz",
    "piano",
    "garden",
    "tomato",
    "basil",
    "recipe",
    "soup",
    "bread",
    "running",
    "marathon",
    "knee",
    "doctor",
    "meeting",
    "monday",
    "friday",
    "project",
    "alpha",
    "beta",
    "release",
    "review",
    "deploy",
    "cluster",
    "valkey",
    "shard",
    "replica",
    "backup",
]


def _note(i: int) -> bytes:
    words = [_WORDS[(i * 7 + j * 13) % len(_WORDS)] for j in range(16)]
    return f"note {i}: {' '.join(words)}".encode()


async def bench_scale(port: int, cfg: Config, out: Results) -> None:  # noqa: PLR0915 (one table of operations)
    """Point operations, listing, search and snapshots with 1k/10k/100k keys.

    ValkeyStorage against raw commands and LocalFileStorage.
    """
    import tempfile

    import valkey
    from strands import Agent
    from strands._identifier import new_uuid7
    from strands.session import SnapshotSessionManager
    from strands.storage import LocalFileStorage
    from strands.storage.search.keyword import KeywordSearchStrategy

    from strands_valkey_session_manager import KeyQuery, ValkeySnapshotSessionManager, ValkeyStorage
    from strands_valkey_session_manager.scripted_model import ScriptedModel

    section = "scale"
    client: Any = valkey.Valkey("127.0.0.1", port, db=2)
    for size in cfg.scale_sizes:
        client.flushdb()
        n = f"{size:,}"
        storage = ValkeyStorage(client, search_index=("memory/",))
        with tempfile.TemporaryDirectory() as tmp:
            files = LocalFileStorage(tmp)
            keys = [f"memory/scale/note-{i:07d}.md" for i in range(size)]
            history = "session/s1/scopes/agent/a1/snapshots/immutable_history/"
            snapshot_keys = [f"{history}snapshot_{new_uuid7()}.json" for _ in range(size)]
            started = time.perf_counter()
            for target in (storage, files):
                for start in range(0, size, 64):
                    chunk = range(start, min(start + 64, size))
                    await asyncio.gather(*(target.write(keys[i], _note(i)) for i in chunk))
                    await asyncio.gather(*(target.write(snapshot_keys[i], b"{}") for i in chunk))
            out.facts[f"scale_{size}_populate_seconds"] = round(time.perf_counter() - started, 1)
            probe = keys[size // 2]
            value = _note(size // 2)
            client.set("raw:probe", value)
            ops: dict[str, Op] = {
                f"write ~100 B, {n} keys: ValkeyStorage": _op(storage.write, probe, value),
                f"write ~100 B, {n} keys: raw SET": _sync_op(client.set, "raw:probe", value),
                f"write ~100 B, {n} keys: LocalFileStorage": _op(files.write, probe, value),
                f"read ~100 B, {n} keys: ValkeyStorage": _op(storage.read, probe),
                f"read ~100 B, {n} keys: raw GET": _sync_op(client.get, "raw:probe"),
                f"read ~100 B, {n} keys: LocalFileStorage": _op(files.read, probe),
                f"list all {n}: ValkeyStorage": _op(storage.list, "memory/scale/"),
                f"list all {n}: LocalFileStorage": _op(files.list, "memory/scale/"),
                f"list page of 100 (KeyQuery), {n} keys: ValkeyStorage": _op(
                    storage.list, KeyQuery("memory/scale/", start_after=probe, limit=100)
                ),
                f"search, {n} notes: ValkeyStorage (native index)": _op(storage.search, "lisbon jazz marathon"),
            }
            if size <= 10_000:
                keyword = KeywordSearchStrategy()
                ops[f"search, {n} notes: LocalFileStorage (keyword scan)"] = _op(
                    keyword.search, files.namespace("memory"), "lisbon jazz marathon"
                )
            agent = Agent(agent_id="a1", model=ScriptedModel(["ok"]), callback_handler=None)
            agent.messages = [{"role": "user", "content": [{"text": f"message {i}"}]} for i in range(20)]
            ours = ValkeySnapshotSessionManager("s1", storage=storage)
            sdk_files = SnapshotSessionManager("s1", storage=files)
            for manager, name in ((ours, "ValkeySnapshotSessionManager"), (sdk_files, "SDK manager, LocalFileStorage")):
                ops[f"save latest, {n} snapshots: {name}"] = _op(
                    functools.partial(manager.save_snapshot, is_latest=True), agent
                )
                ops[f"restore latest, {n} snapshots: {name}"] = _op(manager.restore_snapshot, agent)
                ops[f"list_snapshot_ids(limit=100), {n} snapshots: {name}"] = _op(
                    functools.partial(manager.list_snapshot_ids, limit=100), agent
                )
            got = await _interleaved(ops, runs=cfg.scale_runs, calls=cfg.scale_calls, warmup=1)
            out.rows += [samples.row(name, section) for name, samples in got.items()]
            pairs = [
                ("write", "raw SET"),
                ("write", "LocalFileStorage"),
                ("read", "raw GET"),
                ("read", "LocalFileStorage"),
            ]
            for verb, other in pairs:
                subject = f"{verb} ~100 B, {n} keys: ValkeyStorage"
                baseline = f"{verb} ~100 B, {n} keys: {other}"
                out.comparisons.append(
                    _compare(
                        f"{verb}, {n} keys: ValkeyStorage / {other}",
                        section,
                        (subject, got[subject]),
                        (baseline, got[baseline]),
                    )
                )
            subject, baseline = f"list all {n}: ValkeyStorage", f"list all {n}: LocalFileStorage"
            out.comparisons.append(
                _compare(
                    f"list all {n}: ValkeyStorage / LocalFileStorage",
                    section,
                    (subject, got[subject]),
                    (baseline, got[baseline]),
                )
            )
            if size <= 10_000:
                subject = f"search, {n} notes: ValkeyStorage (native index)"
                baseline = f"search, {n} notes: LocalFileStorage (keyword scan)"
                out.comparisons.append(
                    _compare(
                        f"search, {n} notes: native index / LocalFileStorage keyword scan",
                        section,
                        (subject, got[subject]),
                        (baseline, got[baseline]),
                    )
                )
            for what in ("save latest", "restore latest", "list_snapshot_ids(limit=100)"):
                subject = f"{what}, {n} snapshots: ValkeySnapshotSessionManager"
                baseline = f"{what}, {n} snapshots: SDK manager, LocalFileStorage"
                out.comparisons.append(
                    _compare(
                        f"{what}, {n} snapshots: ValkeySnapshotSessionManager / SDK on LocalFileStorage",
                        section,
                        (subject, got[subject]),
                        (baseline, got[baseline]),
                    )
                )
            # delete_session is destructive: timed once each.
            for manager, name in ((ours, "ValkeySnapshotSessionManager"), (sdk_files, "SDK manager, LocalFileStorage")):
                t0 = time.perf_counter_ns()
                await manager.delete_session()
                once = Samples(runs=[[time.perf_counter_ns() - t0]])
                out.rows.append(once.row(f"delete_session, {n} snapshots: {name}", section, "timed once"))
            assert await storage.list("session/s1/") == [] and await files.list("session/s1/") == []
        storage.close()
    client.flushdb()
    client.close()


def _start_server() -> Any:
    from strands_valkey_session_manager.servers import ServerError, start_server

    try:
        return start_server("valkey9", extra_args=["--enable-debug-command", "local"])
    except ServerError:  # a server build without the option: the fallback populates with MSET
        return start_server("valkey9")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes and few runs (CI smoke)")
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT, help=f"default {DEFAULT_OUTPUT}")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    load_before = _load()
    started = time.perf_counter()
    server = _start_server()
    results = Results()
    try:
        import valkey

        admin: Any = valkey.Valkey(server.host, server.port, decode_responses=True)
        info = admin.info("server")
        admin.close()
        server_version = f"valkey {info.get('valkey_version', info.get('redis_version', '?'))}"
        print(f"{server_version} on port {server.port}; {'quick' if cfg.quick else 'full'} run")
        benches = (
            ("blobs", bench_blobs),
            ("list", bench_list),
            ("snapshots", bench_snapshots),
            ("search", bench_search),
            ("scale", bench_scale),
        )
        for name, bench in benches:
            t0 = time.perf_counter()
            asyncio.run(bench(server.port, cfg, results))
            print(f"  {name}: {time.perf_counter() - t0:.1f} s")
    finally:
        server.stop()
    data: dict[str, Any] = {
        "benchmark": "storage",
        "config": asdict(cfg),
        "machine": machine_facts(server_version, load_before),
        "seconds": round(time.perf_counter() - started, 1),
        "facts": results.facts,
        "results": [asdict(r) for r in results.rows],
        "comparisons": [asdict(c) | {"verdict": c.verdict} for c in results.comparisons],
    }
    _print_report(results)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / f"{RESULT_NAME}.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (args.output_dir / f"{RESULT_NAME}.md").write_text(render_markdown(data, results), encoding="utf-8")
    print(f"results written to {args.output_dir / RESULT_NAME}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
