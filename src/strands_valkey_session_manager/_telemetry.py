"""OpenTelemetry spans and metrics for every operation; a no-op when OpenTelemetry is absent.

One span per operation of either store (``svsm.<operation>``, ``svsm.storage.<verb>`` for
``ValkeyStorage``), with the session id (repository operations), the number of round trips and the
bytes sent and received; metrics ``svsm.operations``, ``svsm.round_trips``,
``svsm.bytes.written``, ``svsm.bytes.read``, ``svsm.operation.duration`` (ms) and
``svsm.restore.messages`` (messages returned per ``list_messages``). No message content is ever
put on a span, a metric or a log line. Measured in the engine's plan runners (``_engine.py``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

try:  # strands-agents depends on opentelemetry-api, but keep working without it
    from opentelemetry import metrics, trace
    from opentelemetry.trace import Status, StatusCode
except ImportError:  # pragma: no cover - exercised only where OpenTelemetry is not installed
    trace = None  # type: ignore[assignment]
    metrics = None  # type: ignore[assignment]

_SCOPE = "strands_valkey_session_manager"

if trace is not None and metrics is not None:
    _tracer: Any = trace.get_tracer(_SCOPE)
    _meter = metrics.get_meter(_SCOPE)
    _operations = _meter.create_counter("svsm.operations", description="repository operations")
    _round_trips = _meter.create_counter("svsm.round_trips", description="network round trips")
    _written = _meter.create_counter("svsm.bytes.written", unit="By", description="argument bytes sent")
    _read = _meter.create_counter("svsm.bytes.read", unit="By", description="reply bytes received")
    _duration = _meter.create_histogram("svsm.operation.duration", unit="ms", description="operation time")
    _restored = _meter.create_histogram("svsm.restore.messages", description="messages per list_messages")
else:  # pragma: no cover
    _tracer = None


def _collects(provider: object) -> bool:
    """Whether a provider is an application's: the API's own providers (its proxies before one is
    set, its no-op ones) live in the API's packages and collect nothing."""
    return not type(provider).__module__.startswith(("opentelemetry.trace", "opentelemetry.metrics"))


def _configured() -> bool:
    """Whether an application installed a tracer or meter provider (measuring for the API's
    defaults only costs time on the hot path). Public API only: ``get_tracer_provider()`` and
    ``get_meter_provider()`` return the installed provider, else the API's proxy."""
    return _collects(trace.get_tracer_provider()) or _collects(metrics.get_meter_provider())


_collecting: list[bool] = []  # [True] once an application's provider was seen


def collecting() -> bool:
    """Whether operations are measured: :func:`_configured`, remembered once true (an installed
    global provider is never replaced or removed, so it stays true for the process's life). While
    nothing is installed the check is made again per operation: the public API offers no cheaper
    way to notice a provider installed later (``get_tracer_provider()`` and ``get_meter_provider()``
    each read ``os.environ``, about 1 µs in all)."""
    if _collecting:
        return True
    if _tracer is None or not _configured():
        return False
    _collecting.append(True)
    return True


def _size(value: Any) -> int:
    if isinstance(value, (bytes, bytearray, str)):
        return len(value)
    if isinstance(value, (list, tuple)):
        return sum(_size(v) for v in value)
    if isinstance(value, dict):
        return sum(_size(k) + _size(v) for k, v in value.items())
    return 0


def _call_size(call: Any) -> int:
    if isinstance(call, Sequence) and not hasattr(call, "args"):
        return sum(_call_size(c) for c in call)
    return _size(getattr(call, "keys", ())) + _size(call.args)


class Operation:
    """Measures one plan run: started at its first round trip, ended when the plan finishes."""

    __slots__ = ("_bytes_read", "_bytes_written", "_name", "_session_id", "_span", "_started", "_trips")

    def __init__(self) -> None:
        self._span: Any = None
        self._name = ""
        self._session_id = ""
        self._trips = 0
        self._bytes_written = 0
        self._bytes_read = 0
        self._started = 0.0

    def step(self, operation: str, session_id: str, call: Any) -> None:
        """A round trip is about to be sent."""
        if self._trips < 0 or _tracer is None:
            return
        if self._span is None:
            if not collecting():
                self._trips = -1  # nobody collects: measure nothing for this operation
                return
            self._name, self._session_id = operation, session_id
            self._started = time.perf_counter()
            attributes = {"svsm.session_id": session_id} if session_id else {}
            self._span = _tracer.start_span(f"svsm.{operation}", attributes=attributes)
        self._trips += 1
        self._bytes_written += _call_size(call)

    def reply(self, reply: Any) -> None:
        """A round trip's reply arrived."""
        if self._span is not None and self._trips > 0:
            self._bytes_read += _size(reply)

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        """The plan returned (or raised)."""
        span = self._span
        if span is None:
            return
        attributes = {"svsm.operation": self._name}
        span.set_attribute("svsm.round_trips", self._trips)
        span.set_attribute("svsm.bytes_written", self._bytes_written)
        span.set_attribute("svsm.bytes_read", self._bytes_read)
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            attributes["svsm.error"] = type(error).__name__
        if self._name == "list_messages" and isinstance(result, list):
            span.set_attribute("svsm.messages", len(result))
            _restored.record(len(result))
        span.end()
        _operations.add(1, attributes)
        _round_trips.add(self._trips, attributes)
        _written.add(self._bytes_written, attributes)
        _read.add(self._bytes_read, attributes)
        _duration.record((time.perf_counter() - self._started) * 1000, attributes)
