"""Geometry of the viewer's inline SVG charts, worked out in Python so templates stay plain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

BAR_WIDTH = 480
"""Width in pixels of a full bar (the largest value in the chart)."""


@dataclass(frozen=True)
class FunnelBar:
    """One step of the funnel: candidates in (light bar) and out (dark bar, on top)."""

    label: str
    anchor: str
    candidates_in: int | None
    candidates_out: int | None
    drop_ratio: float | None
    in_width: float
    out_width: float
    flagged: bool
    href: str = ""
    """Where the label links: the step on another page of the run; empty: ``#anchor``."""


MAX_BARS = 60
"""A run's funnel draws at most this many bars; longer runs join consecutive steps."""


def run_funnel(groups: list[dict[str, Any]], page_of: str) -> list[FunnelBar]:
    """Bars from query ``run_funnel``: one per group of consecutive steps (often one step).

    ``page_of`` is the run page's path; a bar links to the page starting at its first step.
    """
    bars = []
    for g in groups:
        if g["steps"] > 1:
            g = {**g, "step_name": f"{g['step_name']} … {g['last_step_name']} "
                                   f"({g['steps']} steps)"}
            if g["candidates_in"] and g["candidates_out"] is not None:
                g["drop_ratio"] = 1 - g["candidates_out"] / g["candidates_in"]
        bars.append(g)
    drawn = funnel(bars)
    return [FunnelBar(**{**b.__dict__, "href": f"{page_of}?{urlencode({'from': g['span_id']})}"
                                              f"#{b.anchor}"})
            for b, g in zip(drawn, bars, strict=True)]


def funnel(steps: list[dict[str, Any]], flag_above: float = 0.9) -> list[FunnelBar]:
    """Bars for the steps that report candidates, scaled to the largest count."""
    counted = [s for s in steps if s["candidates_in"] is not None
               or s["candidates_out"] is not None]
    largest = max((max(s["candidates_in"] or 0, s["candidates_out"] or 0) for s in counted),
                  default=0) or 1
    return [FunnelBar(label=s["step_name"], anchor=step_anchor(s),
                      candidates_in=s["candidates_in"], candidates_out=s["candidates_out"],
                      drop_ratio=s["drop_ratio"],
                      in_width=BAR_WIDTH * (s["candidates_in"] or 0) / largest,
                      out_width=BAR_WIDTH * (s["candidates_out"] or 0) / largest,
                      flagged=(s["drop_ratio"] or 0) > flag_above)
            for s in counted]


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    width: float


def bars(counts: dict[str, Any]) -> list[Bar]:
    """Horizontal bars for numeric values, largest first; other values are left out."""
    numeric = {k: float(v) for k, v in counts.items()
               if isinstance(v, int | float) and not isinstance(v, bool)}
    largest = max(numeric.values(), default=0) or 1
    return [Bar(k, v, BAR_WIDTH * max(v, 0) / largest)
            for k, v in sorted(numeric.items(), key=lambda kv: (-kv[1], kv[0]))]


def split_why(why_json: dict[str, Any] | None) -> tuple[list[Bar], dict[str, Any]]:
    """Reject reasons as bars, and the rest of ``why_json`` to show as a tree."""
    if not why_json:
        return [], {}
    rest = dict(why_json)
    reasons = rest.pop("top_reject_reasons", None)
    if isinstance(reasons, dict):
        return bars(reasons), rest
    if reasons is not None:
        rest["top_reject_reasons"] = reasons
    return [], rest


def step_anchor(step: dict[str, Any]) -> str:
    """The fragment id of a step on the run page (stable: seq, else span id)."""
    return f"step-{step['seq']}" if step["seq"] is not None else f"span-{step['span_id']}"
