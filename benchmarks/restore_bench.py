"""Restore benchmark: how fast a long conversation comes back, and what it costs everyone else.

``python -m benchmarks.restore_bench [--quick] [--output-dir DIR]`` (also run by
``python -m benchmarks.peers``). Results: ``results/restore.json`` and ``results/restore.md``.

Measured on one Valkey 9 server started for the run, with messages of about 1 KiB:

- **restore**: ``read_agent`` + ``list_messages`` (what the SDK's restore sends) of 1,000, 10,000
  and 100,000 messages, against the SDK's ``FileSessionManager`` on a temporary directory (1,000
  and 10,000: it takes seconds beyond), in the same run. Ours is measured in child processes with
  the pure-Python reply parsers (``libvalkey``/``hiredis`` hidden) and, when installed, with them
  (the ``fast`` extra); children of both kinds and the file store alternate, several rounds.
- **server time per step**: ``INFO commandstats`` (mean per call) and ``SLOWLOG`` with a threshold
  of 0 (the slowest single command) during one restore of the largest size.
- **neighbour stall**: another *process* sends ``PING`` on its own connection, once every
  millisecond and then back to back; its worst and p99 latency while the largest session is restored
  by us, for contrast while one ``EVAL`` of a Lua loop reads the same records (what a single-script
  restore does) and while one ``HGETALL`` reads the messages hash, and while nothing runs; with the
  server's own longest command in each phase (``LATENCY LATEST`` at a 1 ms threshold), which tells
  the server's stalls from waits for a CPU. ``SCRIPT FLUSH`` after the Lua loop: the server would
  collect its garbage during the scripts that run next.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
C_PARSERS = ("libvalkey", "hiredis")
TEXT = ("Valkey keeps every session in one hash slot, so a restore reads one sorted set and one hash. " * 12)[:1000]
AGENT = "a"

# The Lua loop of a restore in one script (the package's former way): every record of the agent read
# in batches of 100 and returned concatenated, while every other client waits.
ONE_SCRIPT = """
local members = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], ARGV[2])
local parts = {}
for i = 1, #members, 100 do
  local records = redis.call('HMGET', KEYS[1], unpack(members, i, math.min(i + 99, #members)))
  for j = 1, #records do parts[#parts + 1] = records[j] end
end
return table.concat(parts, ',')
"""


def _sid(n: int) -> str:
    return f"restore-{n}"


def _message(i: int) -> Any:
    from strands.types.session import SessionMessage

    return SessionMessage(message={"role": "user", "content": [{"text": TEXT}]}, message_id=i)  # type: ignore[arg-type]


def populate(port: int, sizes: list[int], file_dir: Path, file_sizes: list[int]) -> None:
    import valkey
    from strands.session.file_session_manager import FileSessionManager
    from strands.types.session import Session, SessionAgent, SessionType

    from strands_valkey_session_manager import ValkeySessionRepository
    from strands_valkey_session_manager.transfer import SessionExport

    client = valkey.Valkey("127.0.0.1", port)
    repo = ValkeySessionRepository(client)
    for n in sizes:
        agent = SessionAgent(agent_id=AGENT, state={}, conversation_manager_state={})
        session = Session(session_id=_sid(n), session_type=SessionType.AGENT)
        repo.write_export(
            SessionExport(session=session, agents=[agent], messages={AGENT: [_message(i) for i in range(n)]})
        )
    client.close()
    for n in file_sizes:
        files = FileSessionManager(session_id=_sid(n), storage_dir=str(file_dir))
        files.create_agent(_sid(n), SessionAgent(agent_id=AGENT, state={}, conversation_manager_state={}))
        for i in range(n):
            files.create_message(_sid(n), AGENT, _message(i))


def _median_ms(fn: Any, runs: int) -> float:
    fn()  # warm (scripts loaded, caches, page cache)
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


# -- child: our restore with one kind of reply parser --------------------------------------------


def child(mode: str, port: int, sizes: list[int], runs: dict[str, int]) -> dict[str, Any]:
    if mode == "python":
        for name in C_PARSERS:
            sys.modules[name] = None  # type: ignore[assignment]
    import valkey

    from strands_valkey_session_manager import ValkeySessionRepository

    client = valkey.Valkey("127.0.0.1", port)
    conn = client.connection_pool.get_connection("PING")
    parser = type(conn._parser).__name__
    client.connection_pool.release(conn)
    repo = ValkeySessionRepository(client)

    def restore(n: int) -> None:
        assert repo.read_agent(_sid(n), AGENT) is not None
        got = repo.list_messages(_sid(n), AGENT)
        assert len(got) == n, (len(got), n)

    out = {"parser": parser, "ms": {str(n): _median_ms(lambda n=n: restore(n), runs[str(n)]) for n in sizes}}
    client.close()
    return out


def _run_child(mode: str, port: int, sizes: list[int], runs: dict[int, int]) -> dict[str, Any]:
    args = [sys.executable, "-m", "benchmarks.restore_bench", "--child", mode, "--port", str(port)]
    args += ["--sizes", ",".join(map(str, sizes)), "--runs", json.dumps({str(k): v for k, v in runs.items()})]
    proc = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, check=False, env=_env())
    if proc.returncode != 0:
        raise RuntimeError(f"child {mode} failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT), env.get("PYTHONPATH", "")])
    return env


# -- pinger: the neighbour, in a process of its own ------------------------------------------------

#: How the neighbour sends: a PING every millisecond (a client with steady traffic, which sleeps
#: between requests), and PINGs back to back (a busy loop: on 2 cores shared by the server, the
#: restoring client and the pinger, its worst case includes waits for a CPU, idle included).
PINGERS = {"every 1 ms": 0.001, "back to back": 0.0}


def pinger(port: int, seconds: float, interval: float) -> None:
    """PING for ``seconds``, ``interval`` s apart; prints [[start monotonic ns, latency ns], ...]."""
    import valkey

    client = valkey.Valkey("127.0.0.1", port)
    client.ping()
    samples = []
    end = time.monotonic_ns() + int(seconds * 1e9)
    while True:
        t0 = time.monotonic_ns()
        if t0 > end:
            break
        client.ping()
        samples.append((t0, time.monotonic_ns() - t0))
        if interval:
            time.sleep(interval)
    client.close()
    print(json.dumps(samples))


def neighbour_stall(port: int, n: int) -> dict[str, Any]:
    """Per pinger kind and phase, the pinger's worst and p99 latency (ms) while the phase runs, and
    the server's longest command in the phase (``LATENCY LATEST``, 1 ms resolution)."""
    import valkey

    from strands_valkey_session_manager import ValkeySessionRepository
    from strands_valkey_session_manager._keys import agent_member_range

    client = valkey.Valkey("127.0.0.1", port)
    repo = ValkeySessionRepository(client)
    keys = repo.session_keys(_sid(n))
    low, high = agent_member_range(AGENT)
    script = client.register_script(ONE_SCRIPT)
    restore_one = lambda: repo.list_messages(_sid(n), AGENT)  # noqa: E731
    lua_loop = "one EVAL of a Lua loop over the same records"
    phases: dict[str, Any] = {
        "idle": lambda: time.sleep(0.5),
        "ours (list_messages in bounded steps)": restore_one,
        "one HGETALL of the messages hash": lambda: client.hgetall(keys.messages),
        lua_loop: lambda: script(keys=[keys.messages, keys.order], args=[low, high]),
    }

    def clear_lua_heap() -> None:
        # The Lua loop leaves ~100 MB of garbage in the server's Lua heap, which the server collects
        # in steps during the scripts that run next (ours), up to ~11 ms per script: start afresh.
        client.script_flush("SYNC")
        restore_one()  # our scripts loaded again, outside the timed phases

    old = client.config_get("latency-monitor-threshold")
    client.config_set("latency-monitor-threshold", 1)
    longest: dict[str, int] = dict.fromkeys(phases, 0)
    result: dict[str, Any] = {}
    try:
        budget = 3.0 + 2 * sum(_median_ms(fn, 1) / 1000 + 0.4 for fn in phases.values())
        clear_lua_heap()
        for kind, interval in PINGERS.items():
            args = [sys.executable, "-m", "benchmarks.restore_bench", "--pinger", str(budget)]
            args += ["--interval", str(interval), "--port", str(port)]
            proc = subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, env=_env())
            time.sleep(1.0)  # the pinger is up and pinging
            windows: list[tuple[str, int, int]] = []
            for _ in range(2):  # each phase twice, the pinger running throughout
                for name, fn in phases.items():
                    client.execute_command("LATENCY", "RESET")
                    t0 = time.monotonic_ns()
                    fn()
                    windows.append((name, t0, time.monotonic_ns()))
                    latest = client.execute_command("LATENCY", "LATEST")
                    longest[name] = max([longest[name], *(int(e[3]) for e in latest if _text(e[0]) == "command")])
                    if name == lua_loop:
                        clear_lua_heap()
                    time.sleep(0.2)
            out, _ = proc.communicate(timeout=budget + 60)
            samples = json.loads(out.strip().splitlines()[-1])
            result[kind] = {}
            for name in phases:
                spans = [(a, b) for w, a, b in windows if w == name]
                inside = sorted(lat for t0, lat in samples if any(a <= t0 + lat and t0 <= b for a, b in spans))
                result[kind][name] = {
                    "pings": len(inside),
                    "worst_ms": round(inside[-1] / 1e6, 3) if inside else None,
                    "p99_ms": round(inside[int(0.99 * (len(inside) - 1))] / 1e6, 3) if inside else None,
                }
    finally:
        client.config_set("latency-monitor-threshold", old["latency-monitor-threshold"])
        client.close()
    return {"pingers": result, "server_longest_command_ms": longest}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def server_time_per_step(port: int, n: int) -> dict[str, Any]:
    """Mean (commandstats) and worst (SLOWLOG, threshold 0) server time per command of one restore."""
    import valkey

    from strands_valkey_session_manager import ValkeySessionRepository

    client = valkey.Valkey("127.0.0.1", port, decode_responses=True)
    repo = ValkeySessionRepository(client)
    repo.list_messages(_sid(n), AGENT)
    old = client.config_get("slowlog-*")
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 100_000)
    client.slowlog_reset()
    client.config_resetstat()
    repo.read_agent(_sid(n), AGENT)
    repo.list_messages(_sid(n), AGENT)
    stats = client.info("commandstats")
    log = client.slowlog_get(100_000)
    for name, value in old.items():
        client.config_set(name, value)
    client.close()
    out: dict[str, Any] = {}
    for command in ("evalsha", "hmget", "hget", "exists"):
        entry = stats.get(f"cmdstat_{command}")
        if entry:
            worst = [e["duration"] for e in log if _name(e).lower() == command]
            out[command.upper()] = {
                "calls": entry["calls"],
                "mean_us": entry["usec_per_call"],
                "worst_us": max(worst) if worst else None,
            }
    return out


def _name(entry: dict[str, Any]) -> str:
    command = entry.get("command")
    if isinstance(command, (bytes, str)):
        text = command.decode() if isinstance(command, bytes) else command
        return text.split(" ", 1)[0]
    return ""


# -- parent ----------------------------------------------------------------------------------------


def run(quick: bool, output_dir: Path, say: Any = print) -> dict[str, Any]:  # noqa: PLR0915
    from strands.session.file_session_manager import FileSessionManager

    from benchmarks import _machine
    from strands_valkey_session_manager.servers import start_server

    sizes = [1_000, 5_000] if quick else [1_000, 10_000, 100_000]
    file_sizes = [1_000] if quick else [1_000, 10_000]
    runs = {1_000: 5, 5_000: 3} if quick else {1_000: 15, 10_000: 7, 100_000: 3}
    file_runs = {1_000: 3} if quick else {1_000: 7, 10_000: 3}
    rounds = 1 if quick else 3
    modes = ["python"] + (["c"] if all(importlib.util.find_spec(p) for p in C_PARSERS) else [])
    server = start_server("valkey9")
    tmp = Path(tempfile.mkdtemp(prefix="restore-bench-"))
    try:
        import valkey

        admin = valkey.Valkey("127.0.0.1", server.port, decode_responses=True)
        machine = _machine.describe(admin.info("server") | {"executable": ""}, None)
        admin.close()
        t0 = time.perf_counter()
        populate(server.port, sizes, tmp / "files", file_sizes)
        say(f"  restore bench: populated in {time.perf_counter() - t0:.1f} s")
        files = FileSessionManager(session_id=_sid(file_sizes[0]), storage_dir=str(tmp / "files"))

        def file_restore(n: int) -> None:
            assert files.read_agent(_sid(n), AGENT) is not None
            assert len(files.list_messages(_sid(n), AGENT)) == n

        ours: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
        parsers: dict[str, str] = {}
        file_ms: list[dict[str, float]] = []
        for r in range(rounds):
            for mode in modes if r % 2 == 0 else modes[::-1]:
                got = _run_child(mode, server.port, sizes, runs)
                parsers[mode] = got["parser"]
                ours[mode].append(got["ms"])
            file_ms.append({str(n): _median_ms(lambda n=n: file_restore(n), file_runs[n]) for n in file_sizes})
            say(f"  restore bench: round {r + 1} of {rounds}")
        rows = []
        for n in sizes:
            row: dict[str, Any] = {"messages": n}
            for mode in modes:
                row[f"ours_{mode}_ms"] = round(statistics.median(x[str(n)] for x in ours[mode]), 2)
                row[f"ours_{mode}_us_per_message"] = round(row[f"ours_{mode}_ms"] * 1000 / n, 2)
            if n in file_sizes:
                row["file_ms"] = round(statistics.median(x[str(n)] for x in file_ms), 2)
                for mode in modes:
                    row[f"file_over_ours_{mode}"] = round(row["file_ms"] / row[f"ours_{mode}_ms"], 1)
            rows.append(row)
        largest = sizes[-1]
        steps = server_time_per_step(server.port, largest)
        stall = neighbour_stall(server.port, largest)
        result = {
            "machine": machine,
            "load_average_end": _machine.load_average(),
            "message_bytes": len(TEXT),
            "parsers": parsers,
            "restore": rows,
            "server_time_per_step": {"messages": largest, "commands": steps},
            "neighbour_stall": {"messages": largest, **stall},
        }
    finally:
        server.stop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "restore.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (output_dir / "restore.md").write_text(markdown(result), encoding="utf-8")
    return result


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    modes = list(result["parsers"])
    out = [
        "# Restore benchmark",
        "",
        f"`python -m benchmarks.restore_bench`: {m['date']}, {m['cpu']}, {m['usable_cpus']} usable CPUs, "
        f"{m['python']}, {m['server']}; load average {m['load_average_start']} at the start, "
        f"{result['load_average_end']} at the end. Messages of {result['message_bytes']:,} characters of text.",
        "",
        "## Restore (`read_agent` + `list_messages`)",
        "",
        "Median ms; parsers: " + ", ".join(f"{k} = `{v}`" for k, v in result["parsers"].items()) + ".",
        "",
    ]
    head = [
        "messages",
        *(f"ours ({m_})" for m_ in modes),
        *(f"µs/message ({m_})" for m_ in modes),
        "FileSessionManager",
    ]
    head += [f"file / ours ({m_})" for m_ in modes]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["restore"]:
        cells = [f"{row['messages']:,}"]
        cells += [f"{row[f'ours_{m_}_ms']:.1f}" for m_ in modes]
        cells += [f"{row[f'ours_{m_}_us_per_message']:.1f}" for m_ in modes]
        cells.append(f"{row['file_ms']:.1f}" if "file_ms" in row else "-")
        cells += [f"{row[f'file_over_ours_{m_}']}x" if f"file_over_ours_{m_}" in row else "-" for m_ in modes]
        out.append("| " + " | ".join(cells) + " |")
    steps = result["server_time_per_step"]
    out += ["", f"## Server time per command of one restore of {steps['messages']:,} messages", ""]
    out += ["| command | calls | mean µs | worst µs |", "|---|---|---|---|"]
    for name, s in steps["commands"].items():
        out.append(f"| {name} | {s['calls']} | {s['mean_us']} | {s['worst_us']} |")
    return "\n".join(out + stall_table(result["neighbour_stall"])) + "\n"


def stall_table(stall: dict[str, Any]) -> list[str]:
    """The neighbour-stall figures as a markdown section (also used by BENCHMARKS.md)."""
    kinds = list(stall["pingers"])
    out = ["", f"## Neighbour stall: another process's `PING` during a restore of {stall['messages']:,}", ""]
    out += [
        "Worst (p99) latency in ms of a `PING` sent by another process, "
        + ", ".join(f"*{k}*" for k in kinds)
        + "; and the longest command the server ran in that phase (`LATENCY LATEST`, threshold and "
        "resolution 1 ms: 0 = none reached 1 ms).",
        "",
    ]
    out += ["| while | " + " | ".join(f"PING {k}: worst (p99)" for k in kinds) + " | server's longest command |"]
    out += ["|---|" + "---:|" * (len(kinds) + 1)]
    for name in stall["pingers"][kinds[0]]:
        cells = []
        for k in kinds:
            s = stall["pingers"][k][name]
            cells.append(f"{s['worst_ms']} ({s['p99_ms']})")
        out.append(f"| {name} | " + " | ".join(cells) + f" | {stall['server_longest_command_ms'][name]} ms |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Restore benchmark")
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (seconds)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--child", choices=["python", "c"], help=argparse.SUPPRESS)
    parser.add_argument("--pinger", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--interval", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", help=argparse.SUPPRESS)
    parser.add_argument("--runs", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pinger is not None:
        pinger(args.port, args.pinger, args.interval)
        return 0
    if args.child:
        sizes = [int(s) for s in args.sizes.split(",")]
        print(json.dumps(child(args.child, args.port, sizes, json.loads(args.runs))))
        return 0
    result = run(args.quick, args.output_dir)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
