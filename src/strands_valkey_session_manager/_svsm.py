"""The ``svsm`` entry point: runs the CLI, or says in one line which extra it needs.

The core install ships the ``svsm`` script but not the CLI's dependencies (typer, rich); without
them the command explains how to get them instead of dying with a traceback.
"""

from __future__ import annotations

import sys

#: The line ``svsm`` prints when the ``cli`` extra is not installed.
MISSING_EXTRA = (
    "svsm: error: the command line tool needs the 'cli' extra: "
    "pip install 'strands-valkey-session-manager[cli]' (missing module: {module})"
)


def main() -> None:
    """Run ``svsm``; exit 2 with one line on stderr when typer or rich is missing."""
    try:
        from .cli.command import app
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] not in {"typer", "rich", "click"}:
            raise
        print(MISSING_EXTRA.format(module=e.name.split(".")[0]), file=sys.stderr)
        raise SystemExit(2) from None
    app()
