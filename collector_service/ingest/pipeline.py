"""The one ingestion path shared by the gRPC and HTTP receivers.

decode (receiver) → map (pure) → artifacts to storage → one Postgres transaction →
acknowledge. The outcome says how many spans were rejected and what was changed, for
the OTLP ``partial_success`` field.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from collector_service.errors import Overloaded, StorageUnavailable
from collector_service.ingest.mapping import map_request
from collector_service.ingest.offload import ArtifactOffloader
from collector_service.store.postgres import PostgresStore
from collector_service.store.rows import RejectedSpan, RunRow, StepRow
from collector_service.telemetry.stats import IngestStats

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 2000


@dataclass(frozen=True)
class IngestOutcome:
    """What one export request did."""

    steps: int
    runs: int
    steps_inserted: int
    ignored_spans: int
    rejected: tuple[RejectedSpan, ...]
    adjusted: tuple[RunRow | StepRow, ...]
    message: str

    def response(self) -> ExportTraceServiceResponse:
        """The OTLP response: ``partial_success`` is set only when there is something to say."""
        if not self.rejected and not self.message:
            return ExportTraceServiceResponse()
        return ExportTraceServiceResponse(partial_success=ExportTracePartialSuccess(
            rejected_spans=len(self.rejected), error_message=self.message))


PRESSURE_FRACTION = 0.75
"""Above this share of ``max_inflight`` busy, payloads are downgraded to summaries."""


class Ingestor:
    """Maps and stores export requests; at most ``max_inflight`` at once."""

    def __init__(self, store: PostgresStore, offloader: ArtifactOffloader,
                 max_inflight: int = 32, stats: IngestStats | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._store = store
        self._offloader = offloader
        self._max_inflight = max_inflight
        self._inflight = 0
        self.stats = stats or IngestStats()
        self._clock = clock

    async def ingest(self, request: ExportTraceServiceRequest) -> IngestOutcome:
        """Store every X-Ray span in ``request``; return only after the commit."""
        if self._inflight >= self._max_inflight:
            self.stats.refused_overloaded += 1
            raise Overloaded(retry_after_s=1.0)
        self._inflight += 1
        try:
            outcome = await self._ingest(request)
        except StorageUnavailable:
            self.stats.refused_storage_unavailable += 1
            raise
        finally:
            self._inflight -= 1
        self._count(outcome)
        return outcome

    async def _ingest(self, request: ExportTraceServiceRequest) -> IngestOutcome:
        batch = map_request(request, self._clock())
        under_pressure = self._inflight > self._max_inflight * PRESSURE_FRACTION
        steps, artifact_refs = await self._offloader.offload(batch.steps, under_pressure)
        runs, run_refs = await self._offloader.offload_runs(batch.runs, under_pressure)
        result = await self._store.write(runs, steps, [*artifact_refs, *run_refs])
        rejected = batch.rejected + result.rejected
        adjusted: list[RunRow | StepRow] = [run for run in runs if run.adjustments]
        adjusted.extend(step for step in steps if step.adjustments)
        return IngestOutcome(
            steps=len(steps), runs=len(runs), steps_inserted=result.steps_inserted,
            ignored_spans=batch.ignored_spans, rejected=rejected, adjusted=tuple(adjusted),
            message=describe(rejected, adjusted),
        )

    def _count(self, outcome: IngestOutcome) -> None:
        stats = self.stats
        stats.requests += 1
        stats.steps_received += outcome.steps
        stats.steps_inserted += outcome.steps_inserted
        stats.runs_received += outcome.runs
        stats.spans_rejected += len(outcome.rejected)
        stats.spans_adjusted += len(outcome.adjusted)
        stats.spans_ignored += outcome.ignored_spans


def describe(rejected: Sequence[RejectedSpan], adjusted: Sequence[RunRow | StepRow]) -> str:
    """A bounded, human-readable account of rejected spans and changed values."""
    parts: list[str] = []
    if rejected:
        details = "; ".join(f"span {r.span_id or '?'} (trace {r.trace_id or '?'}): {r.reason}"
                            for r in rejected)
        parts.append(f"{len(rejected)} span(s) rejected: {details}")
    if adjusted:
        details = "; ".join(
            f"span {row.span_id}: " + ", ".join(f"{a.attribute} {a.problem}"
                                                for a in row.adjustments)
            for row in adjusted)
        parts.append(f"{len(adjusted)} span(s) stored with changes: {details}")
    message = ". ".join(parts)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return message

