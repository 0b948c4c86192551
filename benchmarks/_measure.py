"""Timing, statistics, client-side round-trip counting and server-side time per request.

Timing: every operation is timed on its own with ``time.perf_counter_ns``. Operations that are
compared with each other are measured *interleaved* in many short runs: run 1 of A, run 1 of B,
run 2 of A, ... with the order rotated every run, so a burst of noise from another process lands on
neighbouring runs of all of them instead of on whichever was measured last.

Round trips: ``AbstractConnection.send_packed_command`` is wrapped while an operation runs once;
valkey-py sends one request (a command, or a whole pipeline) per call, so one call is one round
trip. The packed requests are kept, which lets :func:`server_usec_per_request` replay them.
"""

from __future__ import annotations

import gc
import math
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import valkey
import valkey.connection

Op = Callable[[int], object]
"""An operation under test; it receives a running call index (use it for fresh message ids)."""


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values`` with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class Timing:
    """Latencies of one operation: every sample, and the median of each run."""

    samples_us: list[float] = field(default_factory=list)
    run_medians_us: list[float] = field(default_factory=list)

    @property
    def median_us(self) -> float:
        return statistics.median(self.samples_us)

    @property
    def p90_us(self) -> float:
        return percentile(self.samples_us, 0.9)

    @property
    def spread_us(self) -> tuple[float, float]:
        """25th and 75th percentile of the run medians: how far repeated runs disagree."""
        return percentile(self.run_medians_us, 0.25), percentile(self.run_medians_us, 0.75)

    def as_dict(self) -> dict[str, Any]:
        low, high = self.spread_us
        return {
            "median_us": round(self.median_us, 3),
            "p90_us": round(self.p90_us, 3),
            "run_median_p25_us": round(low, 3),
            "run_median_p75_us": round(high, 3),
            "run_median_min_us": round(min(self.run_medians_us), 3),
            "run_median_max_us": round(max(self.run_medians_us), 3),
            "runs": len(self.run_medians_us),
            "samples": len(self.samples_us),
        }


@dataclass(frozen=True)
class Ratio:
    """How two timings compare, from runs of both that ran interleaved (:func:`time_interleaved`).

    ``quiet`` divides the 25th percentiles of the two ops' run medians: the quiet end of each, which
    stands for an idle machine when other processes disturb some of the runs (targets use it).
    ``paired`` is the median over all runs of run median / run median of the two ops timed back to
    back; under steady load waiting for a CPU adds the same to both sides and pulls it towards 1.
    """

    quiet: float
    paired: float

    def as_dict(self) -> dict[str, float]:
        return {"quiet_runs": round(self.quiet, 4), "all_runs": round(self.paired, 4)}


def ratio(numerator: Timing, denominator: Timing) -> Ratio:
    pairs = zip(numerator.run_medians_us, denominator.run_medians_us, strict=True)
    return Ratio(
        quiet=numerator.spread_us[0] / denominator.spread_us[0],
        paired=statistics.median(a / b for a, b in pairs),
    )


def time_interleaved(ops: dict[str, Op], *, runs: int, per_run: int, warmup: int) -> dict[str, Timing]:
    """Time each op ``runs * per_run`` times, one run of each op after the other, rotating the order.

    Every run starts with ``warmup`` untimed calls. The garbage collector stays on (it is part of
    the cost of allocating code) but starts from a clean slate.
    """
    names = list(ops)
    timings = {name: Timing() for name in names}
    calls = dict.fromkeys(names, 0)
    gc.collect()
    for run in range(runs):
        shift = run % len(names)
        for name in names[shift:] + names[:shift]:
            op = ops[name]
            for _ in range(warmup):
                op(calls[name])
                calls[name] += 1
            samples: list[float] = []
            for _ in range(per_run):
                index = calls[name]
                start = time.perf_counter_ns()
                op(index)
                samples.append((time.perf_counter_ns() - start) / 1000)
                calls[name] += 1
            timings[name].samples_us.extend(samples)
            timings[name].run_medians_us.append(statistics.median(samples))
    return timings


# -- round trips ---------------------------------------------------------------------------------


