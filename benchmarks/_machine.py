"""What the numbers were measured on: CPU, cores, Python, package and server versions, date, load."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("strands-valkey-session-manager", "strands-agents", "valkey", "orjson", "libvalkey", "hiredis")
REPO_ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def physical_cores() -> int | None:
    """Distinct (package, core) pairs in /proc/cpuinfo; None where that file does not exist."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    cores: set[tuple[str, str]] = set()
    package = core = ""
    for line in [*text.splitlines(), ""]:
        if line.startswith("physical id"):
            package = line.split(":", 1)[1].strip()
        elif line.startswith("core id"):
            core = line.split(":", 1)[1].strip()
        elif not line.strip() and (package or core):
            cores.add((package, core))
            package = core = ""
    return len(cores) or None


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _git(cwd: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.strip()


def source_revision() -> str:
    """Commit of the package under test (wherever it is imported from) and whether it has local edits."""
    import strands_valkey_session_manager

    package_dir = Path(strands_valkey_session_manager.__file__).resolve().parent
    commit = _git(package_dir, "rev-parse", "--short=12", "HEAD")
    if not commit:
        return f"unknown (package imported from {package_dir})"
    text = f"commit {commit}"
    if _git(package_dir, "status", "--porcelain", "--", "."):
        text += " with uncommitted changes in the package"
    top = Path(_git(package_dir, "rev-parse", "--show-toplevel") or package_dir)
    if top.resolve() != REPO_ROOT:
        text += f" (package imported from {package_dir})"
    return text


def server_version(info: dict[str, Any]) -> str:
    """``valkey 9.1.2`` from ``INFO server`` (Redis reports only ``redis_version``)."""
    name = info.get("server_name") or "redis"
    version = info.get(f"{name}_version") or info.get("redis_version") or "unknown"
    return f"{name} {version}"


def redis_benchmark_version(binary: str | None) -> str:
    if not binary:
        return "not installed"
    try:
        out = subprocess.run([binary, "--version"], check=False, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.strip() or "unknown"


def describe(server_info: dict[str, Any], redis_benchmark: str | None) -> dict[str, Any]:
    """Machine and software facts for the report."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": physical_cores(),
        "usable_cpus": affinity,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": package_versions(),
        "server": server_version(server_info),
        "server_binary": str(server_info.get("executable") or ""),
        "redis_benchmark": redis_benchmark_version(redis_benchmark),
        "source_revision": source_revision(),
        "load_average_start": load_average(),
    }
