"""Cost of sealed records: append and restore of 1 KiB messages with none / zstd / AES-GCM / both.

Run from the repository root with the dev venv active::

    python -m benchmarks.sealing_bench            # 1,000 messages, 7 interleaved runs (~30 s)
    python -m benchmarks.sealing_bench --quick    # 200 messages, 2 runs (smoke)

It starts its own Valkey 9 server (``servers.start_server``), prints a table and writes
``benchmarks/results/sealing.json`` and ``sealing.md`` (``--output-dir`` to write elsewhere). Each run
appends the messages one ``create_message`` at a time into a new session per mode, then restores it
(``read_agent`` + ``list_messages``, in a new repository, so the data key is fetched too) several
times; modes are interleaved within a run, in a rotated order, so a disturbance hits all of them
alike. Numbers are medians over runs; ratios divide by mode ``none`` of the same run first. The
exit status is 0 whatever the timings: the target (encryption <= 1.5x on 1 KiB messages) is
printed as PASS/FAIL, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import valkey
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import LocalKeyProvider, ValkeySessionRepository
from strands_valkey_session_manager.servers import start_server

MODES = ("none", "zstd", "aes-gcm", "both")
TARGET_RATIO = 1.5
MESSAGE_BYTES = 1024
PROSE = (
    "the agent calls a tool and reads the result before it answers the user with a short summary of "
    "what it found in the session store valkey keeps every message of the conversation in one hash "
    "slot so a restore is one round trip whatever the length of the history"
)
WORDS = PROSE.split()


def _options(mode: str, provider: LocalKeyProvider) -> dict[str, Any]:
    return {
        "none": {},
        "zstd": {"compress_threshold": 512},
        "aes-gcm": {"key_provider": provider},
        "both": {"compress_threshold": 512, "key_provider": provider},
    }[mode]


def _text(rng: random.Random) -> str:
    words: list[str] = []
    size = 0
    while size < MESSAGE_BYTES:
        word = rng.choice(WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:MESSAGE_BYTES]


def _messages(count: int) -> list[SessionMessage]:
    rng = random.Random(7)
    return [
        SessionMessage(
            message={"role": "user" if i % 2 == 0 else "assistant", "content": [{"text": _text(rng)}]}, message_id=i
        )
        for i in range(count)
    ]


def _timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter_ns()
    call()
    return (time.perf_counter_ns() - start) / 1000


def _run(
    client: Any, provider: LocalKeyProvider, mode: str, *, run: int, messages: list[SessionMessage], restores: int
) -> dict[str, float]:
    session_id = f"{mode}-{run}"
    writer = ValkeySessionRepository(client, **_options(mode, provider))
    writer.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))
    writer.create_agent(session_id, SessionAgent(agent_id="agent", state={}, conversation_manager_state={}))
    writer.create_message(session_id, "agent", SessionMessage(message={"role": "user", "content": []}, message_id=-1))
    append = [_timed(lambda m=m: writer.create_message(session_id, "agent", m)) for m in messages]  # type: ignore[misc]

    def restore() -> None:
        reader = ValkeySessionRepository(client, **_options(mode, provider))
        reader.read_agent(session_id, "agent")
        restored = reader.list_messages(session_id, "agent")
        assert len(restored) == len(messages) + 1

    restore()  # warm-up
    restore_us = [_timed(restore) for _ in range(restores)]
    stored = sum(len(v) for v in client.hvals(writer.session_keys(session_id).messages))
    writer.delete_session(session_id)
    return {
        "append_us": statistics.median(append),
        "restore_ms": statistics.median(restore_us) / 1000,
        "stored_bytes_per_message": stored / (len(messages) + 1),
    }


def measure(count: int, runs: int, restores: int) -> dict[str, Any]:
    server = start_server("valkey9")
    try:
        client: Any = valkey.Valkey(server.host, server.port, decode_responses=False)
        provider = LocalKeyProvider({"bench": LocalKeyProvider.generate_key()}, "bench")
        messages = _messages(count)
        per_run: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
        _run(client, provider, "none", run=-1, messages=messages[:50], restores=1)  # load scripts, warm the client
        for run in range(runs):
            order = MODES[run % len(MODES) :] + MODES[: run % len(MODES)]
            for mode in order:
                per_run[mode].append(_run(client, provider, mode, run=run, messages=messages, restores=restores))
        info = client.info("server")
        version = info.get("valkey_version") or info.get("redis_version")
        client.close()
    finally:
        server.stop()
    rows = {}
    for mode in MODES:
        results = per_run[mode]
        rows[mode] = {
            metric: statistics.median(r[metric] for r in results)
            for metric in ("append_us", "restore_ms", "stored_bytes_per_message")
        }
        for metric in ("append_us", "restore_ms", "stored_bytes_per_message"):
            rows[mode][f"{metric}_ratio"] = statistics.median(
                r[metric] / base[metric] for r, base in zip(results, per_run["none"], strict=True)
            )
    encryption = max(rows["aes-gcm"]["append_us_ratio"], rows["aes-gcm"]["restore_ms_ratio"])
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "messages": count,
        "message_bytes": MESSAGE_BYTES,
        "runs": runs,
        "restores_per_run": restores,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "server": version.decode() if isinstance(version, bytes) else str(version),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "modes": rows,
        "target": {
            "what": f"encryption (aes-gcm) append and restore <= {TARGET_RATIO}x of none",
            "worst_ratio": encryption,
            "pass": encryption <= TARGET_RATIO,
        },
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Sealed records: cost of compression and encryption",
        "",
        f"{results['messages']:,} messages of {results['message_bytes']} bytes of text, appended one "
        f"`create_message` at a time, then restored (`read_agent` + `list_messages` in a new repository) "
        f"{results['restores_per_run']} times; {results['runs']} interleaved runs, medians. Ratios are "
        "per run against mode *none*, then the median. zstd: `compress_threshold=512`; aes-gcm: "
        "`key_provider=LocalKeyProvider(...)`.",
        "",
        "| mode | append µs/op | ratio | restore ms | ratio | stored bytes/message | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, row in results["modes"].items():
        lines.append(
            f"| {mode} | {row['append_us']:.1f} | {row['append_us_ratio']:.2f}x | {row['restore_ms']:.2f} | "
            f"{row['restore_ms_ratio']:.2f}x | {row['stored_bytes_per_message']:.0f} | "
            f"{row['stored_bytes_per_message_ratio']:.2f}x |"
        )
    target = results["target"]
    machine = results["machine"]
    lines += [
        "",
        f"Target: {target['what']}: worst {target['worst_ratio']:.2f}x, **{'PASS' if target['pass'] else 'FAIL'}**.",
        "",
        f"Machine: {machine['platform']}, {machine['cpus']} CPUs, Python {machine['python']}, "
        f"server {machine['server']}; load average {', '.join(map(str, machine['load_average']))} "
        f"(other processes shared the 2 cores); {results['date']}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="200 messages, 2 runs (smoke)")
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    count, runs, restores = (200, 2, 3) if args.quick else (1000, 7, 5)
    results = measure(count, runs, restores)
    text = markdown(results)
    print(text)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "sealing.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (args.output_dir / "sealing.md").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
