"""The one ingestion path shared by every transport.

admitted bytes → decompress, decode and map (a large body in a worker thread) → artifacts
to storage → one Postgres transaction → acknowledge. While the database is unreachable the
request is written to the outage spool instead (durably, before acknowledging) and
replayed later through :meth:`Ingestor.replay`; with no spool, or a full one, it is
refused as retryable. The outcome says how many spans were rejected and what was changed,
for the OTLP ``partial_success`` field.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol, TypeVar

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from collector_service.errors import SpoolFull, StorageUnavailable
from collector_service.ingest.decode import (
    decode_events,
    decode_json,
    decode_protobuf,
    decompress,
)
from collector_service.ingest.events import map_events
from collector_service.ingest.mapping import map_request
from collector_service.ingest.offload import ArtifactOffloader
from collector_service.store.postgres import PostgresStore
from collector_service.store.rows import MappedBatch, RejectedSpan, RunRow, StepRow
from collector_service.telemetry.metrics import CollectorMetrics

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 2000
OTLP_TRACES = "otlp-traces"
"""Spool record kind: a binary-protobuf ExportTraceServiceRequest."""
XRAY_EVENTS = "xray-events"
"""Spool record kind: a binary-protobuf ``xray.v1.EventBatch`` (``POST /events``)."""

INLINE_DECODE_BYTES = 1024 * 1024
"""Uncompressed bodies up to this size are decoded and mapped on the event loop itself;
larger or compressed ones in a worker thread (see :func:`decode_where_cheapest`)."""

Format = Literal["protobuf", "json"]
CommitListener = Callable[[bytes], None]
_Result = TypeVar("_Result")


class SpoolLike(Protocol):
    """What the pipeline needs of the outage spool (``store.spool.Spool``)."""

    def append(self, kind: str, payload: bytes) -> None: ...


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
    spooled: bool = False

    def response(self) -> ExportTraceServiceResponse:
        """The OTLP response: ``partial_success`` is set only when there is something to say."""
        if not self.rejected and not self.message:
            return ExportTraceServiceResponse()
        return ExportTraceServiceResponse(partial_success=ExportTracePartialSuccess(
            rejected_spans=len(self.rejected), error_message=self.message))


@dataclass(frozen=True)
class _Decoded:
    request: ExportTraceServiceRequest
    batch: MappedBatch
    protobuf: bytes | None
    """The request as binary protobuf, when the body already was (spool, forwarding)."""


class Ingestor:
    """Maps and stores export requests the transports have admitted."""

    def __init__(self, store: PostgresStore, offloader: ArtifactOffloader,
                 metrics: CollectorMetrics, max_request_bytes: int,
                 under_pressure: Callable[[], bool] = lambda: False,
                 spool: SpoolLike | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._store = store
        self._offloader = offloader
        self._metrics = metrics
        self._max_request_bytes = max_request_bytes
        self._under_pressure = under_pressure
        self._spool = spool
        self._clock = clock
        self._listeners: list[CommitListener] = []

    def on_commit(self, listener: CommitListener) -> None:
        """Call ``listener`` with each committed request, as binary protobuf."""
        self._listeners.append(listener)

    async def ingest(self, body: bytes, fmt: Format = "protobuf",
                     encoding: str | None = None) -> IngestOutcome:
        """Store every X-Ray span in ``body``; return only once it is committed or spooled."""
        decoded = await decode_where_cheapest(self._decode, body, fmt, encoding)
        outcome = await self._store_or_spool(
            decoded.batch, OTLP_TRACES,
            lambda: decoded.protobuf or decoded.request.SerializeToString())
        if not outcome.spooled:
            self._committed(decoded)
        return outcome

    async def ingest_events(self, body: bytes, fmt: Format = "protobuf",
                            encoding: str | None = None) -> IngestOutcome:
        """Store the X-Ray events in ``body`` the way :meth:`ingest` stores spans (events
        are X-Ray's own format: commit listeners, which forward OTLP, are not told)."""
        batch, payload = await decode_where_cheapest(self._decode_events, body, fmt, encoding)
        return await self._store_or_spool(batch, XRAY_EVENTS, lambda: payload)

    async def _store_or_spool(self, batch: MappedBatch, kind: str,
                              payload: Callable[[], bytes]) -> IngestOutcome:
        """Store ``batch``; while the database is down, spool the request instead (as
        ``kind``, its bytes made by ``payload`` only then). With no spool, refuse."""
        self._metrics.spans_received.inc(_xray_spans(batch))
        if self._spool is not None and not self._store.available:
            return await self._spool_payload(kind, payload(), batch)
        try:
            return await self._store_batch(batch)
        except StorageUnavailable:
            if self._spool is None:
                raise
            return await self._spool_payload(kind, payload(), batch)

    async def replay(self, kind: str, payload: bytes) -> None:
        """Store one spooled request; raises StorageUnavailable while the database is down."""
        if kind == XRAY_EVENTS:
            batch, _ = await decode_where_cheapest(self._decode_events, payload, "protobuf", None)
            await self._store_batch(batch)
            return
        if kind != OTLP_TRACES:
            logger.error("spool record of unknown kind %r skipped", kind)
            return
        decoded = await decode_where_cheapest(self._decode, payload, "protobuf", None)
        await self._store_batch(decoded.batch)
        self._committed(decoded)

    def _decode(self, body: bytes, fmt: Format, encoding: str | None) -> _Decoded:
        payload = decompress(body, encoding, self._max_request_bytes)
        if fmt == "json":
            request = decode_json(payload)
            return _Decoded(request, map_request(request, self._clock()), None)
        request = decode_protobuf(payload)
        return _Decoded(request, map_request(request, self._clock()), payload)

    def _decode_events(self, body: bytes, fmt: Format,
                       encoding: str | None) -> tuple[MappedBatch, bytes]:
        payload = decompress(body, encoding, self._max_request_bytes)
        events = decode_events(payload, as_json=fmt == "json")
        protobuf = events.SerializeToString() if fmt == "json" else payload
        return map_events(events, self._clock()), protobuf

    async def _store_batch(self, batch: MappedBatch) -> IngestOutcome:
        pressure = self._under_pressure()
        steps, artifact_refs = await self._offloader.offload(batch.steps, pressure)
        runs, run_refs = await self._offloader.offload_runs(batch.runs, pressure)
        started = time.perf_counter()
        result = await self._store.write(runs, steps, [*artifact_refs, *run_refs])
        self._metrics.batch_write_seconds.observe(time.perf_counter() - started)
        rejected = batch.rejected + result.rejected
        adjusted = _adjusted(runs, steps)
        outcome = IngestOutcome(
            steps=len(steps), runs=len(runs), steps_inserted=result.steps_inserted,
            ignored_spans=batch.ignored_spans, rejected=rejected, adjusted=tuple(adjusted),
            message=describe(rejected, adjusted),
        )
        self._count(outcome)
        return outcome

    async def _spool_payload(self, kind: str, payload: bytes, batch: MappedBatch) -> IngestOutcome:
        """Keep the request durably until the database is back; refuse if there is no room."""
        assert self._spool is not None
        try:
            await asyncio.to_thread(self._spool.append, kind, payload)
        except SpoolFull as exc:
            self._metrics.refusals.labels("spool_full").inc()
            raise StorageUnavailable(f"database unavailable and {exc}") from exc
        self._metrics.spans_spooled.inc(_xray_spans(batch))
        adjusted = _adjusted(batch.runs, batch.steps)
        return IngestOutcome(
            steps=len(batch.steps), runs=len(batch.runs), steps_inserted=0,
            ignored_spans=batch.ignored_spans, rejected=batch.rejected,
            adjusted=tuple(adjusted), message=describe(batch.rejected, adjusted), spooled=True)

    def _committed(self, decoded: _Decoded) -> None:
        if not self._listeners:
            return
        payload = decoded.protobuf or decoded.request.SerializeToString()
        for listener in self._listeners:
            try:
                listener(payload)
            except Exception:  # a listener never fails the request it is told about
                logger.exception("commit listener failed")

    def _count(self, outcome: IngestOutcome) -> None:
        metrics = self._metrics
        metrics.spans_stored.inc(outcome.steps_inserted)
        metrics.runs_received.inc(outcome.runs)
        metrics.spans_rejected.inc(len(outcome.rejected))
        metrics.spans_adjusted.inc(len(outcome.adjusted))
        metrics.spans_ignored.inc(outcome.ignored_spans)


async def decode_where_cheapest(decode: Callable[[bytes, Format, str | None], _Result],
                                body: bytes, fmt: Format, encoding: str | None) -> _Result:
    """``decode(body, fmt, encoding)``: on the event loop for an uncompressed body of at
    most :data:`INLINE_DECODE_BYTES`, else in a worker thread.

    The thread bought no parallelism (mapping is Python, and only one thread of a process
    runs Python at a time) but cost a worker 6% more CPU per span and kept it waiting:
    the hand-off, and the GIL passed back and forth between the two threads. So a usual
    request, the OpenTelemetry SDK's batch of 512 spans (about 280 KB as protobuf, 560 KB
    as JSON, mapped in 7-30 ms), is mapped in place. A larger body, or a compressed one
    (whose size says little about the work), still goes to a thread, so the loop keeps
    serving other requests while it is mapped."""
    if encoding in (None, "identity") and len(body) <= INLINE_DECODE_BYTES:
        return decode(body, fmt, encoding)
    return await asyncio.to_thread(decode, body, fmt, encoding)


def _xray_spans(batch: MappedBatch) -> int:
    """Steps and run spans; runs implied by their steps are not spans of their own."""
    return len(batch.steps) + sum(1 for run in batch.runs if run.from_run_span)


def _adjusted(runs: Sequence[RunRow], steps: Sequence[StepRow]) -> list[RunRow | StepRow]:
    """The rows stored with a change to what the producer sent, runs first."""
    adjusted: list[RunRow | StepRow] = [run for run in runs if run.adjustments]
    adjusted.extend(step for step in steps if step.adjustments)
    return adjusted


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
