"""Process-wide counters of what X-Ray exported, failed to export, dropped or repaired.

Stdlib only: ``xray.stats()`` must be importable without the OpenTelemetry SDK. The
export path (``_export.py``) and the value guards add to the counters; readers get a
frozen snapshot.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class XRayStats:
    """A snapshot of the SDK's counters since the process started.

    Attributes:
        exported: spans the exporter acknowledged.
        failed: spans handed to the exporter whose export failed (collector down,
            timeout, rejected, exporter raised).
        dropped: spans never handed to the exporter: the bounded queue was full, the
            export path was shut down, or exit came before they could be sent.
        truncated_values: attribute values shortened by the size guard.
        rejected_values: values ``record`` refused (NaN metric, wrong type, ...).
        internal_errors: X-Ray's own errors that were logged and swallowed.
    """

    exported: int = 0
    failed: int = 0
    dropped: int = 0
    truncated_values: int = 0
    rejected_values: int = 0
    internal_errors: int = 0

    def __sub__(self, other: XRayStats) -> XRayStats:
        """The difference of two snapshots, handy to measure one piece of work."""
        return XRayStats(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))


class Counters:
    """Thread-safe counters; ``add`` holds a lock only for an integer addition."""

    __slots__ = ("_lock", "_values")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys((f.name for f in fields(XRayStats)), 0)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] += n

    def snapshot(self) -> XRayStats:
        with self._lock:
            return XRayStats(**self._values)


COUNTERS = Counters()
"""The process-wide counters behind :func:`stats`."""


def stats() -> XRayStats:
    """Return a frozen snapshot of the SDK's counters (exported, failed, dropped, ...)."""
    return COUNTERS.snapshot()
