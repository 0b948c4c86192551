"""Sizes and durations for people, shared by the CLI and the web viewer (no dependencies)."""

from __future__ import annotations

import math


def size(n: int) -> str:
    """A byte count for people: ``512 B``, ``12.3 KiB``, ``4.0 MiB``."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def duration(seconds: float | None) -> str:
    """Time left for people: ``-`` (no expiry), ``45s``, ``12m``, ``3h 5m``, ``2d 4h``."""
    if seconds is None:
        return "-"
    total = max(0, math.ceil(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"
