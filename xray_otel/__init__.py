"""X-Ray: make multi-step decision pipelines debuggable with OpenTelemetry.

Each business step becomes a span with standardized ``xray.*`` attributes (see
:mod:`xray_otel.conventions`); a collector stores them in Postgres::

    import xray_otel as xray

    xray.configure(service_name="competitor-finder")   # once, at start-up

    @xray.step("filter", count_candidates=True)
    def drop_irrelevant(candidates: list[Product]) -> list[Product]:
        kept = [c for c in candidates if c.score >= 0.7]
        xray.record(why=f"dropped {len(candidates) - len(kept)} below 0.7",
                    metrics={"threshold": 0.7})
        return kept

    with xray.run("competitor_search", entity=asin):
        drop_irrelevant(search(asin))

Steps work on functions, coroutines, generators and async generators, and as
``with xray.step("rank") as s:`` blocks. Steps started in asyncio tasks belong to the
run automatically; for threads wrap the callable with :func:`propagate` or use
:class:`ContextThreadPoolExecutor`.

Promises: X-Ray never fails, blocks or noticeably slows the pipeline. Nothing at run
time raises (misuse of ``@xray.step`` raises when the decorator is applied); the user's
exceptions are recorded and re-raised unchanged; the export queue is bounded and its
overflow dropped and counted (:func:`stats`); process exit waits at most
``exit_timeout`` seconds (default 2) for the collector, dead or alive. While the
collector is failing and that queue is full, runs and steps on the provider
``configure`` created build no span at all (it could only be dropped): the pipeline's
code runs as before, the step counts as dropped and its ``seq`` is skipped, and spans
are built again as soon as an export gets through.

Importing this package has no side effects and needs only ``opentelemetry-api``;
:func:`configure`, :func:`flush`, :func:`shutdown` and :class:`XRaySpanProcessor` load
the SDK on first use.

**With auto-instrumentation** (``opentelemetry-instrument python app.py``): the global
SDK provider already exists, and ``configure()`` adds X-Ray's processors to it instead of
creating one (``service_name`` then comes from ``OTEL_SERVICE_NAME``). If the
auto-configured exporter already sends to the X-Ray collector, call
``configure(export=False)`` to add only :class:`XRaySpanProcessor` (a duplicate export is
harmless — the collector ignores replays — but wasteful). Without ``configure``, adding
``XRaySpanProcessor()`` to any ``TracerProvider`` is enough to get run ids and step order.

**Large values**: values given to :func:`record` are checked when recorded; strings and
bytes over the per-value limit (``max_value_bytes``, 64 KiB; ``max_artifact_bytes``,
2 MiB, for artifacts) become a marked summary
(``prefix…[truncated by xray: N bytes, sha256=…]``) listed in ``xray.sdk.truncated``.
``XRaySpanProcessor`` does the same for attributes present when a span starts. A raw
``span.set_attribute`` after start cannot be intercepted; on a provider created by
``configure``, ``SpanLimits.max_attribute_length`` is set to ``max_value_bytes`` (unless
``OTEL_*ATTRIBUTE_VALUE_LENGTH_LIMIT`` is set), so the SDK cuts such strings at that many
characters, without a marker. Exports are split so no request exceeds 4 MiB. With
``configure(artifact_uploader=xray.S3ArtifactUploader(bucket))``, artifacts over their
limit are uploaded by the producer and only a reference is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xray_otel._context import current_run_id
    from xray_otel._guard import ArtifactUploader
    from xray_otel._processor import XRaySpanProcessor
    from xray_otel._record import record
    from xray_otel._run import Run, run
    from xray_otel._setup import configure, flush, shutdown
    from xray_otel._stats import XRayStats, stats
    from xray_otel._step import Step, StepSpec, step
    from xray_otel._threads import ContextThreadPoolExecutor, propagate
    from xray_otel._uploaders import S3ArtifactUploader
    from xray_otel.conventions import StepType

__all__ = [
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
]

# Where each public name lives. Each loads on first use: the collector imports
# ``xray_otel.conventions`` alone, and ``configure`` and the processor need the SDK.
_LAZY = {
    "ArtifactUploader": "xray_otel._guard",
    "ContextThreadPoolExecutor": "xray_otel._threads",
    "Run": "xray_otel._run",
    "S3ArtifactUploader": "xray_otel._uploaders",
    "Step": "xray_otel._step",
    "StepSpec": "xray_otel._step",
    "StepType": "xray_otel.conventions",
    "XRaySpanProcessor": "xray_otel._processor",
    "XRayStats": "xray_otel._stats",
    "configure": "xray_otel._setup",
    "current_run_id": "xray_otel._context",
    "flush": "xray_otel._setup",
    "propagate": "xray_otel._threads",
    "record": "xray_otel._record",
    "run": "xray_otel._run",
    "shutdown": "xray_otel._setup",
    "stats": "xray_otel._stats",
    "step": "xray_otel._step",
}


def __getattr__(name: str) -> Any:
    """Load each member on first use, so ``import xray_otel`` costs next to nothing."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
