"""The core benchmark: floor, append, restore against the SDK's file store, keyspace independence.

Every number comes from one Valkey 9 server this module starts itself (loopback, no persistence)
and one ``valkey.Valkey(decode_responses=False)`` client shared by the raw commands and the
repository, so both pay the same client library costs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import valkey
from strands.session.file_session_manager import FileSessionManager
from strands.session.session_repository import SessionRepository
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager.repository import ValkeySessionRepository
from strands_valkey_session_manager.servers import ServerProcess, start_server

from . import _machine
from ._measure import (
    Op,
    Ratio,
    Requests,
    Timing,
    capture_requests,
    live_server_usec,
    ratio,
    replay,
    server_usec_per_request,
    time_interleaved,
)

VALUE_BYTES = 1024
AGENT_ID = "agent"
RAW_KEY = b"bench:raw"
# Prose rather than one repeated byte, so nothing downstream can shortcut it.
_PROSE = (
    "Valkey keeps every session in one hash slot, so a restore reads one sorted set and one hash. "
    "The agent asked for the weather in three cities and compared the forecasts line by line. "
)
TEXT = (_PROSE * (VALUE_BYTES // len(_PROSE) + 1))[:VALUE_BYTES]

# Targets from the brief; evaluated and printed, never asserted.
APPEND_RATIO_MAX = 1.3
RESTORE_SPEEDUP_MIN = 20.0
RESTORE_SPEEDUP_AT = 10_000
KEYSPACE_DRIFT_MAX = 0.20


@dataclass(frozen=True)
class Config:
    """Sizes and repetitions; ``quick`` is the CI smoke variant."""

    quick: bool
    micro_runs: int
    micro_ops: int
    micro_warmup: int
    rb_requests: int
    rb_repeats: int
    # (messages, runs, restores per run)
    restore_plan: tuple[tuple[int, int, int], ...]
    keyspace_keys: int
    keyspace_messages: int
    keyspace_runs: int
    keyspace_per_run: int

    @classmethod
    def default(cls) -> Config:
        return cls(
            quick=False,
            micro_runs=60,
            micro_ops=150,
            micro_warmup=30,
            rb_requests=20_000,
            rb_repeats=3,
            restore_plan=((100, 40, 3), (1_000, 15, 1), (10_000, 7, 1)),
            keyspace_keys=1_000_000,
            keyspace_messages=100,
            keyspace_runs=150,
            keyspace_per_run=2,
        )

    @classmethod
    def quick_mode(cls) -> Config:
        return cls(
            quick=True,
            micro_runs=16,
            micro_ops=60,
            micro_warmup=20,
            rb_requests=5_000,
            rb_repeats=1,
            restore_plan=((100, 12, 2), (1_000, 6, 1)),
            keyspace_keys=100_000,
            keyspace_messages=100,
            keyspace_runs=40,
            keyspace_per_run=2,
        )


@dataclass
class Row:
    """One line of the results table."""

    section: str
    name: str
    timing: Timing | None = None
    # Throughput figures (redis-benchmark) have per-run values but no per-request distribution.
    throughput: bool = False
    round_trips: int | None = None
    commands: list[str] = field(default_factory=list)
    server_us: float | None = None
    compared: str = ""
    ratio: Ratio | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"section": self.section, "name": self.name}
        if self.timing is not None:
            data.update(self.timing.as_dict())
            if self.throughput:
                data.pop("p90_us")
        data["round_trips"] = self.round_trips
        data["commands"] = self.commands
        data["server_us_per_op"] = None if self.server_us is None else round(self.server_us, 3)
        data["compared"] = self.compared
        data["ratio"] = None if self.ratio is None else self.ratio.as_dict()
        return data


@dataclass
class Target:
    """A goal from the brief and whether this run met it (``passed`` is None when not measured)."""

    name: str
    goal: str
    measured: str
    passed: bool | None
    value: float | None = None

    @property
    def verdict(self) -> str:
        return "n/a" if self.passed is None else ("PASS" if self.passed else "FAIL")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


@dataclass
class Results:
    machine: dict[str, Any]
    config: Config
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "benchmark": "core",
            "machine": self.machine,
            "config": asdict(self.config),
            "results": [row.as_dict() for row in self.rows],
            "targets": [target.as_dict() for target in self.targets],
            "notes": self.notes,
            "elapsed_s": round(self.elapsed_s, 1),
        }


def _say(message: str) -> None:
    print(message, flush=True)


def message(message_id: int) -> SessionMessage:
    """A ~1 KiB text message as the SDK stores it."""
    role: Literal["user", "assistant"] = "user" if message_id % 2 == 0 else "assistant"
    return SessionMessage(message={"role": role, "content": [{"text": TEXT}]}, message_id=message_id)


def new_session(repo: SessionRepository, session_id: str) -> None:
    """A session with one agent, through the store's own API."""
    if repo.read_session(session_id) is None:
        repo.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))
    repo.create_agent(session_id, SessionAgent(agent_id=AGENT_ID, state={}, conversation_manager_state={}))


