"""A run's version: ``xray.run.version`` on the run span, else the resource's
``service.version``; stored in ``xray_runs.version`` and kept when steps arrive later."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import psycopg
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import xray_otel as xray
from collector_service.ingest.mapping import map_request
from collector_service.store.postgres import PostgresStore
from tests.otlp_builders import key_values, request, span
from xray_otel import conventions as c

RECEIVED = datetime(2026, 11, 1, tzinfo=UTC)


def versioned_request(run_attrs: dict[str, object],
                      service_version: str | None) -> ExportTraceServiceRequest:
    built = request(span("run", {c.RUN_PIPELINE: "p", c.RUN_ID: "r", **run_attrs}),
                    span("s", {c.RUN_ID: "r", c.STEP_TYPE: "filter", c.STEP_NAME: "f"}))
    if service_version is not None:
        built.resource_spans[0].resource.attributes.extend(
            key_values({c.SERVICE_VERSION: service_version}))
    return built


def test_run_version_wins_over_service_version() -> None:
    (run,) = map_request(versioned_request({c.RUN_VERSION: "v2"}, "1.0.0"), RECEIVED).runs
    assert run.version == "v2" and c.RUN_VERSION not in run.attributes


def test_service_version_is_the_fallback_and_absent_is_null() -> None:
    (run,) = map_request(versioned_request({}, "1.0.0"), RECEIVED).runs
    assert run.version == "1.0.0"
    (run,) = map_request(versioned_request({}, None), RECEIVED).runs
    assert run.version is None


def test_version_is_stored_and_survives_late_steps(db: psycopg.Connection,
                                                   migrated_url: str) -> None:
    batch = map_request(versioned_request({c.RUN_VERSION: "v2"}, None), RECEIVED)
    late = map_request(request(span("s2", {c.RUN_ID: "r", c.STEP_TYPE: "rank",
                                           c.STEP_NAME: "g"})), RECEIVED)

    async def write() -> None:
        store = PostgresStore(migrated_url, max_size=2)
        await store.open()
        try:
            await store.write(batch.runs, batch.steps)
            await store.write(late.runs, late.steps)
        finally:
            await store.close()

    asyncio.run(write())
    assert db.execute("SELECT version FROM xray_runs WHERE run_id = 'r'").fetchone() == ("v2",)


def test_sdk_run_sends_its_version() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with xray.run("p", version="2026.11", tracer_provider=provider):
        pass
    (finished,) = exporter.get_finished_spans()
    assert finished.attributes is not None
    assert finished.attributes[c.RUN_VERSION] == "2026.11"
