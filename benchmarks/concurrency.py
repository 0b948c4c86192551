"""Concurrency: 1, 4 and 16 processes running real agents against one server and a 3-primary cluster.

Run from the repository root with the dev venv active::

    python -m benchmarks.concurrency            # full: 20 turns per process, about 2 minutes
    python -m benchmarks.concurrency --quick    # 1 and 4 processes, 3 turns

Each process runs its own ``strands.Agent`` (``ScriptedModel``: no network) on a
``ValkeySessionManager`` over valkey-py, in a session of its own: it creates the session, plays
``turns`` prompts (each turn appends the user message and the reply and updates the agent), then
restores the agent in a new manager, ``restores`` times. Every repository call the SDK makes is
timed in the process that makes it; all processes start at the same instant. Per operation:
calls per second over all processes (calls / the span from the first start to the last end of
that phase; median over repetitions), p50 and p99 of the single calls (pooled over repetitions).
Both topologies run side by side and their phases alternate, so load from other processes on
the machine falls on both. ``append`` is ``create_message``; ``update_agent``
is the agent state write after each turn; ``restore`` is a whole new manager plus ``Agent`` (reads
of session, agent and messages). ``python -m benchmarks.peers`` runs this too and puts its table
in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
OPERATIONS = ("append", "update_agent", "restore")
TEXT = ("The quick brown fox jumps over the lazy dog. " * 24)[:1000]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- worker (one process) ----------------------------------------------------------------------


def _client(target: dict[str, Any]) -> Any:
    import valkey
    import valkey.cluster

    if target["cluster"]:
        nodes = [valkey.cluster.ClusterNode(host, port) for host, port in target["nodes"]]
        return valkey.cluster.ValkeyCluster(startup_nodes=nodes)
    host, port = target["nodes"][0]
    return valkey.Valkey(host, port)


def _timed(samples: dict[str, list[float]], name: str, method: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter_ns()
        try:
            return method(*args, **kwargs)
        finally:
            samples.setdefault(name, []).append((time.perf_counter_ns() - t0) / 1000)

    return wrapper


def worker(target: dict[str, Any], index: int, turns: int, restores: int) -> dict[str, Any]:
    """One process's run: returns its samples (µs) and phase spans (wall-clock seconds). Says
    ``ready`` once imported and connected, then starts at the instant the parent sends."""
    import warnings

    from strands import Agent

    from strands_valkey_session_manager import ValkeySessionManager
    from strands_valkey_session_manager.scripted_model import ScriptedModel

    warnings.filterwarnings("ignore")
    client = _client(target)
    session_id = f"conc-{target['run']}-{index}"
    samples: dict[str, list[float]] = {}
    spans: dict[str, list[float]] = {}

    def manager() -> ValkeySessionManager:
        m = ValkeySessionManager(session_id=session_id, client=client, check_versions=True)
        m.create_message = _timed(samples, "append", m.create_message)  # type: ignore[method-assign]
        m.update_agent = _timed(samples, "update_agent", m.update_agent)  # type: ignore[method-assign]
        return m

    # Untimed warm-up in a session of its own: connections open and scripts loaded on every node,
    # as in a service that has already served a conversation (else the first calls of a phase,
    # a good part of the samples with one process, measure connection and script setup).
    warm = f"{session_id}-warm"
    warm_agent = Agent(
        model=ScriptedModel(["warm"] * 2),
        session_manager=ValkeySessionManager(session_id=warm, client=client, check_versions=True),
        agent_id="agent",
        callback_handler=None,
    )
    for _ in range(2):
        warm_agent("warm")
    Agent(
        model=ScriptedModel([]),
        session_manager=ValkeySessionManager(session_id=warm, client=client, check_versions=True),
        agent_id="agent",
        callback_handler=None,
    )
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    while time.time() < start_at:
        time.sleep(0.001)
    t_conv = time.time()
    agent = Agent(
        model=ScriptedModel([f"{TEXT} ({i})" for i in range(turns)]),
        session_manager=manager(),
        agent_id="agent",
        callback_handler=None,
    )
    for i in range(turns):
        agent(f"{TEXT} [{i}]")
    spans["append"] = spans["update_agent"] = [t_conv, time.time()]
    t_restore = time.time()
    for _ in range(restores):
        t0 = time.perf_counter_ns()
        restored = Agent(model=ScriptedModel([]), session_manager=manager(), agent_id="agent", callback_handler=None)
        samples.setdefault("restore", []).append((time.perf_counter_ns() - t0) / 1000)
        if len(restored.messages) != 2 * turns:
            raise RuntimeError(f"restored {len(restored.messages)} of {2 * turns} messages")
    spans["restore"] = [t_restore, time.time()]
    client.close()
    return {"samples": samples, "spans": spans}


# -- parent ------------------------------------------------------------------------------------


def _phase(target: dict[str, Any], processes: int, turns: int, restores: int) -> dict[str, Any]:
    args = json.dumps({"target": target, "turns": turns, "restores": restores})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.concurrency", "--worker", str(i), args],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(processes)
    ]
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            _, err = proc.communicate(timeout=60)
            raise RuntimeError(f"worker failed to start: {err[-2000:]}")
    start_at = time.time() + 0.2
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"{start_at}\n")
        proc.stdin.flush()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"worker failed ({proc.returncode}): {err[-2000:]}")
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    samples: dict[str, list[float]] = {}
    per_second: dict[str, float] = {}
    for op in OPERATIONS:
        samples[op] = [v for o in outputs for v in o["samples"].get(op, [])]
        spans = [o["spans"][op] for o in outputs]
        wall = max(sp[1] for sp in spans) - min(sp[0] for sp in spans)
        per_second[op] = len(samples[op]) / wall if wall > 0 else math.nan
    return {"samples": samples, "per_second": per_second}


def run(quick: bool = False, say: Any = print) -> dict[str, Any]:
    """Every topology and process count; the result as a dict (also what the JSON file holds)."""
    from tests.servers import start_cluster

    from strands_valkey_session_manager.servers import start_server

    counts = (1, 4) if quick else (1, 4, 16)
    turns, restores = (3, 3) if quick else (20, 10)
    repetitions = 1 if quick else 2
    started = time.perf_counter()
    # Both topologies run side by side, their phases alternating (order swapped each repetition),
    # so a burst of load from other processes lands on both instead of on whichever ran last.
    handles: dict[str, Any] = {}
    pooled: dict[tuple[str, int], dict[str, Any]] = {}
    try:
        handles["standalone"] = start_server("valkey9")
        handles["cluster"] = start_cluster("valkey9", primaries=3)
        nodes = {
            "standalone": [(handles["standalone"].host, handles["standalone"].port)],
            "cluster": handles["cluster"].startup_nodes,
        }
        for rep in range(repetitions):
            for processes in counts:
                order = ("standalone", "cluster") if (rep + processes) % 2 == 0 else ("cluster", "standalone")
                for topology in order:
                    target = {"cluster": topology == "cluster", "nodes": nodes[topology], "run": f"{rep}-{processes}"}
                    t0 = time.perf_counter()
                    phase = _phase(target, processes, turns, restores)
                    slot = pooled.setdefault((topology, processes), {"samples": {}, "per_second": {}})
                    for op in OPERATIONS:
                        slot["samples"].setdefault(op, []).extend(phase["samples"][op])
                        slot["per_second"].setdefault(op, []).append(phase["per_second"][op])
                    say(f"  concurrency {topology}, {processes} processes: {time.perf_counter() - t0:.1f} s")
    finally:
        for handle in handles.values():
            handle.stop()
    results: list[dict[str, Any]] = []
    for (topology, processes), slot in pooled.items():
        for op in OPERATIONS:
            values = slot["samples"][op]
            results.append(
                {
                    "topology": topology,
                    "operation": op,
                    "processes": processes,
                    "calls": len(values),
                    "per_second": round(statistics.median(slot["per_second"][op]), 1),
                    "p50_us": round(statistics.median(values), 1),
                    "p99_us": round(percentile(values, 0.99), 1),
                }
            )
    ratios = []
    by = {(r["topology"], r["processes"], r["operation"]): r for r in results}
    for processes in counts:
        for op in OPERATIONS:
            s, c = by[("standalone", processes, op)], by[("cluster", processes, op)]
            ratios.append(
                {
                    "processes": processes,
                    "operation": op,
                    "p50_ratio": round(c["p50_us"] / s["p50_us"], 2),
                    "p99_ratio": round(c["p99_us"] / s["p99_us"], 2),
                    "throughput_ratio": round(s["per_second"] / c["per_second"], 2)
                    if s["per_second"] and c["per_second"]
                    else None,
                }
            )
    return {
        "turns": turns,
        "restores": restores,
        "process_counts": list(counts),
        "rows": results,
        "cluster_vs_standalone": ratios,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def fmt(us: float) -> str:
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def table(data: dict[str, Any]) -> list[str]:
    out = [
        "| operation | processes | standalone calls/s | standalone p50 / p99 | cluster calls/s | cluster p50 / p99 "
        "| cluster / standalone (p50, p99) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    by = {(r["topology"], r["processes"], r["operation"]): r for r in data["rows"]}
    ratio = {(r["processes"], r["operation"]): r for r in data["cluster_vs_standalone"]}
    for op in OPERATIONS:
        for processes in data["process_counts"]:
            s, c = by[("standalone", processes, op)], by[("cluster", processes, op)]
            r = ratio[(processes, op)]
            out.append(
                f"| {op} | {processes} | {s['per_second']:,.0f} | {fmt(s['p50_us'])} / {fmt(s['p99_us'])} | "
                f"{c['per_second']:,.0f} | {fmt(c['p50_us'])} / {fmt(c['p99_us'])} | "
                f"{r['p50_ratio']}x, {r['p99_ratio']}x |"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        spec = json.loads(args.spec)
        result = worker(spec["target"], args.worker, spec["turns"], spec["restores"])
        print(json.dumps(result))
        return 0
    data = run(args.quick)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "concurrency.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    lines = ["# Concurrency", "", f"`python -m benchmarks.concurrency{' --quick' if args.quick else ''}`", ""]
    lines += table(data)
    (args.output_dir / "concurrency.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(table(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
