"""``python -m benchmarks --quick`` runs end to end and writes its results where it is told to.

Only the plumbing is checked: exit status, files, structure. Timings and target verdicts are never
asserted (they depend on the machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import ServerError, find_server_binary

REPO_ROOT = Path(__file__).resolve().parent.parent
COMMITTED_RESULTS = REPO_ROOT / "benchmarks" / "results"


def _snapshot(directory: Path) -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in directory.glob("core.*")}


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_quick_benchmark_writes_results_to_output_dir(tmp_path: Path) -> None:
    try:
        find_server_binary("valkey9")
    except ServerError as e:
        if os.environ.get("SVSM_ALLOW_MISSING_SERVERS") == "1":
            pytest.skip(str(e))
        raise
    committed_before = _snapshot(COMMITTED_RESULTS)
    out_dir = tmp_path / "results"

    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--output-dir", str(out_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=40,
        check=False,
    )

    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert "targets" in proc.stdout
    data = json.loads((out_dir / "core.json").read_text(encoding="utf-8"))
    assert data["config"]["quick"] is True
    assert data["machine"]["server"].startswith("valkey 9")
    names = [row["name"] for row in data["results"]]
    assert any(name.startswith("SET 1 KiB") for name in names)
    assert any(name.startswith("create_message") for name in names)
    assert any(name.startswith("ours, 1,000 messages") for name in names)
    assert any(name.startswith("FileSessionManager, 100 messages") for name in names)
    assert sum("keys in the database" in name for name in names) == 2
    append = next(row for row in data["results"] if row["name"].startswith("create_message"))
    assert append["round_trips"] == 1
    assert append["median_us"] > 0
    assert {target["verdict"] for target in data["targets"]} <= {"PASS", "FAIL", "n/a"}
    assert len(data["targets"]) >= 4
    markdown = (out_dir / "core.md").read_text(encoding="utf-8")
    for heading in ("## Machine", "## Results", "## Targets", "| CPU |", "| Python |", "| Server |"):
        assert heading in markdown
    # The committed results stay as they were.
    assert _snapshot(COMMITTED_RESULTS) == committed_before


def test_write_behind_benchmark_quick_mode_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.write_behind", "--quick", "--output-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((tmp_path / "write_behind.json").read_text())["rows"]
    assert [row["stored"] for row in rows] == [row["messages"] for row in rows]