@dataclass
class Requests:
    """Requests one operation put on the wire."""

    commands: list[str] = field(default_factory=list)
    packets: list[Any] = field(default_factory=list)

    @property
    def round_trips(self) -> int:
        return len(self.commands)


_patch_lock = threading.Lock()


def _first_command(packed: Any) -> str:
    """Name of the first command in a packed RESP request (bytes, or a list of chunks)."""
    chunk = packed[0] if isinstance(packed, (list, tuple)) and packed else packed
    head = bytes(chunk[:256]) if isinstance(chunk, (bytes, bytearray, memoryview)) else str(chunk)[:256].encode()
    parts = head.split(b"\r\n")
    return parts[2].decode(errors="replace").upper() if len(parts) > 2 else "?"


def _copy_packet(packed: Any) -> Any:
    if isinstance(packed, (list, tuple)):
        return [bytes(chunk) if isinstance(chunk, (bytearray, memoryview)) else chunk for chunk in packed]
    return bytes(packed) if isinstance(packed, (bytearray, memoryview)) else packed


@contextmanager
def recording_requests() -> Iterator[Requests]:
    """Record every request any valkey-py connection sends while the block runs."""
    record = Requests()
    cls = valkey.connection.AbstractConnection
    with _patch_lock:
        original = cls.__dict__["send_packed_command"]

        def send_packed_command(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
            record.commands.append(_first_command(command))
            record.packets.append(_copy_packet(command))
            return original(self, command, *args, **kwargs)

        cls.send_packed_command = send_packed_command  # type: ignore[method-assign]
        try:
            yield record
        finally:
            cls.send_packed_command = original  # type: ignore[method-assign]


def capture_requests(op: Op, index: int) -> Requests:
    """Run ``op`` once (on warm connections, so no handshake) and return what it sent."""
    with recording_requests() as record:
        op(index)
    return record


# -- replaying requests and reading server-side time --------------------------------------------


def replay(client: Any, packets: Sequence[Any]) -> Callable[[int], object]:
    """An op that sends pre-packed requests on one of ``client``'s connections and reads the replies.

    It measures the wire and the server without the Python code that built the request.
    """
    pool = client.connection_pool

    def op(_: int) -> object:
        conn = pool.get_connection("_")
        try:
            reply: object = None
            for packet in packets:
                conn.send_packed_command(packet, check_health=False)
                reply = conn.read_response()
            return reply
        finally:
            pool.release(conn)

    return op


def server_usec_per_request(client: Any, admin: Any, requests: Requests, repeat: int, groups: int = 5) -> float:
    """Server-side µs of the requests of one operation, from ``INFO commandstats``.

    Each request is replayed on its own, ``repeat`` times split into ``groups`` groups; before each
    group the stats are reset, after it the mean of the request's own top-level command is read (so
    commands a script calls inside do not count twice). The median of the group means is robust
    to a group that another process slowed down.
    """
    total = 0.0
    for command, packet in zip(requests.commands, requests.packets, strict=True):
        send = replay(client, [packet])
        per_group = max(1, repeat // groups)
        means: list[float] = []
        for _ in range(groups):
            admin.config_resetstat()
            for i in range(per_group):
                send(i)
            entry = admin.info("commandstats").get(f"cmdstat_{command.lower()}")
            if not entry:
                return math.nan
            means.append(float(entry["usec"]) / int(entry["calls"]))
        total += statistics.median(means)
    return total


def live_server_usec(admin: Any, op: Op, indexes: Sequence[int], command: str, groups: int = 5) -> float:
    """Server-side µs per call of ``command`` (e.g. ``evalsha``) while ``op`` runs for real on each
    of ``indexes`` (nothing replayed: an append with version checks takes its real path), from
    ``INFO commandstats``; the median of ``groups`` group means."""
    means: list[float] = []
    size = max(1, len(indexes) // groups)
    for start in range(0, size * groups, size):
        admin.config_resetstat()
        for i in indexes[start : start + size]:
            op(i)
        entry = admin.info("commandstats").get(f"cmdstat_{command}")
        if not entry:
            return math.nan
        means.append(float(entry["usec"]) / int(entry["calls"]))
    return statistics.median(means)
