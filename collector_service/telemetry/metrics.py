"""The collector's Prometheus metrics, one registry per collector instance.

Components count through :class:`CollectorMetrics`; ``GET /metrics`` serves the registry in
Prometheus' text format and ``GET /stats`` a JSON view of the same numbers. A registry
per instance (never the global one) lets tests and embedders run several collectors in
one process. Components with metrics of their own (forwarding, authentication, the spool)
register them in the same registry.

Worker processes (``xray collector --workers N``) keep their values in files shared
through prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by the
supervisor before any worker starts): whichever worker a scrape reaches answers for the
whole collector. Counters and histograms are summed over workers (a restarted worker's
counts carry on), gauges say in ``multiprocess_mode`` how they combine, and
``xray_worker_requests`` counts each worker process's answers, by pid.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as PROMETHEUS_CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

__all__ = ["PROMETHEUS_CONTENT_TYPE", "CollectorMetrics"]

_WRITE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_POOL_REFRESH_S = 1.0


class CollectorMetrics:
    """Every counter, gauge and histogram the collector itself keeps."""

    def __init__(self, registry: CollectorRegistry | None = None,
                 multiprocess_dir: Path | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._multiprocess_dir = multiprocess_dir
        r = self.registry
        self.requests = Counter(
            "xray_requests", "Export requests answered, by transport and OTLP status code",
            ["transport", "code"], registry=r)
        self.refusals = Counter(
            "xray_refusals", "Requests refused with a retryable status, by reason",
            ["reason"], registry=r)
        self.spans_received = Counter(
            "xray_spans_received", "X-Ray spans (steps and run spans) decoded", registry=r)
        self.spans_stored = Counter(
            "xray_spans_stored", "Step rows newly inserted (replays are not counted)",
            registry=r)
        self.spans_spooled = Counter(
            "xray_spans_spooled", "X-Ray spans written to the outage spool", registry=r)
        self.spans_rejected = Counter(
            "xray_spans_rejected", "Spans refused (reported in partial_success)", registry=r)
        self.spans_adjusted = Counter(
            "xray_spans_adjusted", "Spans stored with a value changed to fit its column",
            registry=r)
        self.spans_ignored = Counter(
            "xray_spans_ignored", "Spans without X-Ray attributes (not stored)", registry=r)
        self.runs_received = Counter(
            "xray_runs_received", "Run rows written or completed", registry=r)
        self.batch_write_seconds = Histogram(
            "xray_batch_write_seconds", "Time to commit one request's rows to Postgres",
            buckets=_WRITE_BUCKETS, registry=r)
        self.inflight_requests = Gauge(
            "xray_inflight_requests", "Requests admitted and not yet answered",
            multiprocess_mode="livesum", registry=r)
        self.inflight_bytes = Gauge(
            "xray_inflight_bytes", "Bytes of requests admitted and not yet answered",
            multiprocess_mode="livesum", registry=r)
        self.db_up = Gauge(
            "xray_db_up", "1 while the database answers, 0 while it is unreachable",
            multiprocess_mode="livemin", registry=r)
        self.pool_in_use = Gauge(
            "xray_pool_connections_in_use", "Postgres connections lent out by the pool",
            multiprocess_mode="livesum", registry=r)
        self.artifacts_stored = Counter(
            "xray_artifacts_stored", "Payloads written to artifact storage", registry=r)
        self.artifact_bytes_stored = Counter(
            "xray_artifact_bytes_stored", "Bytes written to artifact storage", registry=r)
        self.artifacts_downgraded = Counter(
            "xray_artifacts_downgraded", "Payloads kept only as a summary, by reason",
            ["reason"], registry=r)

    def watch_pool(self, in_use: Callable[[], float]) -> None:
        """Read the pool's lent-out connections at each scrape (every second, for workers:
        another worker answers the scrape from the shared files)."""
        if self._multiprocess_dir is None:
            self.pool_in_use.set_function(in_use)
            return

        def refresh() -> None:
            while True:
                with contextlib.suppress(Exception):  # a closing pool: try again later
                    self.pool_in_use.set(in_use())
                time.sleep(_POOL_REFRESH_S)

        threading.Thread(target=refresh, name="xray-pool-gauge", daemon=True).start()

    def count_downgrade(self, reason: str) -> None:
        self.artifacts_downgraded.labels(reason).inc()

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return bytes(generate_latest(self._exposed()))

    def as_json(self) -> dict[str, Any]:
        """The ``/stats`` view: totals by name, labelled series as nested objects."""
        view: dict[str, Any] = {}
        # Combined values come with their labels sorted by name; keep this process's order.
        order = {family.name: list(family.samples[0].labels) for family in self.registry.collect()
                 if family.samples} if self._multiprocess_dir is not None else {}
        for family in self._exposed().collect():
            for sample in family.samples:
                if sample.name.endswith(("_created", "_bucket")):
                    continue
                name = sample.name.removeprefix("xray_")
                if not sample.labels:
                    view[name] = _number(sample.value)
                    continue
                branch = view.setdefault(name, {})
                known = order.get(family.name, [])
                keys = [*known, *(key for key in sample.labels if key not in known)]
                label = "/".join(sample.labels.get(key, "") for key in keys)
                branch[label] = _number(sample.value)
        return view


    def _exposed(self) -> CollectorRegistry:
        """This collector's registry, or, for workers, every worker's values combined."""
        if self._multiprocess_dir is None:
            return self.registry
        combined = CollectorRegistry()
        path = str(self._multiprocess_dir)
        MultiProcessCollector(combined, path=path)  # type: ignore[no-untyped-call]
        combined.register(_RequestsByWorker(self._multiprocess_dir))
        return combined


class _RequestsByWorker(Collector):
    """``xray_worker_requests{pid}``: answers per worker process, from its own file."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("xray_worker_requests",
                                     "Export requests answered, by worker process",
                                     labels=["pid"])
        for path in sorted(self._directory.glob("counter_*.db")):
            merged = MultiProcessCollector.merge([str(path)])  # type: ignore[no-untyped-call]
            total = sum(sample.value for metric in merged if metric.name == "xray_requests"
                        for sample in metric.samples if sample.name == "xray_requests_total")
            family.add_metric([path.stem.removeprefix("counter_")], total)
        yield family


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value
