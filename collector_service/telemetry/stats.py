"""Counters of what the collector did, served as JSON on ``GET /stats``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class IngestStats:
    """Running totals since start-up. Mutated only on the collector's event loop."""

    requests: int = 0
    steps_received: int = 0
    steps_inserted: int = 0
    runs_received: int = 0
    spans_rejected: int = 0
    spans_adjusted: int = 0
    spans_ignored: int = 0
    refused_overloaded: int = 0
    refused_storage_unavailable: int = 0
    artifacts_stored: int = 0
    artifact_bytes_stored: int = 0
    artifacts_downgraded: int = 0
    downgrade_reasons: dict[str, int] = field(default_factory=dict)

    def count_downgrade(self, kind: str) -> None:
        """Count one payload downgraded to a summary, by kind (``too_large``, ``store_failed``…)."""
        self.artifacts_downgraded += 1
        self.downgrade_reasons[kind] = self.downgrade_reasons.get(kind, 0) + 1

    def as_json(self) -> dict[str, Any]:
        return asdict(self)
