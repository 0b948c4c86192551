"""``python -m benchmarks [--quick] [--output-dir DIR]``: run the core benchmark from the repo root."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import _report, core

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Start a Valkey 9 server, measure append and restore against raw SET/GET and the SDK's "
        "FileSessionManager, print a table and write core.json and core.md. Targets are reported, "
        "never enforced: the exit status is 0 whatever the timings.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes and fewer iterations (CI smoke, under 30 s)"
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"where core.json and core.md go (default: {DEFAULT_OUTPUT})",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = core.Config.quick_mode() if args.quick else core.Config.default()
    command = "python -m benchmarks" + (" --quick" if args.quick else "")
    results = core.run(config)
    print()
    print(_report.console(results))
    json_path, md_path = _report.write(results, args.output_dir, command)
    print(f"\nwrote {json_path} and {md_path} ({results.elapsed_s:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
