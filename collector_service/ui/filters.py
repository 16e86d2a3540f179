"""The runs page's filters: read from the query string, checked, and written back into links."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any, ClassVar


@dataclass(frozen=True)
class RunFilters:
    """What the runs page shows; empty fields filter nothing."""

    STATUSES: ClassVar[tuple[str, ...]] = ("pending", "running", "ok", "error")

    pipeline: str = ""
    status: str = ""
    entity: str = ""
    since: str = ""
    until: str = ""
    min_drop: str = ""
    after: str = ""
    after_id: str = ""

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> RunFilters:
        """The filters in ``query``; ValueError names the first bad one."""
        values = {name: query.get(name, "").strip() for name in (f.name for f in fields(cls))}
        filters = cls(**values)
        if filters.status and filters.status not in cls.STATUSES:
            raise ValueError(f"status {filters.status!r}: use one of {', '.join(cls.STATUSES)}")
        for name in ("since", "until", "after"):
            moment(getattr(filters, name), name)
        if filters.min_drop:
            _percent(filters.min_drop)
        if bool(filters.after) != bool(filters.after_id):
            raise ValueError("after and after_id go together (they come from a next-page link)")
        return filters

    def params(self, limit: int) -> dict[str, Any]:
        """Parameters of the ``runs`` query."""
        return {"pipeline": self.pipeline or None, "status": self.status or None,
                "entity": self.entity or None, "since": moment(self.since, "since"),
                "until": moment(self.until, "until"),
                "min_drop": _percent(self.min_drop) if self.min_drop else None,
                "after_started": moment(self.after, "after"),
                "after_id": self.after_id or None, "limit": limit}

    def query(self) -> dict[str, str]:
        """The filters (not the page position) as query-string pairs, for links."""
        return {k: v for k, v in asdict(self).items() if v and k not in ("after", "after_id")}


def moment(text: str, name: str) -> datetime | None:
    """``text`` as a time (UTC unless it names a zone); None when empty."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name} {text!r}: use an ISO date or time such as "
                         "2026-11-01 or 2026-11-01T12:00") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _percent(text: str) -> float:
    """A drop given in percent (0 to 100) as a ratio."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"drop {text!r} is not a number of percent") from None
    if not 0 <= value <= 100:
        raise ValueError(f"drop {text!r}: give a percentage between 0 and 100")
    return value / 100
