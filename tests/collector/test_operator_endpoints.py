"""What operators read: Prometheus /metrics, the JSON /stats view, gRPC health, /readyz."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from prometheus_client.parser import text_string_to_metric_families

from tests.fix_collector import RunningCollector
from tests.otlp_builders import request, span
from xray_otel import conventions as c


def scrape(collector: RunningCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"{collector.http_url}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_what_the_collector_did(collector: RunningCollector,
                                              db: psycopg.Connection) -> None:
    stub = TraceServiceStub(grpc.insecure_channel(collector.grpc_target))
    stub.Export(request(span("s1", {c.STEP_TYPE: "filter"}), span("s2", {c.STEP_TYPE: "rank"}),
                        span("plain", {"http.method": "GET"})))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(
            f"{collector.http_url}/v1/traces", data=b"\x0a\xff", method="POST",
            headers={"Content-Type": "application/x-protobuf"}), timeout=10)
    with refused.value:
        assert refused.value.code == 400
    samples = scrape(collector)
    assert samples[("xray_requests_total", (("code", "ok"), ("transport", "grpc")))] == 1
    assert samples[("xray_requests_total",
                    (("code", "invalid_argument"), ("transport", "http")))] == 1
    # two steps and the run they imply; the plain span is not X-Ray data
    assert samples[("xray_spans_received_total", ())] == 2
    assert samples[("xray_spans_stored_total", ())] == 2
    assert samples[("xray_spans_ignored_total", ())] == 1
    assert samples[("xray_db_up", ())] == 1
    assert samples[("xray_inflight_requests", ())] == 0
    assert samples[("xray_batch_write_seconds_count", ())] == 1
    assert ("xray_pool_connections_in_use", ()) in samples


def test_stats_is_a_json_view_of_the_metrics(collector: RunningCollector,
                                             db: psycopg.Connection) -> None:
    TraceServiceStub(grpc.insecure_channel(collector.grpc_target)).Export(
        request(span("s1", {c.STEP_TYPE: "filter"})))
    with urllib.request.urlopen(f"{collector.http_url}/stats", timeout=10) as response:
        stats = json.loads(response.read())
    assert stats["requests_total"] == {"grpc/ok": 1}
    assert stats["spans_stored_total"] == 1


def test_grpc_health_and_readyz_say_serving(collector: RunningCollector,
                                            db: psycopg.Connection) -> None:
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(collector.grpc_target))
    for service in ("", "opentelemetry.proto.collector.trace.v1.TraceService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    with urllib.request.urlopen(f"{collector.http_url}/readyz", timeout=10) as response:
        assert json.loads(response.read())["status"] == "ready"
