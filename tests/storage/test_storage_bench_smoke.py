"""``python benchmarks/storage_bench.py --quick`` runs end to end and writes its results where it is told to.

Only the plumbing is checked: exit status, files, structure, the committed results left alone.
Timings and target verdicts are never asserted (they depend on the machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import ServerError, find_server_binary

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "benchmarks" / "storage_bench.py"
COMMITTED_RESULTS = REPO_ROOT / "benchmarks" / "results"


def _stamps() -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in COMMITTED_RESULTS.glob("storage.*")}


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_quick_storage_benchmark_writes_results_to_output_dir(tmp_path: Path) -> None:
    try:
        find_server_binary("valkey9")
    except ServerError as e:
        if os.environ.get("SVSM_ALLOW_MISSING_SERVERS") == "1":
            pytest.skip(str(e))
        raise
    committed_before = _stamps()
    out_dir = tmp_path / "results"

    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output-dir", str(out_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=40,
        check=False,
    )

    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert "targets:" in proc.stdout
    data = json.loads((out_dir / "storage.json").read_text(encoding="utf-8"))
    assert data["config"]["quick"] is True
    assert data["machine"]["server"].startswith("valkey 9")
    assert data["machine"]["cpu"] and data["machine"]["logical_cpus"]
    names = [row["name"] for row in data["results"]]
    for wanted in (
        "ValkeyStorage.write 1 KiB (sync client)",
        "SET 1 KiB (valkey-py, sync)",
        "ValkeyStorage.read 1 MiB (sync client)",
        "GET 1 MiB (valkey-py, sync)",
    ):
        assert wanted in names
    assert sum(name.startswith("list(") for name in names) == 4
    assert any(name.startswith("save 1,000 messages") and name.endswith("LocalFileStorage") for name in names)
    assert any(name.startswith("restore 1,000 messages") and name.endswith("ValkeyStorage") for name in names)
    for row in data["results"]:
        assert row["median_us"] > 0 and row["p90_us"] >= row["median_us"] and row["calls"] > 0
    verdicts = {c["name"]: c["verdict"] for c in data["comparisons"]}
    targeted = [c for c in data["comparisons"] if c["target"] is not None]
    # write/read x 1 KiB/1 MiB x sync client/asyncio caller_loop (<= 1.3x), list x 2 prefixes (within
    # 20%), search (>= 20x)
    assert len(targeted) == 11
    assert all(verdicts[c["name"]] in ("PASS", "FAIL") for c in targeted)
    assert data["facts"]["unrelated_keys"]["count"] == 100_000
    # The scale step at its quick size: point operations, listing, search and snapshots.
    scale = [row["name"] for row in data["results"] if row["section"] == "scale"]
    assert data["config"]["scale_sizes"] == [1_000]
    for wanted in (
        "list page of 100 (KeyQuery), 1,000 keys: ValkeyStorage",
        "list_snapshot_ids(limit=100), 1,000 snapshots: ValkeySnapshotSessionManager",
        "delete_session, 1,000 snapshots: SDK manager, LocalFileStorage",
    ):
        assert wanted in scale
    markdown = (out_dir / "storage.md").read_text(encoding="utf-8")
    assert "| comparison | ratio |" in markdown and "valkey 9" in markdown
    assert _stamps() == committed_before
