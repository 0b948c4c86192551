"""The installed ``svsm`` script: without the ``cli`` extra it prints one line naming the extra."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

# Runs the entry point with typer (or rich) unimportable, as in a core-only install.
_WITHOUT = "import sys; sys.modules[{module!r}] = None; from strands_valkey_session_manager._svsm import main; main()"


def test_svsm_without_the_cli_extra_prints_one_line_naming_it() -> None:
    for module in ("typer", "rich"):
        result = subprocess.run(
            [sys.executable, "-c", _WITHOUT.format(module=module), "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "pip install 'strands-valkey-session-manager[cli]'" in lines[0]
        assert "Traceback" not in result.stderr


def test_installed_svsm_script_runs_the_cli() -> None:
    svsm = shutil.which("svsm", path=str(Path(sys.executable).parent))
    assert svsm is not None, "the svsm script is not installed in this environment"
    result = subprocess.run([svsm, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "sessions" in result.stdout
