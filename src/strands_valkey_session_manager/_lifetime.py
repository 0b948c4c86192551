"""Durations and timestamps as the scripts want them: integer milliseconds."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

Duration = float | int | timedelta


def to_ms(value: Duration | None, name: str) -> int:
    """A positive duration in whole milliseconds; ``None`` is 0 (no lifetime).

    Raises:
        ValueError: If the value is not a positive number of seconds or a positive ``timedelta``.
    """
    if value is None:
        return 0
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ValueError(f"{name}=<{value!r}> | must be seconds (int or float) or a timedelta")
    ms = round(seconds * 1000)
    if ms <= 0:
        raise ValueError(f"{name}=<{value!r}> | must be at least one millisecond")
    return ms


def created_ms(iso_timestamp: str) -> int:
    """Unix milliseconds of an ISO timestamp (the SDK's ``created_at``); now if it cannot be parsed."""
    try:
        return int(datetime.fromisoformat(iso_timestamp).timestamp() * 1000)
    except (TypeError, ValueError):
        return now_ms()


def now_ms() -> int:
    """Current unix time in milliseconds."""
    return time.time_ns() // 1_000_000
