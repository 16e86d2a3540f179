"""With the collector down, a pipeline's stderr gets X-Ray's own warning, rate limited,
instead of the OTLP exporter's retry lines; the counts stay in ``xray.stats()``.

Real OTLP exporters against a closed port on 127.0.0.1, in a subprocess (``configure``
sets the global provider and the logging filters for the life of the process).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = """
import logging, sys
import xray_otel as xray
from opentelemetry.exporter.otlp.proto.{module} import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

xray.configure(service_name="quiet", endpoint="{endpoint}", protocol="{protocol}",
               insecure=True, export_timeout=3, schedule_delay_millis=50)
for batch in range(3):
    with xray.run("p"), xray.step("filter", name="f"):
        pass
    xray.flush(timeout=10)
stats = xray.stats()
print("failed", stats.failed, "exported", stats.exported, flush=True)
print("--- user exporter ---", file=sys.stderr, flush=True)
# The same exporter class, created by the program itself, still logs as usual.
own = TracerProvider()
own.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint="{endpoint}"{extra},
                                                            timeout=2)))
own.get_tracer("t").start_span("mine").end()
"""


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_collector_down_gives_one_xray_warning(closed_port: int, protocol: str) -> None:
    grpc = protocol == "grpc"
    endpoint = f"http://127.0.0.1:{closed_port}" + ("" if grpc else "/v1/traces")
    script = SCRIPT.format(
        module="grpc.trace_exporter" if grpc else "http.trace_exporter",
        endpoint=endpoint, protocol=protocol, extra=", insecure=True" if grpc else "")
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)],
                            capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, "OTEL_PYTHON_LOG_LEVEL": "info"})
    assert result.returncode == 0, result.stderr
    failed, exported = result.stdout.split()[1::2]
    assert (int(failed), int(exported)) == (6, 0), result.stdout  # 3 runs x (run + step)
    ours, _, theirs = result.stderr.partition("--- user exporter ---")
    lines = [line for line in ours.splitlines() if line.strip()]
    assert lines == ["xray: exporting 2 spans failed (collector down?)"], ours
    assert "retrying" not in ours.lower() and "Transient error" not in ours
    assert theirs.strip(), "the program's own exporter should still log its failures"
