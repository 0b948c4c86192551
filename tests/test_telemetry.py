"""OpenTelemetry: one span per operation with round trips and bytes; metrics; never message content."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import SessionStoreUnavailableError, ValkeySessionRepository

SECRET = "my card number is 4111 1111 1111 1111"


@pytest.fixture(scope="module")
def telemetry() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    yield exporter, reader


def _metric_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    points: dict[str, list[Any]] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points.setdefault(metric.name, []).extend(metric.data.data_points)
    return points


def test_spans_and_metrics_describe_each_operation(
    telemetry: tuple[InMemorySpanExporter, InMemoryMetricReader], standalone_client: Any, caplog: Any
) -> None:
    exporter, reader = telemetry
    exporter.clear()
    caplog.set_level(logging.DEBUG, logger="strands_valkey_session_manager")
    repo = ValkeySessionRepository(standalone_client)
    repo.create_session(Session(session_id="s", session_type=SessionType.AGENT))
    repo.create_agent("s", SessionAgent(agent_id="a", state={}, conversation_manager_state={}))
    for i in range(3):
        text = SECRET if i == 1 else "hello"
        repo.create_message(
            "s", "a", SessionMessage(message={"role": "user", "content": [{"text": text}]}, message_id=i)
        )
    assert len(repo.list_messages("s", "a")) == 3
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert {"svsm.create_session", "svsm.create_agent", "svsm.create_message", "svsm.list_messages"} <= set(spans)
    listing = spans["svsm.list_messages"]
    assert listing.attributes is not None
    assert listing.attributes["svsm.session_id"] == "s"
    assert listing.attributes["svsm.round_trips"] == 1
    assert listing.attributes["svsm.messages"] == 3
    assert listing.attributes["svsm.bytes_read"] > len(SECRET)
    append = spans["svsm.create_message"]
    assert append.attributes is not None
    assert append.attributes["svsm.bytes_written"] > 0
    points = _metric_points(reader)
    assert sum(p.value for p in points["svsm.round_trips"]) >= 6
    assert sum(p.value for p in points["svsm.operations"]) >= 6
    assert any(p.sum >= 3 for p in points["svsm.restore.messages"])
    # No message content anywhere: span attributes, events, or log lines.
    for span in exporter.get_finished_spans():
        assert SECRET not in repr(dict(span.attributes or {}))
    assert SECRET not in caplog.text
    assert "session_id=<s> | created session" in caplog.text


def test_a_failed_operation_is_an_error_span(
    telemetry: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    import socket

    import valkey

    exporter, _ = telemetry
    exporter.clear()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    repo = ValkeySessionRepository(valkey.Valkey(port=port, socket_connect_timeout=1), retries=0)
    with pytest.raises(SessionStoreUnavailableError):
        repo.read_session("s")
    (span,) = exporter.get_finished_spans()
    assert span.name == "svsm.read_session"
    assert span.status.status_code == trace.StatusCode.ERROR