def restore_op(repo: SessionRepository, session_id: str, expected: int) -> Op:
    """What the SDK does when an agent comes back: read the agent, then all of its messages."""

    def restore() -> tuple[SessionAgent | None, list[SessionMessage]]:
        return repo.read_agent(session_id, AGENT_ID), repo.list_messages(session_id, AGENT_ID, offset=0)

    def op(_: int) -> object:
        return restore()

    agent, messages = restore()
    if agent is None or len(messages) != expected:
        raise RuntimeError(f"{type(repo).__name__} restored {len(messages)} messages of {session_id}, not {expected}")
    return op


def redis_benchmark_binary() -> str | None:
    found = shutil.which("redis-benchmark")
    if found:
        return found
    return "/usr/bin/redis-benchmark" if Path("/usr/bin/redis-benchmark").exists() else None


class Bench:
    """Runs the four measurements against one server and collects rows and targets."""

    def __init__(self, server: ServerProcess, config: Config) -> None:
        self.server = server
        self.config = config
        # Typed Any: valkey-py's annotations mix in the asyncio client's awaitables.
        self.client: Any = valkey.Valkey(server.host, server.port, decode_responses=False)
        self.admin: Any = valkey.Valkey(server.host, server.port, decode_responses=True)
        # Version checks on, as the session manager has them by default.
        self.repo = ValkeySessionRepository(self.client, check_versions=True)
        # The replay diagnostic sends one captured append again and again: without version checks
        # each replay is an overwrite on the write path (with them, the repeat-detection path).
        self.unchecked = ValkeySessionRepository(self.client)
        self.rows: list[Row] = []
        self.targets: list[Target] = []
        self.notes: list[str] = []

    def close(self) -> None:
        self.client.close()
        self.admin.close()

    # -- helpers ----------------------------------------------------------------------------------

    def probe(self, op: Op, index: int, repeat: int, client: Any = None) -> tuple[Requests, float]:
        """Requests one call of ``op`` sends (on ``client``, default ours), and their mean server-side time."""
        requests = capture_requests(op, index)
        return requests, server_usec_per_request(client or self.client, self.admin, requests, repeat)

    def add(self, section: str, name: str, timing: Timing | None, requests: Requests | None = None, **kw: Any) -> Row:
        row = Row(section, name, timing, **kw)
        if requests is not None:
            row.round_trips = requests.round_trips
            row.commands = requests.commands
        self.rows.append(row)
        return row

    # -- 1 + 2: floor and append ------------------------------------------------------------------

    def floor_and_append(self) -> None:
        cfg = self.config
        value = TEXT.encode()
        session_id = "bench-append"
        new_session(self.repo, session_id)
        self.client.set(RAW_KEY, value)

        # Message ids are fresh on every call, so each create_message is a real append.
        total = cfg.micro_runs * (cfg.micro_ops + cfg.micro_warmup) + 10
        messages = [message(i) for i in range(total + 400)]

        def raw_set(_: int) -> object:
            return self.client.set(RAW_KEY, value)

        def raw_get(_: int) -> object:
            return self.client.get(RAW_KEY)

        def append(i: int) -> object:
            self.repo.create_message(session_id, AGENT_ID, messages[i])
            return None

        new_session(self.unchecked, "bench-append-replay")

        def append_unchecked(i: int) -> object:
            self.unchecked.create_message("bench-append-replay", AGENT_ID, messages[i])
            return None

        # Warm connection and scripts, then capture the exact requests for the replay diagnostics.
        for i in range(3):
            raw_set(i)
            raw_get(i)
            append(total - i)
        set_requests, set_server = self.probe(raw_set, 0, 500)
        get_requests, get_server = self.probe(raw_get, 0, 500)
        append_requests = capture_requests(append, total)
        replay_requests, replay_server = self.probe(append_unchecked, 0, 500)
        # Live appends (fresh ids, version checks on): the script's own mean from INFO commandstats.
        append_server = live_server_usec(self.admin, append, range(total + 1, total + 400), "evalsha")

        ops: dict[str, Op] = {
            "set": raw_set,
            "get": raw_get,
            "append": append,
            "replay_set": replay(self.client, set_requests.packets),
            "replay_append": replay(self.client, replay_requests.packets),
        }
        _say(f"  timing SET, GET, create_message: {cfg.micro_runs} interleaved runs of {cfg.micro_ops} calls")
        t = time_interleaved(ops, runs=cfg.micro_runs, per_run=cfg.micro_ops, warmup=cfg.micro_warmup)

        floor = "1. floor (valkey-py)"
        self.add(floor, "SET 1 KiB value", t["set"], set_requests, server_us=set_server)
        self.add(floor, "GET 1 KiB value", t["get"], get_requests, server_us=get_server)
        self.redis_benchmark(floor)

        ours = "2. append"
        append_ratio = ratio(t["append"], t["set"])
        self.add(
            ours,
            "create_message, 1 KiB text",
            t["append"],
            append_requests,
            server_us=append_server,
            compared=f"{append_ratio.quiet:.2f}x SET (all runs {append_ratio.paired:.2f}x)",
            ratio=append_ratio,
        )
        replayed = ratio(t["replay_append"], t["replay_set"])
        self.add(
            ours,
            "  diag: SET request pre-packed, replayed raw",
            t["replay_set"],
            set_requests,
            server_us=set_server,
        )
        self.add(
            ours,
            "  diag: create_message request pre-packed, replayed raw (an overwrite, no version check)",
            t["replay_append"],
            replay_requests,
            server_us=replay_server,
            compared=f"{replayed.quiet:.2f}x replayed SET (all runs {replayed.paired:.2f}x)",
            ratio=replayed,
        )
        self.targets.append(
            Target(
                "append vs raw SET",
                f"<= {APPEND_RATIO_MAX}x",
                f"{append_ratio.quiet:.2f}x (quiet runs; all runs {append_ratio.paired:.2f}x)",
                append_ratio.quiet <= APPEND_RATIO_MAX,
                round(append_ratio.quiet, 3),
            )
        )
        self.targets.append(
            Target(
                "append round trips",
                "1",
                f"{append_requests.round_trips} ({', '.join(append_requests.commands)})",
                append_requests.round_trips == 1,
                append_requests.round_trips,
            )
        )

    def redis_benchmark(self, section: str) -> None:
        binary = redis_benchmark_binary()
        if binary is None:
            self.notes.append("redis-benchmark not found: its reference rows are missing")
            return
        for clients in (50, 1):
            args = [binary, "-h", self.server.host, "-p", str(self.server.port)]
            args += ["-t", "set", "-d", str(VALUE_BYTES), "-n", str(self.config.rb_requests), "-q"]
            if clients != 50:  # 50 is redis-benchmark's default; the reference command leaves it out
                args += ["-c", str(clients)]
            per_op: list[float] = []
            for _ in range(self.config.rb_repeats):
                out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
                found = re.findall(r"SET: ([\d.]+) requests per second", out.stdout)
                if out.returncode != 0 or not found:
                    self.notes.append(
                        f"redis-benchmark -c {clients} failed: {(out.stderr or out.stdout).strip()[:200]}"
                    )
                    break
                per_op.append(1e6 / float(found[-1]))
            if not per_op:
                continue
            timing = Timing(samples_us=per_op, run_medians_us=per_op)
            label = "50 connections, 1e6 / (requests/s)" if clients == 50 else "1 connection, 1e6 / (requests/s)"
            row = self.add(section, f"redis-benchmark -t set -d 1024 ({label})", timing, throughput=True)
            row.commands = ["SET"]
            row.round_trips = 1

    # -- 3: restore against the SDK's file store --------------------------------------------------

    def restore(self, workdir: Path) -> None:
        cfg = self.config
        section = "3. restore (read_agent + list_messages)"
        speedups: dict[int, Ratio] = {}
        round_trips: dict[int, int] = {}
        for size, runs, per_run in cfg.restore_plan:
            session_id = f"bench-restore-{size}"
            files = FileSessionManager(session_id=session_id, storage_dir=str(workdir))
            started = time.perf_counter()
            for repo in (self.repo, files):
                new_session(repo, session_id)
                for i in range(size):
                    repo.create_message(session_id, AGENT_ID, message(i))
            _say(f"  {size:,} messages written to both stores in {time.perf_counter() - started:.1f} s")

            ours = restore_op(self.repo, session_id, size)
            theirs = restore_op(files, session_id, size)
            # restore_op's own check call was the warm-up.
            t = time_interleaved({"ours": ours, "file": theirs}, runs=runs, per_run=per_run, warmup=0)
            requests, server = self.probe(ours, 0, max(5, min(50, 5_000 // size)))
            speedup = ratio(t["file"], t["ours"])
            speedups[size] = speedup
            round_trips[size] = requests.round_trips
            self.add(
                section,
                f"ours, {size:,} messages",
                t["ours"],
                requests,
                server_us=server,
                compared=f"{speedup.quiet:.1f}x faster than file (all runs {speedup.paired:.1f}x)",
                ratio=speedup,
            )
            self.add(section, f"FileSessionManager, {size:,} messages", t["file"])

        if RESTORE_SPEEDUP_AT in speedups:
            at = speedups[RESTORE_SPEEDUP_AT]
            self.targets.append(
                Target(
                    f"restore {RESTORE_SPEEDUP_AT:,}: ours vs FileSessionManager",
                    f">= {RESTORE_SPEEDUP_MIN:.0f}x faster",
                    f"{at.quiet:.1f}x (quiet runs; all runs {at.paired:.1f}x)",
                    at.quiet >= RESTORE_SPEEDUP_MIN,
                    round(at.quiet, 2),
                )
            )
        else:
            largest = max(speedups)
            self.targets.append(
                Target(
                    f"restore {RESTORE_SPEEDUP_AT:,}: ours vs FileSessionManager",
                    f">= {RESTORE_SPEEDUP_MIN:.0f}x faster",
                    f"not measured in --quick (at {largest:,}: {speedups[largest].quiet:.1f}x)",
                    None,
                )
            )
        self.targets.append(
            Target(
                "restore round trips",
                "2 at every size",
                ", ".join(f"{n:,}: {rt}" for n, rt in round_trips.items()),
                all(rt == 2 for rt in round_trips.values()),
            )
        )

    # -- 4: restore with a big unrelated keyspace -------------------------------------------------

    def fill_keyspace(self, count: int) -> str:
        """Add ``count`` unrelated keys: DEBUG POPULATE when allowed, else pipelined MSETs."""
        try:
            self.admin.execute_command("DEBUG", "POPULATE", count, "unrelated", 16)
            return "DEBUG POPULATE"
        except valkey.ResponseError:
            pass
        batch = 1_000
        pipe = self.client.pipeline(transaction=False)
        for first in range(0, count, batch):
            pairs: dict[bytes, bytes] = {
                b"unrelated:%d" % i: b"value:%d" % i for i in range(first, min(first + batch, count))
            }
            pipe.mset(pairs)
            if len(pipe) >= 20:
                pipe.execute()
        pipe.execute()
        return "pipelined MSET"

    def keyspace(self) -> None:
        """Restore the same session from database 1 (nothing else in it) and database 0 (plus N keys).

        Both live on the one server; the two restores are timed in interleaved runs, so a noisy
        stretch of the machine hits both instead of faking a difference.
        """
        cfg = self.config
        section = "4. keyspace independence"
        session_id = "bench-keyspace"
        size = cfg.keyspace_messages
        self.admin.flushall()
        started = time.perf_counter()
        how = self.fill_keyspace(cfg.keyspace_keys)
        _say(f"  {cfg.keyspace_keys:,} unrelated keys added with {how} in {time.perf_counter() - started:.1f} s")

        empty_client: Any = valkey.Valkey(self.server.host, self.server.port, db=1, decode_responses=False)
        try:
            empty_repo = ValkeySessionRepository(empty_client)
            for repo in (self.repo, empty_repo):
                new_session(repo, session_id)
                for i in range(size):
                    repo.create_message(session_id, AGENT_ID, message(i))
            loaded_op = restore_op(self.repo, session_id, size)
            empty_op = restore_op(empty_repo, session_id, size)
            loaded_keys = int(self.client.dbsize())
            empty_keys = int(empty_client.dbsize())
            for i in range(10):
                empty_op(i)
                loaded_op(i)
            t = time_interleaved(
                {"empty": empty_op, "loaded": loaded_op},
                runs=cfg.keyspace_runs,
                per_run=cfg.keyspace_per_run,
                warmup=0,
            )
            requests_empty, server_empty = self.probe(empty_op, 0, 50, client=empty_client)
            requests_loaded, server_loaded = self.probe(loaded_op, 0, 50)
        finally:
            empty_client.close()

        versus = ratio(t["loaded"], t["empty"])
        drift = versus.quiet - 1
        self.add(
            section,
            f"ours, restore {size:,} messages, {empty_keys:,} keys in the database",
            t["empty"],
            requests_empty,
            server_us=server_empty,
        )
        self.add(
            section,
            f"ours, restore {size:,} messages, {loaded_keys:,} keys in the database",
            t["loaded"],
            requests_loaded,
            server_us=server_loaded,
            compared=f"{drift:+.1%} vs {empty_keys:,} keys (all runs {versus.paired - 1:+.1%})",
            ratio=versus,
        )
        self.targets.append(
            Target(
                f"restore {size:,} with {cfg.keyspace_keys:,} unrelated keys vs empty",
                f"within {KEYSPACE_DRIFT_MAX:.0%}",
                f"{drift:+.1%} (quiet runs; all runs {versus.paired - 1:+.1%})",
                abs(drift) <= KEYSPACE_DRIFT_MAX,
                round(drift, 4),
            )
        )
        self.targets.append(
            Target(
                "round trips with a big keyspace",
                "2, as without it",
                f"{requests_loaded.round_trips} vs {requests_empty.round_trips}",
                requests_loaded.round_trips == requests_empty.round_trips == 2,
                requests_loaded.round_trips,
            )
        )


def _first_float(text: str) -> float:
    try:
        return float(text.split(maxsplit=1)[0])
    except (ValueError, IndexError):
        return 0.0


@contextmanager
def valkey9_server() -> Iterator[ServerProcess]:
    """A Valkey 9 server on loopback without persistence; DEBUG allowed from loopback for POPULATE."""
    server = start_server("valkey9", extra_args=("--enable-debug-command", "local"))
    try:
        yield server
    finally:
        server.stop()


def run(config: Config, *, progress: Callable[[str], None] = _say) -> Results:
    """Run every measurement once and return rows, targets and machine facts."""
    started = time.perf_counter()
    with valkey9_server() as server, tempfile.TemporaryDirectory(prefix="svsm-bench-files-") as tmp:
        bench = Bench(server, config)
        try:
            info = bench.admin.info("server")
            info["executable"] = str(server.binary)
            machine = _machine.describe(info, redis_benchmark_binary())
            progress(f"{machine['server']} on {server.host}:{server.port}, {machine['cpu']}")
            progress("[1/3] floor and append")
            bench.floor_and_append()
            progress("[2/3] restore: ours vs FileSessionManager")
            bench.restore(Path(tmp))
            progress("[3/3] restore with a big unrelated keyspace")
            bench.keyspace()
        finally:
            bench.close()
    machine["load_average_end"] = _machine.load_average()
    results = Results(machine, config, bench.rows, bench.targets, bench.notes)
    busiest = max(_first_float(machine["load_average_start"]), _first_float(machine["load_average_end"]))
    if busiest > 0.5 * (machine["usable_cpus"] or 1):
        results.notes.append(
            f"other processes were using the CPUs (1-minute load average up to {busiest:.2f} on "
            f"{machine['usable_cpus']} CPUs): absolute times are noisier than on an idle machine; ratios of "
            "interleaved measurements hold up better"
        )
    results.elapsed_s = time.perf_counter() - started
    return results
