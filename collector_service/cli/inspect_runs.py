"""``xray runs``, ``xray show RUN`` and ``xray steps``: read what the pipelines did."""

from __future__ import annotations

import argparse
import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from psycopg.rows import namedtuple_row

from collector_service.cli import db as cli_db
from collector_service.cli.ids import resolve_run_id
from collector_service.cli.tables import (
    Style,
    as_json,
    cell,
    decode_json_texts,
    json_text_cells,
    print_records,
    table,
)
from collector_service.config import CollectorConfig
from collector_service.errors import NotFound, XRayError
from collector_service.store.queries import load

if TYPE_CHECKING:
    import psycopg

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


@contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while rows are read and printed.

    A long run's rows become tens of thousands of dicts and lists that live until the
    command ends and form no cycles; the collector would walk them again and again for
    nothing (40% of rendering a 10,000-step ``xray show``).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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
    with _cycle_collector_paused(), cli_db.connect(config) as conn:
        cur = conn.execute(_QUERIES[query], params)
        headers = [d.name for d in cur.description or ()]
        rows = cur.fetchall()
        if args.json or args.jsonl:
            print_records([dict(zip(headers, row, strict=True)) for row in rows], args.jsonl)
        else:
            print(table(headers, rows) if rows else when_empty)
    return 0


def cmd_show(args: argparse.Namespace, config: CollectorConfig) -> int:
    with _cycle_collector_paused():
        return _show(args, config)


def _show(args: argparse.Namespace, config: CollectorConfig) -> int:
    wants_json = args.json or args.jsonl
    with cli_db.connect(config) as conn:
        run_id = resolve_run_id(conn, args.run_id)
        cur = conn.execute(_QUERIES["run"], {"run_id": run_id})
        run_row = cur.fetchone()
        if run_row is None:
            raise NotFound(f"no run {args.run_id!r}; list runs with `xray runs`")
        run = dict(zip([d.name for d in cur.description or ()], run_row, strict=True))
        artifacts = _artifacts_by_span(
            _records(conn.execute(_QUERIES["run_artifacts"], {"run_id": run_id})))
        if wants_json:
            steps = _records(conn.execute(_QUERIES["run_steps"], {"run_id": run_id}))
        else:  # named tuples: a third cheaper to build than dicts for a long run
            funnel = conn.cursor(row_factory=namedtuple_row).execute(
                _QUERIES["run_funnel"], {"run_id": run_id}).fetchall()
    if wants_json:
        for step in steps:
            step["artifacts"] = artifacts.get((step["trace_id"], step["span_id"]), [])
        print(as_json({"run": run, "steps": steps}, indent=None if args.jsonl else 2))
    else:
        print(render_funnel(run, funnel, artifacts, full=args.full, style=Style()))
    return 0


def _records(cur: psycopg.Cursor[Any]) -> list[dict[str, Any]]:
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _artifacts_by_span(
        artifacts: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """A run's artifact rows grouped by the step (trace and span id) they belong to."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for artifact in artifacts:
        key = (artifact.pop("trace_id"), artifact.pop("span_id"))
        grouped.setdefault(key, []).append(artifact)
    return grouped


def render_funnel(run: dict[str, Any], steps: Sequence[Any],
                  artifacts: dict[tuple[str, str], list[dict[str, Any]]],
                  full: bool = False, style: Style | None = None) -> str:
    """A run's steps in order: the funnel of candidates, the reasons and the evidence.

    Each step is a named row of the ``run_funnel`` query: its JSON values are PostgreSQL's
    text of them, decoded here a column at a time and only where a part of one is printed.
    ``artifacts`` are the run's, by trace and span id.
    """
    style = style or Style()
    lines = [style.bold(f"run {run['run_id']}") + f"  pipeline={cell(run['pipeline'])}  "
             f"entity={cell(run['entity'])}  status={style.status(run['status'])}"]
    if run["error"]:
        lines.append(f"  error: {run['error']}")
    if not steps:
        lines.append("  (no steps stored for this run yet)")
    if any(step.seq is None for step in steps):
        lines.append("  (steps without xray.step.seq are placed by start time)")
    evidence = zip(decode_json_texts([step.top_reject_reasons for step in steps]),
                   json_text_cells([step.input for step in steps]),
                   json_text_cells([step.output for step in steps]),
                   decode_json_texts([step.metrics for step in steps]),
                   decode_json_texts([step.ingest_warnings for step in steps]), strict=True)
    for position, (step, (reasons, input_, output, metrics, warnings)) in enumerate(
            zip(steps, evidence, strict=True), start=1):
        title = style.bold(f"{position:>3}. {step.step_name}")
        lines.append(f"{title} [{step.step_type}]{_funnel(step)}")
        if step.why:
            lines.append(f"     why: {step.why}")
        if isinstance(reasons, dict) and reasons:
            top = sorted(reasons.items(), key=_reject_count, reverse=True)[:5]
            lines.append("     top reject reasons: " + ", ".join([f"{k}: {v}" for k, v in top]))
        if input_ is not None:
            lines.append(f"     input: {_shorten(input_, full)}")
        if output is not None:
            lines.append(f"     output: {_shorten(output, full)}")
        if metrics:
            lines.append("     metrics: " + ", ".join([f"{k}={v}" for k, v in metrics.items()]))
        if step.status == "error":
            lines.append("     " + style.paint(f"ERROR: {step.error or 'failed'}", "31"))
        for artifact in artifacts.get((step.trace_id, step.span_id), ()):
            state = " (summary only)" if artifact["downgraded"] else ""
            lines.append(f"     artifact {artifact['attribute']}: {artifact['artifact_id']}"
                         f" ({artifact['size_bytes']} bytes, {artifact['content_type']}){state}")
        for warning in warnings or ():
            lines.append(f"     note: {warning['attribute']} {warning['problem']}")
    return "\n".join(lines)


def _funnel(step: Any) -> str:
    """``  5000 → 50  (dropped 99.0%)  5.0 ms``: candidates in and out, and the time."""
    took = "running" if step.status == "running" else f"{step.duration_ms or '-'} ms"
    given, kept = step.candidates_in, step.candidates_out
    if given is None and kept is None:
        return f"  {took}"
    ratio = step.drop_ratio
    dropped = "" if ratio is None else f"  (dropped {ratio:.1%})"
    return f"  {'-' if given is None else given} → {'-' if kept is None else kept}" \
           f"{dropped}  {took}"


def _shorten(text: str, full: bool) -> str:
    if full or len(text) <= _SHORT:
        return text
    return text[:_SHORT] + f"… ({len(text)} characters; --full shows all)"


def _reject_count(reason: tuple[str, Any]) -> float:
    """How many candidates a reject reason dropped; a value that is no count sorts as 0."""
    count = reason[1]
    return float(count) if isinstance(count, int | float) else 0.0
