"""The rows the collector writes: plain dataclasses, produced by the pure mapping.

Step and run rows are not frozen, though nothing changes one after the mapping made it
(a changed row is a new one, made with ``dataclasses.replace``): a frozen dataclass sets
each field through ``object.__setattr__``, which made building a 25-field ``StepRow``
five times slower, a tenth of the collector's time per span. They were never hashable
anyway: their ``attributes`` and ``metrics`` are dicts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def compact_json(value: Any) -> str:
    """``value`` as compact JSON text.

    orjson does the common case, several times faster than the standard library; what it
    refuses (integers past 64 bits, keys that are not strings, lone surrogates) goes to
    the standard library, so nothing that encoded before fails now. Callers pass values
    the mapping made JSON-safe: orjson would write NaN as ``null`` where the standard
    library writes ``NaN``, and neither is what a producer sent. The text is decoded from
    orjson's bytes at once: each of those holds a 4 KiB buffer however short the JSON,
    which rows kept for a whole request must not pin.
    """
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return _COMPACT.encode(value)


class JsonCache:
    """A row's JSON values, each encoded at most once.

    The artifact plan needs a value's encoded size and, when the value moves to artifact
    storage, its text; the ``COPY`` row needs the same text. Entries are keyed by the
    value's identity and keep the value alive, so a row rebuilt with another value
    (``dataclasses.replace``, sharing this cache) never gets a stale text.
    """

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[int, tuple[Any, str]] = {}

    def text(self, value: Any) -> str:
        """``compact_json(value)``, encoded on the first call for this very object."""
        entry = self._entries.get(id(value))
        if entry is not None and entry[0] is value:
            return entry[1]
        text = compact_json(value)
        self._entries[id(value)] = (value, text)
        return text

    def size(self, value: Any) -> int:
        """Bytes of ``value``'s JSON in UTF-8 (ASCII text, the usual, is not encoded)."""
        text = self.text(value)
        return len(text) if text.isascii() else len(text.encode())

    def column(self, value: Any) -> str | None:
        """The JSON text of ``value`` for a ``COPY`` row (``None`` stays SQL NULL)."""
        return None if value is None else self.text(value)

    def put(self, value: Any, text: str) -> None:
        """Record ``text``, which must equal ``compact_json(value)``, made along the way."""
        self._entries[id(value)] = (value, text)


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


@dataclass(slots=True)
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
    encoded: JsonCache = field(default_factory=JsonCache, compare=False, repr=False)
    """Encoded JSON of this row's values, shared by the artifact plan and the ``COPY`` row."""


@dataclass(slots=True)
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
    encoded: JsonCache = field(default_factory=JsonCache, compare=False, repr=False)

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


def adjustments_json(row: StepRow | RunRow) -> str | None:
    """The row's ``ingest_warnings`` column: its adjustments as JSON, or NULL if none."""
    return compact_json([a.as_json() for a in row.adjustments]) if row.adjustments else None
