"""The pipelines page: each step's daily median drop ratio and top reject reasons."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_DAYS = 14
MAX_DAYS = 366
SPARK_WIDTH = 160
SPARK_HEIGHT = 28


def parse_days(raw: str) -> int:
    """The window in days from ``?days=``; a clear error for anything but 1..366."""
    if not raw:
        return DEFAULT_DAYS
    try:
        days = int(raw)
    except ValueError:
        raise ValueError(f"days {raw!r} is not a whole number") from None
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days {days} is outside 1..{MAX_DAYS}")
    return days


def since(days: int, now: datetime | None = None) -> datetime:
    """Start of the window: midnight UTC ``days - 1`` days before today."""
    today = (now or datetime.now(UTC)).astimezone(UTC).replace(
        hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days - 1)


@dataclass
class StepTrend:
    """One step of one pipeline: its days (newest first) and a sparkline of the medians."""

    pipeline: str | None
    step_name: str | None
    days: list[dict[str, Any]] = field(default_factory=list)

    @property
    def sparkline(self) -> str:
        """SVG polyline points, oldest day on the left, drop ratio 0..1 bottom to top."""
        medians = [d["median_drop"] for d in reversed(self.days)]
        if not medians:
            return ""
        step = SPARK_WIDTH / max(len(medians) - 1, 1)
        return " ".join(f"{i * step:.1f},{SPARK_HEIGHT * (1 - m):.1f}"
                        for i, m in enumerate(medians) if m is not None)


def group(rows: list[dict[str, Any]]) -> dict[str | None, list[StepTrend]]:
    """Rows of query ``pipeline_days`` (ordered by pipeline, step, day) as trends."""
    pipelines: dict[str | None, list[StepTrend]] = {}
    for row in rows:
        trends = pipelines.setdefault(row["pipeline"], [])
        if not trends or trends[-1].step_name != row["step_name"]:
            trends.append(StepTrend(row["pipeline"], row["step_name"]))
        trends[-1].days.append(row)
    return pipelines
