"""``ValkeyStorage`` reports through the same OpenTelemetry spans and metrics as the repository (the
engine's plan runners measure both). Run in a child process: a process installs its providers once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.servers import ServerProcess

_CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    import valkey
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from strands_valkey_session_manager import ValkeyStorage

    storage = ValkeyStorage(valkey.Valkey.from_url(sys.argv[1]), namespace="otel")
    asyncio.run(storage.write("session/s/a", b"before any provider"))  # measured by nobody
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    asyncio.run(storage.write("session/s/b", b"SECRET-VALUE"))
    asyncio.run(storage.read("session/s/b"))
    asyncio.run(storage.list("session/s/"))
    asyncio.run(storage.delete("session/s/b"))
    spans = [{"name": s.name, "attributes": dict(s.attributes or {})} for s in exporter.get_finished_spans()]
    data = reader.get_metrics_data()
    names = sorted({m.name for r in data.resource_metrics for sm in r.scope_metrics for m in sm.metrics})
    print(json.dumps({"spans": spans, "metrics": names}))
    """
)


@pytest.mark.backends("valkey9")
def test_storage_operations_are_spans_and_metrics(valkey9_server: ServerProcess) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, valkey9_server.url], capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(done.stdout)
    spans = {span["name"]: span["attributes"] for span in report["spans"]}
    assert [span["name"] for span in report["spans"]] == [
        "svsm.storage.write",
        "svsm.storage.read",
        "svsm.storage.list",
        "svsm.storage.delete",
    ]
    assert spans["svsm.storage.write"]["svsm.round_trips"] == 1
    assert spans["svsm.storage.write"]["svsm.bytes_written"] >= len(b"SECRET-VALUE")
    assert spans["svsm.storage.read"]["svsm.bytes_read"] == len(b"SECRET-VALUE")
    assert "svsm.session_id" not in spans["svsm.storage.read"]
    assert "SECRET-VALUE" not in json.dumps(report)
    assert {"svsm.operations", "svsm.round_trips", "svsm.operation.duration"} <= set(report["metrics"])
