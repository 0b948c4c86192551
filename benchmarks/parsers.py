"""C reply parsers: valkey-py with and without libvalkey, redis-py with and without hiredis.

``python -m benchmarks.parsers [--quick]`` (also run by ``python -m benchmarks.peers``).

The parsers are the ``fast`` extra. When the running environment lacks them, a full run installs
them with pip into ``benchmarks/.cache/cparsers`` (``pip install --target``, never the project
venv) and puts that directory on the child processes' path. Each measurement runs in a child
process: *python* children hide the C modules (``sys.modules[name] = None`` before the clients are
imported, so the clients fall back to their Python parsers and packers), *C* children require
them and report the parser class their connections use. Children of both kinds alternate, one
short run each, several rounds; reported: the median over rounds of each run's median, per
client library, for a raw ``SET`` of 1 KiB, ``create_message`` of a 1 KiB message (version
checks on) and a restore of 1,000 messages (``read_agent`` + ``list_messages``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
CPARSERS = Path(__file__).resolve().parent / ".cache" / "cparsers"
PACKAGES = ("libvalkey", "hiredis")
OPERATIONS = ("set_1k", "append_1k", "restore_1000")


def ensure(install: bool) -> tuple[list[str], str | None]:
    """Extra path entries under which both C modules import (``[]`` when installed already)."""
    if all(importlib.util.find_spec(p) is not None for p in PACKAGES):
        return [], None
    if not all((CPARSERS / p).exists() for p in PACKAGES):
        if not install:
            return [], f"libvalkey/hiredis not installed and no {CPARSERS} (a full run makes it with pip)"
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--target", str(CPARSERS), *PACKAGES],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            return [], "pip could not install libvalkey, hiredis: " + " ".join(proc.stderr.strip().splitlines()[-2:])
    return [str(CPARSERS)], None


# -- child -------------------------------------------------------------------------------------


def _timed(fn: Any, n: int) -> float:
    samples = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        fn(i)
        samples.append((time.perf_counter_ns() - t0) / 1000)
    return statistics.median(samples)


def _measure(client: Any, sid: str, rsid: str, calls: int, restores: int) -> dict[str, Any]:
    from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

    from strands_valkey_session_manager import ValkeySessionRepository

    text = ("Valkey keeps every session in one hash slot, so a restore reads one sorted set and one hash. " * 12)[:1024]

    def message(i: int) -> SessionMessage:
        return SessionMessage(message={"role": "user", "content": [{"text": text}]}, message_id=i)

    conn = client.connection_pool.get_connection("PING")
    parser = type(conn._parser).__name__
    client.connection_pool.release(conn)
    repo = ValkeySessionRepository(client, check_versions=True)
    for session_id in (sid, rsid):
        if repo.read_session(session_id) is None:
            repo.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))
            repo.create_agent(session_id, SessionAgent(agent_id="a", state={}, conversation_manager_state={}))
            if session_id == rsid:
                for i in range(1000):
                    repo.create_message(rsid, "a", message(i))
    repo.read_agent(sid, "a")
    msgs = [message(i) for i in range(calls)]
    value = text.encode()
    _timed(lambda i: client.set("parsers:k", value), 5)
    res: dict[str, Any] = {"parser": parser}
    res["set_1k"] = _timed(lambda i: client.set("parsers:k", value), calls)
    res["append_1k"] = _timed(lambda i: repo.create_message(sid, "a", msgs[i]), calls)
    _timed(lambda i: repo.list_messages(rsid, "a"), 1)
    res["restore_1000"] = _timed(lambda i: (repo.read_agent(rsid, "a"), repo.list_messages(rsid, "a")), restores)
    repo.delete_session(sid)
    return res


def child(mode: str, port: int, calls: int, restores: int, tag: str) -> dict[str, Any]:
    if mode == "python":
        for name in PACKAGES:
            sys.modules[name] = None  # type: ignore[assignment]
    import redis
    import valkey

    out: dict[str, Any] = {}
    for lib, make in (("valkey-py", valkey.Valkey), ("redis-py", redis.Redis)):
        client: Any = make("127.0.0.1", port)
        try:
            out[lib] = _measure(client, f"parsers-{tag}-{mode}-{lib}", f"parsers-restore-{lib}", calls, restores)
        finally:
            client.close()
    return out


# -- parent ------------------------------------------------------------------------------------


def run(quick: bool = False, port: int | None = None, say: Any = print) -> dict[str, Any]:
    extra_path, reason = ensure(install=not quick)
    if reason is not None:
        return {"unavailable": reason}
    server = None
    if port is None:
        from strands_valkey_session_manager.servers import start_server

        server = start_server("valkey9")
        port = server.port
    rounds, calls, restores = (2, 50, 2) if quick else (6, 200, 5)
    started = time.perf_counter()
    runs: dict[str, dict[str, dict[str, list[float]]]] = {}
    parsers: dict[str, dict[str, str]] = {}
    try:
        for r in range(rounds):
            for mode in ("python", "c") if r % 2 == 0 else ("c", "python"):
                path = [str(REPO_ROOT / "src"), *(extra_path if mode == "c" else []), os.environ.get("PYTHONPATH", "")]
                command = ["--child", mode, str(port), str(calls), str(restores), str(r)]
                proc = subprocess.run(
                    [sys.executable, "-m", "benchmarks.parsers", *command],
                    cwd=REPO_ROOT,
                    capture_output=True,
                    text=True,
                    env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)},
                    check=False,
                    timeout=600,
                )
                if proc.returncode != 0:
                    raise RuntimeError(f"parsers child ({mode}) failed: {proc.stderr[-2000:]}")
                result = json.loads(proc.stdout.strip().splitlines()[-1])
                for lib, res in result.items():
                    parsers.setdefault(mode, {})[lib] = res["parser"]
                    for op in OPERATIONS:
                        runs.setdefault(lib, {}).setdefault(mode, {}).setdefault(op, []).append(res[op])
    finally:
        if server is not None:
            server.stop()
    rows = []
    for lib, modes in runs.items():
        for op in OPERATIONS:
            py, c = statistics.median(modes["python"][op]), statistics.median(modes["c"][op])
            rows.append(
                {
                    "client": lib,
                    "operation": op,
                    "python_us": round(py, 1),
                    "c_us": round(c, 1),
                    "c_vs_python": round(c / py, 2),
                    "python_parser": parsers["python"][lib],
                    "c_parser": parsers["c"][lib],
                }
            )
    say(f"  C parsers: {time.perf_counter() - started:.1f} s")
    return {"rounds": rounds, "calls": calls, "restores": restores, "rows": rows}


def fmt(us: float) -> str:
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.1f} µs"


def table(data: dict[str, Any]) -> list[str]:
    if "unavailable" in data:
        return [f"Not measured: {data['unavailable']}."]
    names = {"set_1k": "raw SET 1 KiB", "append_1k": "append 1 KiB (create_message)", "restore_1000": "restore 1,000"}
    out = ["| client | operation | Python parser | C parser | C / Python |", "|---|---|---:|---:|---:|"]
    for r in data["rows"]:
        out.append(
            f"| {r['client']} ({r['c_parser'].strip('_')}) | {names[r['operation']]} | {fmt(r['python_us'])} | "
            f"{fmt(r['c_us'])} | {r['c_vs_python']}x |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="C reply parsers vs the Python ones")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        mode, port, calls, restores, tag = args.child
        print(json.dumps(child(mode, int(port), int(calls), int(restores), tag)))
        return 0
    data = run(args.quick)
    print("\n".join(table(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
