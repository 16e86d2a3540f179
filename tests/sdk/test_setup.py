"""``xray.configure``: provider selection, exporter choice, ``OTEL_*`` settings, lifecycle."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GRPCExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import xray_otel as xray
from xray_otel import _setup
from xray_otel import conventions as xc
from xray_otel._options import build_export_options

BASE: dict[str, Any] = dict(
    endpoint=None,
    protocol=None,
    headers=None,
    insecure=None,
    compression=None,
    export_timeout_s=None,
    exit_timeout_s=2.0,
    max_queue_size=None,
    max_export_batch_size=None,
    schedule_delay_millis=None,
)


def _inner_exporter() -> Any:
    setup = _setup._current
    assert setup is not None and setup.batch is not None
    return setup.batch.exporter._inner


def test_configure_with_an_explicit_provider_and_exporter(configured: None) -> None:
    provider, exporter = TracerProvider(shutdown_on_exit=False), InMemorySpanExporter()
    before = xray.stats()
    returned = xray.configure(
        tracer_provider=provider, span_exporter=exporter, schedule_delay_millis=50
    )
    assert returned is provider
    with xray.run("p", tracer_provider=provider), xray.step("llm", name="s"):
        pass
    assert xray.flush(timeout=5) is True
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == ["p", "s"]
    seq = next(s for s in exporter.get_finished_spans() if s.name == "s").attributes[xc.STEP_SEQ]  # type: ignore[index]
    assert seq == 1
    assert (xray.stats() - before).exported == 2


def test_configure_twice_keeps_the_first_setup_and_shutdown_allows_again(configured: None) -> None:
    first = xray.configure(
        tracer_provider=TracerProvider(shutdown_on_exit=False), span_exporter=InMemorySpanExporter()
    )
    assert xray.configure(service_name="other") is first
    assert xray.shutdown(timeout=1) is True
    assert xray.shutdown(timeout=1) is True  # idempotent
    second = xray.configure(
        tracer_provider=TracerProvider(shutdown_on_exit=False), span_exporter=InMemorySpanExporter()
    )
    assert second is not first


def test_flush_and_shutdown_without_configure_are_harmless(configured: None) -> None:
    assert xray.flush() is True and xray.shutdown() is True


def test_export_false_adds_only_the_processor(configured: None) -> None:
    provider, exporter = TracerProvider(shutdown_on_exit=False), InMemorySpanExporter()
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider.add_span_processor(SimpleSpanProcessor(exporter))  # e.g. auto-instrumentation's
    xray.configure(tracer_provider=provider, export=False)
    tracer = provider.get_tracer("raw")
    with tracer.start_as_current_span("raw", attributes={xc.STEP_TYPE: "llm"}):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.attributes[xc.STEP_SEQ] == 1  # type: ignore[index]
    assert _setup._current is not None and _setup._current.batch is None


@pytest.mark.parametrize(
    ("protocol", "env", "expected"),
    [
        (None, {}, GRPCExporter),
        ("http/protobuf", {}, HTTPExporter),
        (None, {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, HTTPExporter),
        (
            None,
            {
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
            GRPCExporter,
        ),
        ("grpc", {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, GRPCExporter),
    ],
)
def test_protocol_from_argument_then_environment(
    configured: None,
    monkeypatch: pytest.MonkeyPatch,
    protocol: str | None,
    env: dict[str, str],
    expected: type,
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    xray.configure(protocol=protocol, tracer_provider=TracerProvider(shutdown_on_exit=False))
    assert type(_inner_exporter()) is expected


def test_http_endpoint_is_a_base_url_unless_it_has_a_path(configured: None) -> None:
    xray.configure(
        protocol="http/protobuf",
        endpoint="http://127.0.0.1:4318",
        tracer_provider=TracerProvider(shutdown_on_exit=False),
    )
    assert _inner_exporter()._endpoint == "http://127.0.0.1:4318/v1/traces"
    xray.shutdown(timeout=1)
    xray.configure(
        protocol="http/protobuf",
        endpoint="http://127.0.0.1:4318/custom/traces",
        tracer_provider=TracerProvider(shutdown_on_exit=False),
    )
    assert _inner_exporter()._endpoint == "http://127.0.0.1:4318/custom/traces"


def test_exporters_read_the_standard_variables(
    configured: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector.invalid:4318/v1/traces"
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=secret")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "3")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "64")
    xray.configure(tracer_provider=TracerProvider(shutdown_on_exit=False))
    exporter = _inner_exporter()
    assert exporter._endpoint == "http://collector.invalid:4318/v1/traces"
    assert exporter._client._headers.get("x-api-key") == "secret"
    assert exporter._client._timeout == 3
    assert _setup._current is not None and _setup._current.batch._max_queue_size == 64  # type: ignore[union-attr]


def test_explicit_arguments_win_over_the_environment(
    configured: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://from-env.invalid:4318/v1/traces"
    )
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "64")
    xray.configure(
        protocol="http/protobuf",
        endpoint="http://explicit.invalid:4318",
        headers={"a": "b"},
        export_timeout=1.5,
        max_queue_size=7,
        tracer_provider=TracerProvider(shutdown_on_exit=False),
    )
    exporter = _inner_exporter()
    assert exporter._endpoint == "http://explicit.invalid:4318/v1/traces"
    assert exporter._client._headers.get("a") == "b" and exporter._client._timeout == 1.5
    assert _setup._current is not None and _setup._current.batch._max_queue_size == 7  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kwargs", "env", "message"),
    [
        ({"protocol": "carrier-pigeon"}, {}, "protocol='carrier-pigeon'"),
        ({}, {"OTEL_EXPORTER_OTLP_PROTOCOL": "udp"}, "OTEL_EXPORTER_OTLP_PROTOCOL='udp'"),
        ({}, {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, "http/json"),
        ({}, {"OTEL_BSP_MAX_QUEUE_SIZE": "lots"}, "OTEL_BSP_MAX_QUEUE_SIZE='lots'"),
        ({}, {"OTEL_BSP_SCHEDULE_DELAY": "-5"}, "OTEL_BSP_SCHEDULE_DELAY"),
        ({"max_queue_size": 0}, {}, "max_queue_size"),
        ({"exit_timeout_s": -1.0}, {}, "exit_timeout"),
        ({"compression": "brotli"}, {}, "compression='brotli'"),
    ],
)
def test_bad_settings_fail_at_start_up_naming_the_culprit(
    kwargs: dict[str, Any], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        build_export_options(**{**BASE, **kwargs}, environ=env)
    assert message in str(caught.value)


def test_batch_size_never_exceeds_the_queue() -> None:
    options = build_export_options(**{**BASE, "max_queue_size": 10}, environ={})
    assert (options.max_queue_size, options.max_export_batch_size) == (10, 10)


def _run_script(
    script: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
        cwd=os.getcwd(),
    )


def test_configure_creates_and_sets_the_global_provider(closed_port: int) -> None:
    result = _run_script(
        f"""
        from opentelemetry import trace
        import xray_otel as xray
        from xray_otel import conventions as xc
        provider = xray.configure(service_name="svc", endpoint="http://127.0.0.1:{closed_port}")
        assert trace.get_tracer_provider() is provider
        assert provider.resource.attributes["service.name"] == "svc"
        assert provider._span_limits.max_attribute_length == 2 * 1024 * 1024  # artifacts
        with xray.run("p") as r, xray.step("llm", name="s") as s:
            assert s.span.is_recording() and s.span.attributes[xc.RUN_ID] == r.id
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_configure_adds_to_an_existing_global_sdk_provider() -> None:
    """What ``opentelemetry-instrument`` leaves behind: a global SDK provider with an exporter."""
    result = _run_script(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import xray_otel as xray
        from xray_otel import conventions as xc

        auto = TracerProvider(resource=Resource.create({"service.name": "auto"}))
        memory = InMemorySpanExporter()
        auto.add_span_processor(SimpleSpanProcessor(memory))
        trace.set_tracer_provider(auto)
        assert xray.configure(service_name="ignored", export=False) is auto
        with xray.run("p"):
            with xray.step("llm", name="a"):
                pass
            tracer = trace.get_tracer("raw")
            with tracer.start_as_current_span("b", attributes={xc.STEP_TYPE: "rank"}):
                pass
        seqs = {s.name: s.attributes.get(xc.STEP_SEQ) for s in memory.get_finished_spans()}
        assert seqs == {"a": 1, "b": 2, "p": None}, seqs
        print("ok")
        """,
        env={"OTEL_SERVICE_NAME": "from-env"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_otel_sdk_disabled_records_and_exports_nothing(
    configured: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    exporter = InMemorySpanExporter()
    provider = xray.configure(span_exporter=exporter, set_global=False)
    assert _setup._current is not None and _setup._current.batch is None  # no export thread

    @xray.step("filter")
    def keep(items: list[int]) -> list[int]:
        xray.record(candidates_in=len(items))
        return items[:1]

    with xray.run("off", tracer_provider=provider) as run, xray.step("rank") as step:
        assert keep([1, 2]) == [1]
        assert not run.span.is_recording() and not step.span.is_recording()
    assert xray.flush() is True and exporter.get_finished_spans() == ()
