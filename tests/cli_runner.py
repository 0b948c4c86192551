"""The CLI tests' ``CliRunner``: stderr kept apart from stdout (the default from Click 8.2; older
Clicks need the flag)."""

from __future__ import annotations

from typer.testing import CliRunner


def cli_runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:  # Click 8.2+ keeps stderr apart always and has no such option
        return CliRunner()
