"""Smoke test for the peer comparison benchmark: ``python -m benchmarks.peers --quick`` into a temp dir."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_peers_quick_writes_json_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.peers", "--quick", "--output-dir", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "peers.json").read_text(encoding="utf-8"))
    assert data["restore"] and data["append"]
    # The same run: server time per operation, the concurrency table (standalone and cluster), the C
    # parsers (or why they were not measured) and package 0.1 (or why not).
    assert {r["system"] for r in data["server_time"]} >= {"ours", "floor"}
    assert {r["topology"] for r in data["concurrency"]["rows"]} == {"standalone", "cluster"}
    assert data["parsers"].get("rows") or data["parsers"].get("unavailable")
    assert any(r["system"] == "pkg-0.1" for r in data["append"]) or "pkg-0.1" in data["unavailable"]
    # Plots need matplotlib (the `bench` extra); without it the run says so and writes the rest.
    assert bool(list(out.glob("*.png"))) == (importlib.util.find_spec("matplotlib") is not None)
    markdown = (out / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert "## Neighbour stall" in markdown and "server's longest command" in markdown
