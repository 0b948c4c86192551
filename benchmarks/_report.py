"""Results as a console table, ``core.json`` and ``core.md``."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .core import Results, Row

HEADERS = ("measurement", "median", "p90", "runs p25-p75", "RT/op", "server/op", "compared")

METHOD = (
    "Each operation is timed on its own (perf_counter_ns) on one `valkey.Valkey(decode_responses=False)` "
    "client, after warm-up calls; operations compared with each other are measured in interleaved runs. "
    "*median*/*p90* are over all timed calls; *runs p25-p75* is the interquartile range of the run "
    "medians (the spread between repeated runs). Ratios compare two operations measured in interleaved "
    "runs: *quiet runs* divides the 25th percentiles of their run medians, the quiet end of each, which "
    "stands for an idle machine when other processes disturb some runs (targets use it); *all runs* is "
    "the median over all runs of the quotient of the two run medians timed back to back. "
    "*RT/op* is requests put on the wire per operation, counted client-side by wrapping "
    "`AbstractConnection.send_packed_command`. *server/op* is the server-side time of those requests "
    "(`INFO commandstats` of the top-level command while each captured request is replayed, except "
    "create_message: while appends run for real with version checks on, as a replay would take the "
    "repeat-detection path; median of 5 group means). The *diag* "
    "rows send the exact bytes of a captured request without the Python code that builds it, which "
    "splits client-side cost from wire + server cost. redis-benchmark rows are 1e6 / (requests per "
    "second), per run. The file store writes to a local temporary directory and is read with a warm "
    "page cache (its best case)."
)


def fmt_time(us: float | None) -> str:
    if us is None or math.isnan(us):
        return "-"
    if us >= 100_000:
        return f"{us / 1000:.0f} ms"
    if us >= 1_000:
        return f"{us / 1000:.2f} ms"
    if us >= 100:
        return f"{us:.0f} µs"
    return f"{us:.1f} µs"


def row_cells(row: Row) -> list[str]:
    timing = row.timing
    if timing is None:
        median = p90 = spread = "-"
    else:
        low, high = timing.spread_us
        median = fmt_time(timing.median_us)
        p90 = "-" if row.throughput else fmt_time(timing.p90_us)
        spread = fmt_time(low) if len(timing.run_medians_us) == 1 else f"{fmt_time(low)} - {fmt_time(high)}"
    round_trips = "-" if row.round_trips is None else str(row.round_trips)
    if row.commands and row.round_trips is not None and not row.throughput:
        round_trips += f" ({'+'.join(row.commands)})"
    return [row.name, median, p90, spread, round_trips, fmt_time(row.server_us), row.compared or ""]


def _sections(rows: Iterable[Row]) -> dict[str, list[Row]]:
    grouped: dict[str, list[Row]] = {}
    for row in rows:
        grouped.setdefault(row.section, []).append(row)
    return grouped


def console(results: Results) -> str:
    body = [list(HEADERS)]
    section_of_line: list[str | None] = [None]
    for section, rows in _sections(results.rows).items():
        body.append([section] + [""] * (len(HEADERS) - 1))
        section_of_line.append(section)
        for row in rows:
            body.append(row_cells(row))
            section_of_line.append(None)
    widths = [max(len(line[i]) for line in body) for i in range(len(HEADERS))]
    lines = []
    for index, line in enumerate(body):
        if section_of_line[index] is not None:
            lines.append("")
            lines.append(line[0])
            continue
        cells = [line[0].ljust(widths[0])] + [cell.rjust(widths[i]) for i, cell in enumerate(line[1:-1], 1)]
        lines.append("  ".join([*cells, line[-1]]).rstrip())
        if index == 0:
            lines.append("-" * len(lines[-1]))
    lines.append("")
    lines.append("targets")
    name_width = max(len(t.name) for t in results.targets) if results.targets else 0
    for target in results.targets:
        lines.append(f"  {target.verdict:<4}  {target.name.ljust(name_width)}  goal {target.goal}: {target.measured}")
    for note in results.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(results: Results, command: str) -> str:
    m = results.machine
    packages = ", ".join(f"{name} {version}" for name, version in m["packages"].items())
    cores = f"{m['logical_cpus']} logical CPUs"
    if m.get("physical_cores"):
        cores += f", {m['physical_cores']} physical cores"
    if m.get("usable_cpus") != m.get("logical_cpus"):
        cores += f", {m['usable_cpus']} usable"
    machine_rows = [
        ("Date", m["date"]),
        ("CPU", m["cpu"]),
        ("Cores", cores),
        ("OS", m["os"]),
        ("Python", m["python"]),
        ("Packages", packages),
        ("Server", f"{m['server']} on loopback, no persistence (`{Path(m['server_binary']).name}`)"),
        ("redis-benchmark", m["redis_benchmark"]),
        ("Code under test", m["source_revision"]),
        ("Load average (1/5/15 min)", f"start {m['load_average_start']}, end {m.get('load_average_end', '?')}"),
        ("Mode", "--quick" if results.config.quick else "default"),
        ("Duration", f"{results.elapsed_s:.0f} s"),
    ]
    out = ["# Core benchmark", "", f"`{command}`", "", "## Machine", "", "| | |", "|---|---|"]
    out += [f"| {key} | {_md_escape(str(value))} |" for key, value in machine_rows]
    out += ["", "## Results", ""]
    out += ["| " + " | ".join(HEADERS) + " |", "|" + "|".join(["---"] + ["---:"] * 5 + ["---"]) + "|"]
    for section, rows in _sections(results.rows).items():
        out.append(f"| **{_md_escape(section)}** |" + " |" * (len(HEADERS) - 1))
        for row in rows:
            out.append("| " + " | ".join(_md_escape(cell) for cell in row_cells(row)) + " |")
    out += ["", "## Targets", "", "| target | goal | measured | result |", "|---|---|---|---|"]
    for t in results.targets:
        out.append(f"| {_md_escape(t.name)} | {_md_escape(t.goal)} | {_md_escape(t.measured)} | **{t.verdict}** |")
    out += ["", "## Method", "", METHOD]
    if results.notes:
        out += ["", "## Notes", ""] + [f"- {note}" for note in results.notes]
    return "\n".join(out) + "\n"


def write(results: Results, output_dir: Path, command: str) -> tuple[Path, Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = results.as_dict()
    data["command"] = command
    json_path = output_dir / "core.json"
    md_path = output_dir / "core.md"
    json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(markdown(results, command), encoding="utf-8")
    return json_path, md_path
