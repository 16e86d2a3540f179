"""The public API is exactly ``__all__``, and importing the package has no side effects."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import xray_otel

EXPECTED = {
    "ArtifactUploader",
    "ContextThreadPoolExecutor",
    "Run",
    "S3ArtifactUploader",
    "Step",
    "StepSpec",
    "StepType",
    "XRaySpanProcessor",
    "XRayStats",
    "configure",
    "current_run_id",
    "flush",
    "propagate",
    "record",
    "run",
    "shutdown",
    "stats",
    "step",
}


def test_all_is_pinned() -> None:
    assert set(xray_otel.__all__) == EXPECTED
    assert len(xray_otel.__all__) == len(EXPECTED)


def test_every_exported_name_resolves() -> None:
    for name in xray_otel.__all__:
        assert getattr(xray_otel, name) is not None, name


def test_unknown_attribute_raises_attribute_error() -> None:
    try:
        xray_otel.no_such_member  # noqa: B018
    except AttributeError as exc:
        assert "no_such_member" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_has_no_side_effects() -> None:
    """No SDK import, no threads, no provider, no atexit hook: checked in a fresh interpreter."""
    script = textwrap.dedent(
        """
        import atexit, sys, threading
        from opentelemetry import trace
        before = atexit._ncallbacks()
        import xray_otel as xray

        @xray.step("filter")
        def f(xs):
            xray.record(candidates_in=len(xs))
            return xs

        with xray.run("p", entity="e"):
            f([1, 2])
        sdk = sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk"))
        exporters = sorted(m for m in sys.modules if m.startswith("opentelemetry.exporter"))
        assert not sdk, sdk
        assert not exporters, exporters
        assert threading.active_count() == 1, threading.enumerate()
        assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
        assert atexit._ncallbacks() == before
        xray.XRaySpanProcessor  # the lazy member loads the SDK on first use
        assert "opentelemetry.sdk.trace" in sys.modules
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
