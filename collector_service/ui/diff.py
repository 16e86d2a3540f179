"""The funnel diff: which steps of a pipeline changed between two versions or time windows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from collector_service.store.queries import load
from collector_service.ui.filters import moment

QUERY = load("diff.sql", "collector_service.ui")["funnel_diff"]


@dataclass(frozen=True)
class DiffRequest:
    """The pipeline and the two sides; a side is a version, a time window, or both."""

    pipeline: str = ""
    base: str = ""
    head: str = ""
    base_since: str = ""
    base_until: str = ""
    head_since: str = ""
    head_until: str = ""

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> DiffRequest:
        """The request in ``query``; ValueError names what is missing or malformed."""
        request = cls(**{f.name: (query.get(f.name) or "").strip() for f in fields(cls)})
        if not request.pipeline:
            raise ValueError("name the pipeline to compare")
        for side in ("base", "head"):
            values = [getattr(request, side + suffix) for suffix in ("", "_since", "_until")]
            if not any(values):
                raise ValueError(f"give the {side} side a version or a time window")
        request.params()  # times parse
        return request

    def params(self) -> dict[str, Any]:
        """Parameters of the ``funnel_diff`` query."""
        return {"pipeline": self.pipeline,
                "base_version": self.base or None, "head_version": self.head or None,
                "base_since": moment(self.base_since, "base_since"),
                "base_until": moment(self.base_until, "base_until"),
                "head_since": moment(self.head_since, "head_since"),
                "head_until": moment(self.head_until, "head_until")}

    def values(self) -> dict[str, str]:
        return asdict(self)


def shape(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the query with reject-reason shares as a list, largest shift first."""
    shaped = []
    for row in rows:
        shares = [{"reason": reason, "base": v.get("base"), "head": v.get("head"),
                   "change": (v.get("head") or 0.0) - (v.get("base") or 0.0)}
                  for reason, v in row["reject_shares"].items()]
        shares.sort(key=lambda s: (-abs(s["change"]), s["reason"]))
        shaped.append({**row, "reject_shares": shares})
    return shaped
