"""``xray runs``, ``xray show RUN`` and ``xray steps``: read what the pipelines did."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from collector_service.cli import db as cli_db
from collector_service.cli.ids import resolve_run_id
from collector_service.cli.tables import Style, as_json, cell, print_records, table
from collector_service.config import CollectorConfig
from collector_service.errors import NotFound, XRayError
from collector_service.store.queries import load

_QUERIES = load("inspect.sql")


_SHORT = 200
"""Characters of an input or output ``xray show`` prints without ``--full``."""


def _since(text: str | None) -> datetime | None:
    """An age (``24h``; ``-24h`` means the same) or an ISO date."""
    if text is None:
        return None
    from collector_service.cli.artifacts import parse_age  # its store imports cost `show`

    try:
        return datetime.now(UTC) - parse_age(text.removeprefix("-"), "--since")
    except XRayError:
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            raise XRayError(f"--since {text!r}: use an age such as 24h or 7d, or an ISO "
                            "date such as 2026-11-01") from None


def cmd_runs(args: argparse.Namespace, config: CollectorConfig) -> int:
    params = {"pipeline": args.pipeline, "entity": args.entity, "status": args.status,
              "since": _since(args.since), "limit": args.limit}
    return _query_and_print(config, "runs", params, args,
                            "no runs match; check the filters, or send spans to `xray collector`")


def cmd_steps(args: argparse.Namespace, config: CollectorConfig) -> int:
    params = {"step_type": args.type, "min_drop": args.min_drop, "pipeline": args.pipeline,
              "name": args.name, "limit": args.limit}
    return _query_and_print(config, "steps", params, args, "no steps match")


def _query_and_print(config: CollectorConfig, query: str, params: dict[str, Any],
                     args: argparse.Namespace, when_empty: str) -> int:
    """Run a named query; print a table (or ``when_empty``), a JSON array or JSON lines."""
    with cli_db.connect(config) as conn:
        cur = conn.execute(_QUERIES[query], params)
        headers = [d.name for d in cur.description or ()]
        rows = cur.fetchall()
    if args.json or args.jsonl:
        print_records([dict(zip(headers, row, strict=True)) for row in rows], args.jsonl)
    else:
        print(table(headers, rows) if rows else when_empty)
    return 0


def cmd_show(args: argparse.Namespace, config: CollectorConfig) -> int:
    with cli_db.connect(config) as conn:
        run_id = resolve_run_id(conn, args.run_id)
        cur = conn.execute(_QUERIES["run"], {"run_id": run_id})
        run_row = cur.fetchone()
        if run_row is None:
            raise NotFound(f"no run {args.run_id!r}; list runs with `xray runs`")
        run = dict(zip([d.name for d in cur.description or ()], run_row, strict=True))
        cur = conn.execute(_QUERIES["run_steps"], {"run_id": run_id})
        names = [d.name for d in cur.description or ()]
        steps = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    if args.json or args.jsonl:
        print(as_json({"run": run, "steps": steps}, indent=None if args.jsonl else 2))
    else:
        print(render_funnel(run, steps, full=args.full, style=Style()))
    return 0


def render_funnel(run: dict[str, Any], steps: list[dict[str, Any]], full: bool = False,
                  style: Style | None = None) -> str:
    """A run's steps in order: the funnel of candidates, the reasons and the evidence."""
    style = style or Style()
    lines = [style.bold(f"run {run['run_id']}") + f"  pipeline={cell(run['pipeline'])}  "
             f"entity={cell(run['entity'])}  status={style.status(run['status'])}"]
    if run["error"]:
        lines.append(f"  error: {run['error']}")
    if not steps:
        lines.append("  (no steps stored for this run yet)")
    if any(step["seq"] is None for step in steps):
        lines.append("  (steps without xray.step.seq are placed by start time)")
    for step in steps:
        lines.extend(_step_lines(step, full, style))
    return "\n".join(lines)


def _step_lines(step: dict[str, Any], full: bool, style: Style) -> list[str]:
    funnel = ""
    if step["candidates_in"] is not None or step["candidates_out"] is not None:
        funnel = f"  {cell(step['candidates_in'])} → {cell(step['candidates_out'])}"
        if step["drop_ratio"] is not None:
            funnel += f"  (dropped {step['drop_ratio']:.1%})"
    took = "running" if step["status"] == "running" else f"{cell(step['duration_ms'])} ms"
    title = style.bold(f"{step['position']:>3}. {step['step_name']}")
    lines = [f"{title} [{step['step_type']}]{funnel}  {took}"]
    if step["why"]:
        lines.append(f"     why: {step['why']}")
    reasons = (step["why_json"] or {}).get("top_reject_reasons")
    if isinstance(reasons, dict) and reasons:
        top = sorted(reasons.items(), key=lambda kv: -_number(kv[1]))[:5]
        lines.append("     top reject reasons: " + ", ".join(f"{k}: {v}" for k, v in top))
    for key in ("input", "output"):
        if step[key] is not None:
            lines.append(f"     {key}: {_shorten(cell(step[key]), full)}")
    if step["metrics"]:
        lines.append("     metrics: " + ", ".join(f"{k}={v}" for k, v in step["metrics"].items()))
    if step["status"] == "error":
        lines.append("     " + style.paint(f"ERROR: {step['error'] or 'failed'}", "31"))
    for artifact in step["artifacts"]:
        state = " (summary only)" if artifact["downgraded"] else ""
        lines.append(f"     artifact {artifact['attribute']}: {artifact['artifact_id']}"
                     f" ({artifact['size_bytes']} bytes, {artifact['content_type']}){state}")
    for warning in step["ingest_warnings"] or []:
        lines.append(f"     note: {warning['attribute']} {warning['problem']}")
    return lines


def _shorten(text: str, full: bool) -> str:
    if full or len(text) <= _SHORT:
        return text
    return text[:_SHORT] + f"… ({len(text)} characters; --full shows all)"


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0
