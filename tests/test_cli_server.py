"""``svsm server``: a port another server holds is a clear failure; ``--dir`` keeps the data."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import valkey

from tests.servers import ServerProcess, start_server


def _svsm() -> str:
    found = shutil.which("svsm", path=str(Path(sys.executable).parent))
    assert found is not None
    return found


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([_svsm(), "server", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_port_held_by_another_server_fails_clearly_and_prints_no_url(valkey9_server: ServerProcess) -> None:
    process = _start("--flavour", "valkey8", "--port", str(valkey9_server.port))
    try:
        out, err = process.communicate(timeout=30)
    finally:
        _stop(process)
    assert process.returncode == 3
    assert out == ""
    assert err.strip().splitlines() == [f"svsm: error: port {valkey9_server.port} is already in use"]
    # The other server is untouched.
    client: Any = valkey.Valkey(valkey9_server.host, valkey9_server.port)
    assert client.ping()
    client.close()


def test_start_server_on_a_taken_port_raises() -> None:
    with start_server("valkey8") as other:
        with pytest.raises(Exception, match=r"port \d+ is already in use$"):
            start_server("valkey8", port=other.port)
        assert other.is_running()


def test_dir_keeps_the_data_across_restarts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = _start("--flavour", "valkey8", "--dir", str(data))
    try:
        assert first.stdout is not None
        url = first.stdout.readline().strip()
        client: Any = valkey.Valkey.from_url(url, socket_timeout=5)
        client.set("kept", "yes")
        client.close()
    finally:
        _stop(first)
    assert first.returncode == 0
    assert data.is_dir()

    second = _start("--flavour", "valkey8", "--dir", str(data))
    try:
        assert second.stdout is not None
        url = second.stdout.readline().strip()
        client = valkey.Valkey.from_url(url, socket_timeout=5)
        assert client.get("kept") == b"yes"
        client.close()
    finally:
        _stop(second)


def test_without_dir_the_data_is_in_memory_only() -> None:
    first = _start("--flavour", "valkey8")
    try:
        assert first.stdout is not None
        url = first.stdout.readline().strip()
        client: Any = valkey.Valkey.from_url(url, socket_timeout=5)
        assert client.config_get("appendonly")["appendonly"] == "no"
        assert client.config_get("save")["save"] == ""
        client.close()
    finally:
        _stop(first)
