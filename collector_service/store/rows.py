"""The rows the collector writes: plain frozen dataclasses, produced by the pure mapping."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def compact_json(value: Any) -> str:
    """``value`` as compact JSON text (one shared encoder: ``json.dumps`` with options
    builds a new encoder on every call, a cost paid per column of every row)."""
    return _COMPACT.encode(value)


@dataclass(frozen=True)
class Adjustment:
    """A change made to a producer's value so the row could be stored."""

    attribute: str
    problem: str

    def as_json(self) -> dict[str, str]:
        """The ``ingest_warnings`` entry; NUL (``jsonb`` refuses it) becomes U+FFFD, since
        the attribute name is the producer's and may hold one."""
        return {"attribute": self.attribute.replace("\x00", "\ufffd"),
                "problem": self.problem.replace("\x00", "\ufffd")}


@dataclass(frozen=True)
class ArtifactValue:
    """A payload bound for artifact storage: an ``xray.artifact.*`` value or an oversized one."""

    attribute: str
    data: bytes
    content_type: str
    uploaded_id: str | None = None
    """Set when the producer uploaded the artifact itself and sent only its reference."""


@dataclass(frozen=True)
class StepRow:
    """One ``xray_steps`` row (``drop_ratio`` and ``duration_ms`` are derived by Postgres)."""

    run_id: str
    seq: int | None
    step_name: str
    step_type: str
    pipeline: str | None
    entity: str | None
    candidates_in: int | None
    candidates_out: int | None
    why: str | None
    why_json: dict[str, Any] | None
    input: Any
    output: Any
    metrics: dict[str, float | int]
    status: str
    error: str | None
    started_at: datetime
    ended_at: datetime | None
    """None while the step is ``running`` (its start event has arrived, its end not yet)."""
    trace_id: str
    span_id: str
    parent_span_id: str | None
    service_name: str | None
    attributes: dict[str, Any]
    adjustments: tuple[Adjustment, ...] = ()
    artifacts: tuple[ArtifactValue, ...] = ()


@dataclass(frozen=True)
class RunRow:
    """One ``xray_runs`` row: from the run span (``span_id`` set) or inferred from steps."""

    run_id: str
    pipeline: str | None
    entity: str | None
    status: str
    error: str | None
    started_at: datetime | None
    ended_at: datetime | None
    trace_id: str
    span_id: str | None
    service_name: str | None
    attributes: dict[str, Any] = field(default_factory=dict)
    adjustments: tuple[Adjustment, ...] = ()
    version: str | None = None

    @property
    def from_run_span(self) -> bool:
        return self.span_id is not None


@dataclass(frozen=True)
class RejectedSpan:
    """A span that cannot be stored at all (it has no usable identity)."""

    trace_id: str
    span_id: str
    reason: str


@dataclass(frozen=True)
class MappedBatch:
    """Everything one export request maps to."""

    runs: tuple[RunRow, ...]
    steps: tuple[StepRow, ...]
    rejected: tuple[RejectedSpan, ...]
    ignored_spans: int


@dataclass(frozen=True)
class ArtifactRef:
    """One ``xray_artifacts`` row: where a step's payload went, or its summary if downgraded."""

    artifact_id: str
    trace_id: str
    span_id: str
    run_id: str
    attribute: str
    size_bytes: int
    content_type: str
    storage: str
    location: str | None
    preview: str
    downgraded: bool = False
    downgrade_reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The reference kept in the step's ``attributes`` in place of the payload."""
        reference: dict[str, Any] = {
            "artifact_id": self.artifact_id, "size_bytes": self.size_bytes,
            "content_type": self.content_type, "preview": self.preview,
        }
        if self.downgraded:
            reference["downgraded"] = self.downgrade_reason or True
        return reference
