"""``xray demo``: the debugging story, told from data the demo itself stores.

It starts the collector (embedded database unless one is configured), runs the
competitor-search example pipeline for a batch of products, some with polluted
keyword generation, then walks the analyst's five steps with SQL. Every number it
prints comes from a query over the stored rows.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections import defaultdict
from dataclasses import replace
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg

from collector_service.config import CollectorConfig
from collector_service.errors import XRayError
from collector_service.server import CollectorThread
from collector_service.store.queries import load

_QUERIES = load("demo.sql")


def example_pipeline() -> ModuleType:
    """The competitor-search example: packaged with the wheel, or from the source checkout."""
    packaged = resources.files("collector_service").joinpath("examples", "competitor_search")
    folder = Path(str(packaged)) if packaged.is_dir() else (
        Path(__file__).resolve().parents[2] / "examples" / "competitor_search")
    spec = importlib.util.spec_from_file_location("xray_demo_pipeline", folder / "pipeline.py")
    if spec is None or spec.loader is None:
        raise XRayError(f"the example pipeline is missing from {folder}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while executing it
    spec.loader.exec_module(module)
    return module


def cmd_demo(args: argparse.Namespace, config: CollectorConfig) -> int:
    import xray_otel as xray

    pipeline = example_pipeline()
    # Never clash with a running collector: free ports, and no spool folder of its own.
    config = replace(config, grpc_port=0, http_port=0, spool_max_bytes=0)
    with CollectorThread(config) as endpoints:
        xray.configure(service_name="competitor-finder", protocol="grpc", insecure=True,
                       endpoint=f"http://127.0.0.1:{endpoints.grpc_port}")
        run_ids = _run_batch(pipeline, args.runs, args.polluted_every)
        if not xray.flush(timeout=60):
            raise XRayError("the collector did not take every span within 60 s")
        xray.shutdown()
        with psycopg.connect(endpoints.database_url) as conn:
            findings = investigate(conn, run_ids)
            artifact = None if not findings["flagged"] else conn.execute(
                _QUERIES["run_artifact"], {"run_id": findings["worst"]["run_id"]}).fetchone()
    if args.json:
        print(json.dumps(findings, indent=2))
    else:
        print(tell(findings))
        if findings["flagged"]:
            print(explore_hint(config, findings["worst"]["run_id"],
                               artifact[0] if artifact else None))
    return 0 if findings["flagged"] else 1


def _run_batch(pipeline: ModuleType, runs: int, polluted_every: int) -> list[str]:
    catalog = pipeline.build_catalog()
    run_ids = []
    for i, query in enumerate(pipeline.sample_queries(runs)):
        polluted = polluted_every > 0 and i % polluted_every == polluted_every - 1
        run_id, pick = pipeline.find_competitor(query, catalog, polluted=polluted)
        run_ids.append(run_id)
        print(f"  run {i + 1:>3}/{runs}  {query.asin}  → {pick.title if pick else 'nothing'}",
              file=sys.stderr, flush=True)
    return run_ids


def investigate(conn: psycopg.Connection, run_ids: list[str]) -> dict[str, Any]:
    """Steps 1 to 5 of the story, as data."""
    flagged = conn.execute(_QUERIES["flagged_filters"], {"run_ids": run_ids}).fetchall()
    findings: dict[str, Any] = {"runs": len(run_ids), "flagged": len(flagged)}
    if not flagged:
        return findings
    run_id, step_name, seq, n_in, n_out, drop_ratio = flagged[0]
    findings["worst"] = {"run_id": run_id, "step_name": step_name, "seq": seq,
                         "candidates_in": n_in, "candidates_out": n_out,
                         "drop_ratio": drop_ratio}
    params = {"run_id": run_id, "seq": seq}
    findings["reject_reasons"] = dict(conn.execute(_QUERIES["reject_reasons"], params))
    previous = conn.execute(_QUERIES["previous_step"], params).fetchall()
    if previous:
        findings["previous"] = {"step_name": previous[0][0], "step_type": previous[0][1],
                                "candidates_out": previous[0][2],
                                "categories": {r[3]: r[4] for r in previous if r[3]}}
    flagged_ids = sorted({row[0] for row in flagged})
    findings["keywords"] = _keyword_contrast(conn, run_ids, flagged_ids)
    pick = conn.execute(_QUERIES["final_pick"], {"run_id": run_id}).fetchone()
    findings["pick"] = {"title": pick[0], "category": pick[1]} if pick else None
    return findings


def _keyword_contrast(conn: psycopg.Connection, run_ids: list[str],
                      flagged_ids: list[str]) -> dict[str, Any]:
    seen: dict[bool, dict[str, set[str]]] = {True: defaultdict(set), False: defaultdict(set)}
    for run_id, is_flagged, keyword in conn.execute(
            _QUERIES["keywords_by_run"], {"run_ids": run_ids, "flagged": flagged_ids}):
        seen[is_flagged][keyword].add(run_id)
    flagged_runs = len(flagged_ids)
    suspects = sorted(k for k, runs in seen[True].items()
                      if len(runs) == flagged_runs and k not in seen[False])
    return {"only_in_flagged_runs": suspects, "flagged_runs": flagged_runs,
            "healthy_runs": len(set(run_ids) - set(flagged_ids))}


def tell(f: dict[str, Any]) -> str:
    """The findings as the analyst's walk-through."""
    if not f["flagged"]:
        return f"Ran {f['runs']} pipelines; no filter dropped more than 90%. Nothing to debug."
    worst, lines = f["worst"], []
    lines.append(f"\n1. {f['keywords']['flagged_runs']} of {f['runs']} runs have a filter "
                 "step dropping more than 90% of its candidates (xray_steps WHERE step_type = "
                 "'filter' AND drop_ratio > 0.9).")
    lines.append(f"2. Worst: {worst['step_name']} in run {worst['run_id']} kept "
                 f"{worst['candidates_out']} of {worst['candidates_in']} "
                 f"(dropped {worst['drop_ratio']:.1%}).")
    reasons = ", ".join(f"{k}: {v}" for k, v in f["reject_reasons"].items())
    lines.append(f"3. Its why_json.top_reject_reasons: {reasons}.")
    previous = f.get("previous")
    if previous and previous["categories"]:
        top, count = next(iter(previous["categories"].items()))
        total = sum(previous["categories"].values())
        lines.append(f"4. The step before it, {previous['step_name']} [{previous['step_type']}],"
                     f" returned {previous['candidates_out']} candidates: {count} of {total} "
                     f"({count / total:.0%}) are {top}.")
    kw = f["keywords"]
    if kw["only_in_flagged_runs"]:
        words = ", ".join(repr(k) for k in kw["only_in_flagged_runs"])
        lines.append(f"5. Keyword generation emitted {words} in every flagged run "
                     f"({kw['flagged_runs']}) and in none of the {kw['healthy_runs']} healthy "
                     "ones: keyword generation polluted retrieval.")
    if f.get("pick"):
        lines.append(f"   The run's final answer: {f['pick']['title']!r} "
                     f"({f['pick']['category']}).")
    return "\n".join(lines)


def explore_hint(config: CollectorConfig, run_id: str, artifact_id: str | None) -> str:
    """Commands to go on with, naming the worst run and one of its artifacts."""
    where = "" if config.database_url else f" (embedded database in {config.data_dir})"
    get = (f"\n  xray artifact get {artifact_id[:12]} | head -c 400" if artifact_id else "")
    return f"""
Explore further{where}, with `xray` (or `python3 dev.py xray` from a checkout):
  xray runs --pipeline competitor_search
  xray show {run_id}
  xray steps --type filter --min-drop 0.9{get}
  xray diff --pipeline competitor_search --base v1 --head v2   (polluted runs are v2)
  xray ui       (the same story in a browser, http://127.0.0.1:8080/runs)
  xray sql      (psql on the same database; `xray db url` prints its URL)
Tables xray_runs, xray_steps, xray_artifacts; views xray_step_funnel,
xray_reject_reasons, xray_run_summary (see docs/schema.md)."""
