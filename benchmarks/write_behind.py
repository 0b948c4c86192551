"""Event-loop blocking per message: the session manager's append inline vs with write-behind.

``python -m benchmarks.write_behind [--quick] [--output-dir DIR]`` starts its own Valkey 9, then
inside an asyncio event loop (as an agent streaming its messages would) calls the manager's
``append_message`` hook for N messages of ~1 KiB and times how long each call holds the loop.
Inline, every call waits for a round trip; with ``write_behind=True`` it only queues. The queue is
flushed afterwards and its drain time reported, so no write is left unaccounted. Results go to
``benchmarks/results/write_behind.{json,md}``. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import valkey
from strands import Agent

from benchmarks import _machine
from benchmarks._measure import percentile
from strands_valkey_session_manager import ValkeySessionManager
from strands_valkey_session_manager.scripted_model import ScriptedModel
from strands_valkey_session_manager.servers import start_server

RESULTS = Path(__file__).parent / "results"


def _run(url: str, write_behind: bool, count: int) -> dict[str, Any]:
    client = valkey.Valkey.from_url(url)
    session_id = f"wb-{write_behind}-{time.time_ns()}"
    manager = ValkeySessionManager(session_id=session_id, client=client, write_behind=write_behind)
    agent = Agent(agent_id="a", model=ScriptedModel([]), session_manager=manager, callback_handler=None)
    text = "x" * 1024

    async def stream() -> list[float]:
        held = []
        for i in range(count):
            message: Any = {"role": "user" if i % 2 == 0 else "assistant", "content": [{"text": text}]}
            started = time.perf_counter_ns()
            manager.append_message(message, agent)
            held.append((time.perf_counter_ns() - started) / 1000)
            await asyncio.sleep(0)  # let the loop run other tasks between messages
        return held

    held = asyncio.run(stream())
    drained_at = time.perf_counter()
    manager.flush()
    drain_ms = (time.perf_counter() - drained_at) * 1000
    stored = len(manager.list_messages(session_id, "a"))
    manager.close()
    client.close()
    return {
        "write_behind": write_behind,
        "messages": count,
        "stored": stored,
        "loop_blocked_median_us": statistics.median(held),
        "loop_blocked_p99_us": percentile(held, 0.99),
        "loop_blocked_total_ms": sum(held) / 1000,
        "flush_after_ms": drain_ms,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; the exit status does not depend on the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer messages (CI smoke)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    count = 300 if args.quick else 3000
    with start_server("valkey9") as server:
        rows = [_run(server.url, wb, count) for wb in (False, True, False, True)][2:]  # first pair warms up
        info = valkey.Valkey.from_url(server.url).info()
        machine = _machine.describe(info, None)
    inline, behind = rows
    ratio = inline["loop_blocked_median_us"] / behind["loop_blocked_median_us"]
    lines = [
        "# Event-loop blocking per message: inline vs write-behind",
        "",
        f"`python -m benchmarks.write_behind{' --quick' if args.quick else ''}`: {count} messages of 1 KiB appended "
        "through `ValkeySessionManager.append_message` from inside an asyncio loop, one Valkey 9 on loopback.",
        "",
        "| mode | loop blocked per message, median | p99 | total blocked | flush afterwards | stored |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        mode = "write_behind=True" if row["write_behind"] else "inline"
        lines.append(
            f"| {mode} | {row['loop_blocked_median_us']:.1f} µs | {row['loop_blocked_p99_us']:.1f} µs | "
            f"{row['loop_blocked_total_ms']:.1f} ms | {row['flush_after_ms']:.1f} ms | {row['stored']} |"
        )
    lines += [
        "",
        f"Write-behind holds the loop {ratio:.1f}x less per message; every message is stored after the flush.",
        "",
        f"Machine: {machine.get('cpu')}, load average {machine.get('load_average_start')}, "
        f"Python {machine.get('python')}.",
    ]
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "write_behind.json").write_text(json.dumps({"rows": rows, "machine": machine}, indent=2))
    (args.output_dir / "write_behind.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
